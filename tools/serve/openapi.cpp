// The OpenAPI document (see openapi.h). Kept as one JSON text so it reads like the
// spec it is; openapi_document() patches in the per-server values.
#include "tools/serve/openapi.h"

#include <algorithm>

namespace fp::serve {

namespace {

constexpr const char* kDocument = R"json({
  "openapi": "3.0.3",
  "info": {
    "title": "flashplan serve",
    "description": "OpenAI-compatible HTTP API of flashplan, a plan-compiled runtime for DeepSeek V4 Flash. Errors use the OpenAI shape {\"error\": {\"message\", \"type\", \"param\", \"code\"}}. Thinking is off unless asked for with chat_template_kwargs.thinking, thinking, or reasoning_effort (any value but \"none\"); reasoning_effort \"max\" also selects Think Max when the context is at least 393216 tokens.",
    "version": "0"
  },
  "paths": {
    "/health": {
      "get": {
        "operationId": "health",
        "summary": "Liveness: 200 while the server accepts requests",
        "responses": {
          "200": {"description": "Serving", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
        }
      }
    },
    "/metrics": {
      "get": {
        "operationId": "metrics",
        "summary": "Prometheus text exposition: requests, tokens, time to first token, decode tok/s, queue depth",
        "responses": {
          "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
        }
      }
    },
    "/openapi.json": {
      "get": {
        "operationId": "openapi",
        "summary": "This document",
        "responses": {
          "200": {"description": "OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}
        }
      }
    },
    "/tokenize": {
      "post": {
        "operationId": "tokenize",
        "summary": "Token ids of a prompt (with BOS, as /v1/completions sends it) or of a chat (rendered as /v1/chat/completions renders it)",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenizeRequest"}}}},
        "responses": {
          "200": {"description": "Token ids", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenizeResponse"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/detokenize": {
      "post": {
        "operationId": "detokenize",
        "summary": "The text of token ids",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetokenizeRequest"}}}},
        "responses": {
          "200": {"description": "Text", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetokenizeResponse"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/models": {
      "get": {
        "operationId": "listModels",
        "summary": "The served model",
        "responses": {
          "200": {"description": "Model list", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelList"}}}},
          "401": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/models/{model}": {
      "get": {
        "operationId": "getModel",
        "summary": "One model by id",
        "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}],
        "responses": {
          "200": {"description": "Model", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}},
          "401": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/chat/completions": {
      "post": {
        "operationId": "createChatCompletion",
        "summary": "Chat completion through the DS4 chat template (system, tools and tool results, thinking)",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}},
        "responses": {
          "200": {
            "description": "A chat completion, or with stream=true an SSE stream of chat.completion.chunk objects ending with data: [DONE]",
            "content": {
              "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
              "text/event-stream": {"schema": {"type": "string"}}
            }
          },
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/completions": {
      "post": {
        "operationId": "createCompletion",
        "summary": "Text completion of a raw prompt (no chat template)",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CompletionRequest"}}}},
        "responses": {
          "200": {
            "description": "A completion, or with stream=true an SSE stream of text_completion objects ending with data: [DONE]",
            "content": {
              "application/json": {"schema": {"$ref": "#/components/schemas/Completion"}},
              "text/event-stream": {"schema": {"type": "string"}}
            }
          },
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    }
  },
  "components": {
    "responses": {
      "Error": {"description": "An OpenAI-shaped error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    },
    "schemas": {
      "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
          "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
              "message": {"type": "string"},
              "type": {"type": "string"},
              "param": {"type": "string", "nullable": true},
              "code": {"type": "string", "nullable": true}
            }
          }
        }
      },
      "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
          "status": {"type": "string", "enum": ["ok"]},
          "queue_depth": {"type": "integer", "minimum": 0},
          "running": {"type": "integer", "minimum": 0},
          "slots": {"type": "integer", "minimum": 1}
        }
      },
      "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
          "id": {"type": "string"},
          "object": {"type": "string", "enum": ["model"]},
          "created": {"type": "integer"},
          "owned_by": {"type": "string"},
          "max_model_len": {"type": "integer"}
        }
      },
      "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
          "object": {"type": "string", "enum": ["list"]},
          "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}
        }
      },
      "StopStrings": {
        "description": "Up to 16 strings; generation stops before the first that appears, which is not returned",
        "nullable": true,
        "oneOf": [
          {"type": "string", "maxLength": 512},
          {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 512}}
        ]
      },
      "TextPart": {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}
      },
      "Content": {
        "oneOf": [
          {"type": "string"},
          {"type": "array", "items": {"$ref": "#/components/schemas/TextPart"}}
        ]
      },
      "ToolCall": {
        "type": "object",
        "required": ["function"],
        "properties": {
          "id": {"type": "string"},
          "type": {"type": "string", "enum": ["function"]},
          "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
              "name": {"type": "string", "minLength": 1},
              "arguments": {"description": "JSON text of an object (an object itself is accepted too)",
                            "oneOf": [{"type": "string"}, {"type": "object"}]}
            }
          }
        }
      },
      "SystemMessage": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
          "role": {"type": "string", "enum": ["system", "developer"]},
          "content": {"$ref": "#/components/schemas/Content"},
          "name": {"type": "string"}
        }
      },
      "UserMessage": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
          "role": {"type": "string", "enum": ["user"]},
          "content": {"$ref": "#/components/schemas/Content"},
          "name": {"type": "string"}
        }
      },
      "AssistantMessage": {
        "type": "object",
        "required": ["role"],
        "description": "content, tool_calls, both, or neither (an empty turn)",
        "properties": {
          "role": {"type": "string", "enum": ["assistant"]},
          "content": {"nullable": true, "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"$ref": "#/components/schemas/TextPart"}}
          ]},
          "reasoning_content": {"type": "string", "nullable": true},
          "tool_calls": {"type": "array", "items": {"$ref": "#/components/schemas/ToolCall"}},
          "name": {"type": "string"}
        }
      },
      "ToolMessage": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
          "role": {"type": "string", "enum": ["tool"]},
          "content": {"$ref": "#/components/schemas/Content"},
          "tool_call_id": {"type": "string"},
          "name": {"type": "string"}
        }
      },
      "Tool": {
        "type": "object",
        "required": ["type", "function"],
        "properties": {
          "type": {"type": "string", "enum": ["function"]},
          "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
              "name": {"type": "string", "minLength": 1},
              "description": {"type": "string"},
              "parameters": {"type": "object"}
            }
          }
        }
      },
      "ChatCompletionRequest": {
        "type": "object",
        "required": ["messages"],
        "properties": {
          "model": {"type": "string", "description": "The served model id (GET /v1/models); optional"},
          "messages": {
            "type": "array", "minItems": 1,
            "items": {"oneOf": [
              {"$ref": "#/components/schemas/SystemMessage"},
              {"$ref": "#/components/schemas/UserMessage"},
              {"$ref": "#/components/schemas/AssistantMessage"},
              {"$ref": "#/components/schemas/ToolMessage"}
            ]}
          },
          "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1, "nullable": true,
                         "description": "Tokens to generate at most; prompt + max_tokens must fit the context. Default: the rest of the context"},
          "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": 1, "nullable": true, "description": "Same as max_tokens (wins when both are given)"},
          "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": true, "description": "0 = greedy. Default 1"},
          "top_p": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "nullable": true},
          "top_k": {"type": "integer", "minimum": -1, "maximum": 2147483647, "nullable": true, "description": "-1 or 0 = off"},
          "min_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": true},
          "seed": {"type": "integer", "nullable": true, "description": "Same seed, same request: same output"},
          "stop": {"$ref": "#/components/schemas/StopStrings"},
          "stream": {"type": "boolean", "nullable": true},
          "stream_options": {"type": "object", "nullable": true, "properties": {"include_usage": {"type": "boolean", "nullable": true}}},
          "logprobs": {"type": "boolean", "nullable": true},
          "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20, "nullable": true, "description": "Needs logprobs: true when > 0"},
          "return_token_ids": {"type": "boolean", "nullable": true, "description": "vLLM extension: prompt_token_ids and choices[].token_ids"},
          "ignore_eos": {"type": "boolean", "nullable": true, "description": "vLLM extension: keep generating past end-of-sequence"},
          "n": {"type": "integer", "minimum": 1, "maximum": 1, "nullable": true},
          "presence_penalty": {"type": "number", "minimum": 0, "maximum": 0, "nullable": true},
          "frequency_penalty": {"type": "number", "minimum": 0, "maximum": 0, "nullable": true},
          "response_format": {"type": "object", "nullable": true, "properties": {"type": {"type": "string", "enum": ["text"]}}},
          "tools": {"type": "array", "nullable": true, "items": {"$ref": "#/components/schemas/Tool"}},
          "tool_choice": {"nullable": true, "description": "none hides the tools from the model; auto, required and a named function are not enforced (the model decides)",
                          "oneOf": [
                            {"type": "string", "enum": ["none", "auto", "required"]},
                            {"type": "object", "properties": {
                              "type": {"type": "string", "enum": ["function"]},
                              "function": {"type": "object", "properties": {"name": {"type": "string"}}}}}
                          ]},
          "parallel_tool_calls": {"type": "boolean", "nullable": true},
          "chat_template_kwargs": {"type": "object", "nullable": true, "properties": {
            "thinking": {"type": "boolean", "nullable": true},
            "enable_thinking": {"type": "boolean", "nullable": true}}},
          "thinking": {"nullable": true, "oneOf": [
            {"type": "boolean"},
            {"type": "object", "properties": {"type": {"type": "string", "enum": ["enabled", "disabled"]}}}
          ]},
          "reasoning_effort": {"type": "string", "nullable": true, "enum": ["none", "minimal", "low", "medium", "high", "xhigh", "max"]},
          "user": {"type": "string", "nullable": true}
        }
      },
      "CompletionRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
          "model": {"type": "string"},
          "prompt": {"description": "A string, or one prompt as token ids", "oneOf": [
            {"type": "string"},
            {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "string"}},
            {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": 0}},
            {"type": "array", "minItems": 1, "maxItems": 1,
             "items": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": 0}}}
          ]},
          "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1, "nullable": true, "description": "Default 16"},
          "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": true},
          "top_p": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "nullable": true},
          "top_k": {"type": "integer", "minimum": -1, "maximum": 2147483647, "nullable": true},
          "min_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": true},
          "seed": {"type": "integer", "nullable": true},
          "stop": {"$ref": "#/components/schemas/StopStrings"},
          "stream": {"type": "boolean", "nullable": true},
          "stream_options": {"type": "object", "nullable": true, "properties": {"include_usage": {"type": "boolean", "nullable": true}}},
          "logprobs": {"type": "integer", "minimum": 0, "maximum": 20, "nullable": true},
          "echo": {"type": "boolean", "nullable": true},
          "return_token_ids": {"type": "boolean", "nullable": true},
          "ignore_eos": {"type": "boolean", "nullable": true},
          "n": {"type": "integer", "minimum": 1, "maximum": 1, "nullable": true},
          "best_of": {"type": "integer", "minimum": 1, "maximum": 1, "nullable": true},
          "presence_penalty": {"type": "number", "minimum": 0, "maximum": 0, "nullable": true},
          "frequency_penalty": {"type": "number", "minimum": 0, "maximum": 0, "nullable": true},
          "user": {"type": "string", "nullable": true}
        }
      },
      "TokenizeRequest": {
        "type": "object",
        "description": "Give prompt or messages (messages wins; the other chat fields apply as in /v1/chat/completions)",
        "properties": {
          "model": {"type": "string"},
          "prompt": {"type": "string"},
          "messages": {"$ref": "#/components/schemas/ChatCompletionRequest/properties/messages"}
        }
      },
      "TokenizeResponse": {
        "type": "object",
        "required": ["count", "max_model_len", "tokens"],
        "properties": {
          "count": {"type": "integer", "minimum": 0},
          "max_model_len": {"type": "integer"},
          "tokens": {"type": "array", "items": {"type": "integer"}}
        }
      },
      "DetokenizeRequest": {
        "type": "object",
        "required": ["tokens"],
        "properties": {
          "model": {"type": "string"},
          "tokens": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 0}}
        }
      },
      "DetokenizeResponse": {
        "type": "object",
        "required": ["prompt"],
        "properties": {"prompt": {"type": "string"}}
      },
      "Usage": {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {
          "prompt_tokens": {"type": "integer", "minimum": 0},
          "completion_tokens": {"type": "integer", "minimum": 0},
          "total_tokens": {"type": "integer", "minimum": 0}
        }
      },
      "TopLogprob": {
        "type": "object",
        "required": ["token", "logprob", "bytes"],
        "properties": {
          "token": {"type": "string"},
          "logprob": {"type": "number"},
          "bytes": {"type": "array", "items": {"type": "integer"}}
        }
      },
      "TokenLogprob": {
        "type": "object",
        "required": ["token", "logprob", "bytes", "top_logprobs"],
        "properties": {
          "token": {"type": "string"},
          "logprob": {"type": "number"},
          "bytes": {"type": "array", "items": {"type": "integer"}},
          "top_logprobs": {"type": "array", "items": {"$ref": "#/components/schemas/TopLogprob"}}
        }
      },
      "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
          "id": {"type": "string"},
          "object": {"type": "string", "enum": ["chat.completion"]},
          "created": {"type": "integer"},
          "model": {"type": "string"},
          "prompt_token_ids": {"type": "array", "items": {"type": "integer"}},
          "usage": {"$ref": "#/components/schemas/Usage"},
          "choices": {
            "type": "array", "minItems": 1, "maxItems": 1,
            "items": {
              "type": "object",
              "required": ["index", "message", "finish_reason", "logprobs"],
              "properties": {
                "index": {"type": "integer"},
                "finish_reason": {"type": "string", "enum": ["stop", "length", "tool_calls"]},
                "token_ids": {"type": "array", "items": {"type": "integer"}},
                "logprobs": {"type": "object", "nullable": true, "required": ["content"], "properties": {
                  "content": {"type": "array", "items": {"$ref": "#/components/schemas/TokenLogprob"}}}},
                "message": {
                  "type": "object",
                  "required": ["role", "content"],
                  "properties": {
                    "role": {"type": "string", "enum": ["assistant"]},
                    "content": {"type": "string", "nullable": true},
                    "reasoning_content": {"type": "string", "nullable": true},
                    "tool_calls": {"type": "array", "items": {"$ref": "#/components/schemas/ToolCall"}}
                  }
                }
              }
            }
          }
        }
      },
      "Completion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
          "id": {"type": "string"},
          "object": {"type": "string", "enum": ["text_completion"]},
          "created": {"type": "integer"},
          "model": {"type": "string"},
          "prompt_token_ids": {"type": "array", "items": {"type": "integer"}},
          "usage": {"$ref": "#/components/schemas/Usage"},
          "choices": {
            "type": "array", "minItems": 1, "maxItems": 1,
            "items": {
              "type": "object",
              "required": ["index", "text", "finish_reason", "logprobs"],
              "properties": {
                "index": {"type": "integer"},
                "text": {"type": "string"},
                "finish_reason": {"type": "string", "enum": ["stop", "length"]},
                "token_ids": {"type": "array", "items": {"type": "integer"}},
                "logprobs": {"type": "object", "nullable": true, "properties": {
                  "tokens": {"type": "array", "items": {"type": "string"}},
                  "token_logprobs": {"type": "array", "items": {"type": "number"}},
                  "top_logprobs": {"type": "array", "nullable": true, "items": {"type": "object", "additionalProperties": {"type": "number"}}},
                  "text_offset": {"type": "array", "items": {"type": "integer"}}
                }}
              }
            }
          }
        }
      }
    }
  }
})json";

