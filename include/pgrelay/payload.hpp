// Reading a payload into a typed struct, with errors that name the field.
//
// A payload type reads itself with a static function:
//
//   struct OrderPaid {
//     int64_t order_id;
//     std::string email;
//     std::optional<double> discount;
//     static void read(pgrelay::PayloadReader& r, OrderPaid& out) {
//       r.required("order_id", out.order_id);
//       r.required("email", out.email);
//       r.optional("discount", out.discount);
//     }
//   };
//
// A payload that does not fit (missing field, wrong JSON type, not an object)
// makes the reader fail with a reason such as
//   field "order_id": expected an integer, got a string
// and the relay dead-letters the event with that reason; nothing crashes.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <rapidjson/document.h>

namespace pgrelay {

// A JSON value's kind as an error message names it ("a string", "null", ...);
// shared with the config reader so both speak of kinds alike.
inline const char* json_kind(const rapidjson::Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsBool()) return "a boolean";
  if (v.IsNumber()) return "a number";
  if (v.IsString()) return "a string";
  if (v.IsArray()) return "an array";
  return "an object";
}

class PayloadReader {
 public:
  explicit PayloadReader(const rapidjson::Value& object, std::string prefix = "")
      : object_(object), prefix_(std::move(prefix)) {}

  template <typename T>
  void required(const char* name, T& out) {
    const rapidjson::Value* v = find(name);
    if (!v) return fail(name, " is missing");
    read_value(name, *v, out);
  }
  template <typename T>
  void optional(const char* name, std::optional<T>& out) {
    const rapidjson::Value* v = find(name);
    if (!v || v->IsNull()) {
      out.reset();
      return;
    }
    T tmp{};
    read_value(name, *v, tmp);
    out = std::move(tmp);
  }

  bool ok() const { return error_.empty(); }
  // The first problem found, e.g. `field "email": expected a string, got a number`.
  const std::string& error() const { return error_; }

 private:
  const rapidjson::Value* find(const char* name) const {
    if (!object_.IsObject()) return nullptr;
    auto it = object_.FindMember(name);
    return it == object_.MemberEnd() ? nullptr : &it->value;
  }
  void fail(const char* name, const std::string& what) {
    if (error_.empty()) error_ = "field \"" + prefix_ + name + "\"" + what;
  }
  static const char* kind(const rapidjson::Value& v) { return json_kind(v); }
  void expected(const char* name, const char* want, const rapidjson::Value& v) {
    fail(name, std::string(": expected ") + want + ", got " + kind(v));
  }
  void read_value(const char* name, const rapidjson::Value& v, std::string& out) {
    if (!v.IsString()) return expected(name, "a string", v);
    out.assign(v.GetString(), v.GetStringLength());
  }
  void read_value(const char* name, const rapidjson::Value& v, int64_t& out) {
    if (!v.IsInt64()) return expected(name, "an integer", v);
    out = v.GetInt64();
  }
  void read_value(const char* name, const rapidjson::Value& v, int& out) {
    if (!v.IsInt()) return expected(name, "an integer that fits 32 bits", v);
    out = v.GetInt();
  }
  void read_value(const char* name, const rapidjson::Value& v, double& out) {
    if (!v.IsNumber()) return expected(name, "a number", v);
    out = v.GetDouble();
  }
  void read_value(const char* name, const rapidjson::Value& v, bool& out) {
    if (!v.IsBool()) return expected(name, "a boolean", v);
    out = v.GetBool();
  }
  template <typename T>
  void read_value(const char* name, const rapidjson::Value& v, std::vector<T>& out) {
    if (!v.IsArray()) return expected(name, "an array", v);
    out.clear();
    for (rapidjson::SizeType i = 0; i < v.Size() && ok(); ++i) {
      T item{};
      const std::string item_name = std::string(name) + "[" + std::to_string(i) + "]";
      read_value(item_name.c_str(), v[i], item);
      out.push_back(std::move(item));
    }
  }
  // A nested struct with its own static read().
  template <typename T, typename = decltype(T::read(std::declval<PayloadReader&>(), std::declval<T&>()))>
  void read_value(const char* name, const rapidjson::Value& v, T& out) {
    if (!v.IsObject()) return expected(name, "an object", v);
    PayloadReader nested(v, prefix_ + name + ".");
    T::read(nested, out);
    if (!nested.ok() && error_.empty()) error_ = nested.error();
  }

  const rapidjson::Value& object_;
  std::string prefix_;
  std::string error_;
};

}  // namespace pgrelay
