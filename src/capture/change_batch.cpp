// Decoded transactions into the JSON the materializer reads (capture/change_batch.hpp).
#include "capture/change_batch.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/log.hpp"

namespace pgrelay {
namespace {

constexpr uint32_t kJsonOid = 114;
constexpr uint32_t kJsonbOid = 3802;

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

const char* op_name(PgoutputMessage::Kind k) {
  switch (k) {
    case PgoutputMessage::Kind::insert: return "insert";
    case PgoutputMessage::Kind::update: return "update";
    default: return "delete";
  }
}

// One row as {column: value}; `fallback` supplies unchanged TOASTed values.
// Every change record begins with its transaction's commit LSN and its kind.
void start_change(Writer& w, const std::string& commit_lsn, const char* op) {
  w.StartObject();
  w.Key("c");
  w.String(commit_lsn.c_str());
  w.Key("op");
  w.String(op);
}

void write_row(Writer& w, const std::vector<RelationColumn>& columns, const Tuple& row, const Tuple* fallback) {
  w.StartObject();
  for (size_t i = 0; i < row.size() && i < columns.size(); ++i) {
    const TupleValue* v = &row[i];
    if (v->kind == TupleValue::Kind::unchanged && fallback && i < fallback->size()) v = &(*fallback)[i];
    if (v->kind == TupleValue::Kind::unchanged || v->kind == TupleValue::Kind::binary) continue;
    const RelationColumn& c = columns[i];
    w.Key(c.name.data(), static_cast<rapidjson::SizeType>(c.name.size()));
    if (v->kind == TupleValue::Kind::null) {
      w.Null();
    } else if (c.type_oid == kJsonOid || c.type_oid == kJsonbOid) {
      w.RawValue(v->data.data(), v->data.size(), rapidjson::kObjectType);
    } else {
      w.String(v->data.data(), static_cast<rapidjson::SizeType>(v->data.size()));
    }
  }
  w.EndObject();
}

}  // namespace

bool ChangeBatch::feed(const PgoutputMessage& m) {
  switch (m.kind) {
    case PgoutputMessage::Kind::begin:
      in_transaction_ = true;
      commit_lsn_ = format_lsn(m.final_lsn);
      open_.clear();
      open_count_ = 0;
      return false;
    case PgoutputMessage::Kind::commit:
      if (open_count_ > 0) {
        if (!ready_.empty()) ready_ += ',';
        ready_ += open_;
        ready_count_ += open_count_;
      }
      ++transactions_;
      end_lsn_ = m.end_lsn;
      in_transaction_ = false;
      open_.clear();
      open_count_ = 0;
      return true;
    case PgoutputMessage::Kind::relation: relations_[m.relation_oid] = Relation{m.columns}; return false;
    case PgoutputMessage::Kind::insert:
    case PgoutputMessage::Kind::update:
    case PgoutputMessage::Kind::delete_: add_row(m); return false;
    case PgoutputMessage::Kind::message: add_message(m); return false;
    default:
      // Truncate: trigger capture has no TRUNCATE events either; origin and type: nothing to do.
      return false;
  }
}

void ChangeBatch::add_row(const PgoutputMessage& m) {
  const auto rel = relations_.find(m.relation_oid);
  if (rel == relations_.end()) {
    throw PgoutputError("pgoutput: a change of relation " + std::to_string(m.relation_oid) +
                        " before its Relation message");
  }
  const std::vector<RelationColumn>& columns = rel->second.columns;
  rapidjson::StringBuffer out;
  Writer w(out);
  start_change(w, commit_lsn_, op_name(m.kind));
  w.Key("r");
  w.Uint(m.relation_oid);
  const Tuple* old_row = m.old_tuple && m.old_kind == 'O' ? &*m.old_tuple : nullptr;
  if (m.new_tuple) {
    w.Key("new");
    write_row(w, columns, *m.new_tuple, old_row);
  }
  if (m.old_tuple) {
    // A key-only old row ('K': REPLICA IDENTITY DEFAULT) is kept as sent; track()
    // asks for FULL so that updates and deletes carry the whole old row.
    w.Key("old");
    write_row(w, columns, *m.old_tuple, nullptr);
  }
  w.EndObject();
  add_open(out.GetString(), out.GetSize());
}

void ChangeBatch::add_message(const PgoutputMessage& m) {
  // Empty content is pgrelay.wake(), not an event; a non-transactional message
  // is not emit()'s (it would arrive even if its transaction rolled back).
  if (m.prefix != kCaptureMessagePrefix || m.content.empty() || !m.transactional) return;
  rapidjson::Document doc;
  doc.Parse(m.content.data(), m.content.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("type") || !doc["type"].IsString()) {
    // Someone else's message under pgrelay's prefix: never an event, and never a
    // reason to stop capturing everything behind it.
    log::warn("wal capture: skipped a logical message with prefix \"pgrelay\" that emit() did not write",
              {{"lsn", format_lsn(m.message_lsn)}});
    return;
  }
  rapidjson::StringBuffer out;
  Writer w(out);
  start_change(w, commit_lsn_, "message");
  w.Key("m");
  doc.Accept(w);
  w.EndObject();
  add_open(out.GetString(), out.GetSize());
}

void ChangeBatch::add_open(const char* change, size_t size) {
  if (open_count_ > 0) open_ += ',';
  open_.append(change, size);
  ++open_count_;
}

std::string ChangeBatch::take() {
  std::string json = "[" + ready_ + "]";
  ready_.clear();
  ready_count_ = 0;
  transactions_ = 0;
  return json;
}

void ChangeBatch::reset() {
  relations_.clear();
  in_transaction_ = false;
  open_.clear();
  open_count_ = 0;
  ready_.clear();
  ready_count_ = 0;
  transactions_ = 0;
}

}  // namespace pgrelay
