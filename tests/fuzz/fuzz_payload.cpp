// libFuzzer target: decoding an event's payload into a typed struct
// (include/pgrelay/payload.hpp) and checking it against a declaration
// (src/core/payload_check). A payload that does not fit must give a reason.
#include <rapidjson/document.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "core/payload_check.hpp"
#include "pgrelay/payload.hpp"

namespace {

struct Line {
  std::string sku;
  int quantity = 0;
  static void read(pgrelay::PayloadReader& r, Line& out) {
    r.required("sku", out.sku);
    r.required("quantity", out.quantity);
  }
};

struct Order {
  int64_t order_id = 0;
  std::string email;
  bool paid = false;
  std::optional<double> discount;
  std::vector<Line> lines;
  std::optional<std::vector<std::string>> tags;
  static void read(pgrelay::PayloadReader& r, Order& out) {
    r.required("order_id", out.order_id);
    r.required("email", out.email);
    r.required("paid", out.paid);
    r.optional("discount", out.discount);
    r.required("lines", out.lines);
    r.optional("tags", out.tags);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseStopWhenDoneFlag>(text.c_str(), text.size());
  if (!doc.HasParseError()) {
    pgrelay::PayloadReader reader(doc);
    Order order;
    Order::read(reader, order);
    if (!reader.ok() && reader.error().empty()) std::abort();  // a failure always says why
  }
  pgrelay::EventTypeDecl decl;
  decl.type = "orders.paid";
  decl.required = {{"order_id", "integer"}, {"email", "string"}, {"total", "number"},
                   {"paid", "boolean"},     {"lines", "array"},  {"customer", "object"}};
  // check_payload receives the whole event document; wrap the input both as the
  // document itself and as its payload.
  (void)pgrelay::check_payload(decl, text);
  (void)pgrelay::check_payload(decl, "{\"id\":1,\"type\":\"orders.paid\",\"payload\":" + text + "}");
  return 0;
}
