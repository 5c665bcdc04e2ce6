// gguf::Value helpers: type names and constructors used by the writer and synth.
#include "planner/gguf/gguf.h"

namespace fp::gguf {

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "uint8";
    case ValueType::I8: return "int8";
    case ValueType::U16: return "uint16";
    case ValueType::I16: return "int16";
    case ValueType::U32: return "uint32";
    case ValueType::I32: return "int32";
    case ValueType::F32: return "float32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "uint64";
    case ValueType::I64: return "int64";
    case ValueType::F64: return "float64";
  }
  return "unknown";
}

size_t Value::array_size() const {
  if (type != ValueType::ARRAY) return 0;
  switch (item_type) {
    case ValueType::STRING: return arr_s.size();
    case ValueType::F32: case ValueType::F64: return arr_f.size();
    case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64: return arr_i.size();
    default: return arr_u.size();
  }
}

Value Value::make_u32(uint32_t v) { Value x; x.type = ValueType::U32; x.u = v; return x; }
Value Value::make_i32(int32_t v) { Value x; x.type = ValueType::I32; x.i = v; return x; }
Value Value::make_u64(uint64_t v) { Value x; x.type = ValueType::U64; x.u = v; return x; }
Value Value::make_f32(float v) { Value x; x.type = ValueType::F32; x.f = v; return x; }
Value Value::make_bool(bool v) { Value x; x.type = ValueType::BOOL; x.u = v ? 1 : 0; return x; }
Value Value::make_string(std::string v) { Value x; x.type = ValueType::STRING; x.s = std::move(v); return x; }

Value Value::make_array_i32(std::vector<int32_t> v) {
  Value x; x.type = ValueType::ARRAY; x.item_type = ValueType::I32;
  x.arr_i.assign(v.begin(), v.end());
  return x;
}
Value Value::make_array_f32(std::vector<float> v) {
  Value x; x.type = ValueType::ARRAY; x.item_type = ValueType::F32;
  x.arr_f.assign(v.begin(), v.end());
  return x;
}
Value Value::make_array_string(std::vector<std::string> v) {
  Value x; x.type = ValueType::ARRAY; x.item_type = ValueType::STRING;
  x.arr_s = std::move(v);
  return x;
}

}  // namespace fp::gguf
