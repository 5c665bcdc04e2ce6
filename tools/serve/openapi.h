// The server's OpenAPI 3.0 document (GET /openapi.json). It describes exactly what
// request.cpp accepts and server.cpp answers, so a schema fuzzer (schemathesis in
// tests/tools/serve_schema_test.py) can hold the server to it. Limits that depend on
// the loaded model (the context length) and on flags (auth) are filled in at start-up.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace fp::serve {

nlohmann::json openapi_document(uint64_t max_context, uint32_t n_vocab, bool requires_api_key,
                                const std::string& version);

}  // namespace fp::serve
