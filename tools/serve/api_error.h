// OpenAI-shaped API errors. Every failure a client can cause ends as an ApiError
// thrown from request handling and turned into
//   {"error": {"message", "type", "param", "code"}}
// with the matching HTTP status, so clients written for OpenAI, vLLM or
// llama-server read our errors the way they read theirs.
#pragma once
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace fp::serve {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type, std::string param = {}, std::string code = {})
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type;   // invalid_request_error, authentication_error, not_found_error, server_error
  std::string param;  // the offending request field, empty when none
  std::string code;   // machine-readable reason, empty when none
};

// 400 invalid_request_error naming the field.
[[noreturn]] void bad_request(const std::string& param, const std::string& message,
                              const std::string& code = "invalid_value");

// The JSON body of an error response; empty param/code are sent as null.
nlohmann::json error_body(const std::string& message, const std::string& type,
                          const std::string& param = {}, const std::string& code = {});
nlohmann::json error_body(const ApiError& e);

// The error type OpenAI uses for an HTTP status we produce without a handler
// (unknown route, body too large, malformed HTTP).
const char* error_type_for_status(int status);

}  // namespace fp::serve