// The server reads a JSON null as "not given" for every optional request field (as
// OpenAI's clients send them), so the document says so: optional properties of the
// request schemas are nullable. Properties given by $ref keep their own schema.
void nullable_optionals(nlohmann::json& schema) {
  if (!schema.is_object()) return;
  if (auto props = schema.find("properties"); props != schema.end()) {
    const auto required = schema.value("required", nlohmann::json::array());
    for (auto& [name, prop] : props->items()) {
      if (prop.contains("$ref")) continue;
      if (std::find(required.begin(), required.end(), name) == required.end()) prop["nullable"] = true;
      nullable_optionals(prop);
    }
  }
  if (auto items = schema.find("items"); items != schema.end()) nullable_optionals(*items);
  if (auto one_of = schema.find("oneOf"); one_of != schema.end())
    for (auto& alt : *one_of) nullable_optionals(alt);
}

}  // namespace

nlohmann::json openapi_document(uint64_t max_context, uint32_t n_vocab, bool requires_api_key,
                                const std::string& version) {
  nlohmann::json doc = nlohmann::json::parse(kDocument);
  doc["info"]["version"] = version;
  auto& schemas = doc["components"]["schemas"];
  for (const char* name : {"ChatCompletionRequest", "CompletionRequest", "TokenizeRequest", "DetokenizeRequest",
                           "SystemMessage", "UserMessage", "AssistantMessage", "ToolMessage", "TextPart", "ToolCall",
                           "Tool"})
    nullable_optionals(schemas[name]);
  // The context bounds what can be asked for: prompt + max_tokens must fit it.
  const uint64_t most = max_context > 1 ? max_context - 1 : 1;
  for (const char* req : {"ChatCompletionRequest", "CompletionRequest"}) {
    auto& props = schemas[req]["properties"];
    props["max_tokens"]["maximum"] = most;
    if (props.contains("max_completion_tokens")) props["max_completion_tokens"]["maximum"] = most;
  }
  // Token-id prompts: ids must be in the vocabulary.
  schemas["DetokenizeRequest"]["properties"]["tokens"]["items"]["maximum"] = n_vocab > 0 ? n_vocab - 1 : 0;
  auto& prompt = schemas["CompletionRequest"]["properties"]["prompt"]["oneOf"];
  prompt[2]["items"]["maximum"] = n_vocab > 0 ? n_vocab - 1 : 0;
  prompt[3]["items"]["items"]["maximum"] = n_vocab > 0 ? n_vocab - 1 : 0;
  if (requires_api_key) {
    doc["components"]["securitySchemes"] = {{"bearerAuth", {{"type", "http"}, {"scheme", "bearer"}}}};
    for (auto& [path, item] : doc["paths"].items())
      if (path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize")
        for (auto& [method, op] : item.items()) op["security"] = nlohmann::json::array({{{"bearerAuth", nlohmann::json::array()}}});
  }
  return doc;
}

}  // namespace fp::serve
