// Claim, ack, extend: the relay's side of pgrelay.db_events, one round trip each.
// The claim and the acks are SQL functions (triggers/40_queue.sql), called with
// unnamed parameterised statements, so nothing here is session state a pooler in
// transaction mode could lose (docs/operations.md, PgBouncer).
#include "store/queue.hpp"

#include <algorithm>
#include <cstdlib>

#include <pqxx/pqxx>
#include <pqxx/transaction>

#include "core/log.hpp"

namespace pgrelay {
namespace {

// Appends ,"name":"value" to a JSON object being written, the value escaped.
void append_string_member(std::string& doc, const char* name, std::string_view value) {
  doc += ",\"";
  doc += name;
  doc += "\":\"";
  log::append_json_escaped(doc, value);
  doc += '"';
}

constexpr const char* kClaimSql = "SELECT * FROM pgrelay.claim($1, $2, $3, $4, $5, $6, $7::text[], $8::text[])";
constexpr const char* kAckSql = "SELECT applied, busy_keys FROM pgrelay.ack($1::jsonb, $2, $3, $4::text[])";
constexpr const char* kAckDoneSql =
    "SELECT applied, busy_keys FROM pgrelay.ack_done($1::bigint[], $2::bigint[], $3, $4::text[], $5::boolean[])";
// The same with the acks' attempts logged in the same statement (so in the same round
// trip and transaction); record_attempt_batches() returns one row, so it runs exactly once.
constexpr const char* kAckLoggedSql =
    "SELECT a.applied, a.busy_keys, pgrelay.record_attempt_batches($5::bigint[], $6::bigint[], $7::json, $8) "
    "FROM pgrelay.ack($1::jsonb, $2, $3, $4::text[]) a";
constexpr const char* kAckDoneLoggedSql =
    "SELECT a.applied, a.busy_keys, pgrelay.record_attempt_batches($6::bigint[], $7::bigint[], $8::json, $9) "
    "FROM pgrelay.ack_done($1::bigint[], $2::bigint[], $3, $4::text[], $5::boolean[]) a";
constexpr const char* kPromoteSql = "SELECT pgrelay.promote($1::text[])";
constexpr const char* kPromoteOrphansSql = "SELECT pgrelay.promote(pgrelay.orphaned_keys(10000))";
constexpr const char* kAnnounceSql = R"sql(
WITH mine AS (
  UPDATE pgrelay.relays SET routes_all = $2, routes_exact = $3::text[], routes_prefix = $4::text[] WHERE id = $1
)
SELECT pgrelay.take_back_unrouted($2, $3::text[], $4::text[])
)sql";

constexpr const char* kExtendSql = R"sql(
UPDATE pgrelay.db_events e
   SET next_attempt_at = now() + $3 * interval '1 millisecond'
  FROM unnest($1::bigint[], $2::bigint[]) AS a(id, token)
 WHERE e.id = a.id AND e.claim_token = a.token AND e.status = 'processing'
RETURNING e.id
)sql";

// Events that came due in the last 50 ms count too (as 0 ms): a claim that ran a
// moment before a lease ran out, by the server's clock, must look once more rather
// than sleep until the next poll. Later than that, a due event the claim passed over
// (a follower) no longer keeps the relay claiming.
constexpr const char* kNextDueSql = R"sql(
SELECT ceil(extract(epoch FROM min(next_attempt_at) - now()) * 1000)::bigint
  FROM pgrelay.db_events
 WHERE status IN ('pending', 'processing') AND next_attempt_at > now() - interval '50 milliseconds'
)sql";

// Where the events whose outcomes were refused are now, to say why.
constexpr const char* kRefusedSql = R"sql(
SELECT a.id, e.status, e.lease_owner
  FROM unnest($1::bigint[]) AS a(id)
  LEFT JOIN pgrelay.db_events e ON e.id = a.id
 ORDER BY a.id
)sql";

const char* kind_name(Ack::Kind k) {
  switch (k) {
    case Ack::Kind::done: return "done";
    case Ack::Kind::retry: return "retry";
    case Ack::Kind::dead: return "dead";
    case Ack::Kind::release: return "release";
    case Ack::Kind::hold: return "hold";
  }
  return "done";
}

std::string like_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string int_array_literal(const std::vector<std::pair<int64_t, int64_t>>& v, bool first) {
  std::string out = "{";
  for (const auto& p : v) {
    if (out.size() > 1) out += ',';
    out += std::to_string(first ? p.first : p.second);
  }
  return out + "}";
}

// Parses a text[] value as libpq returns it; our handler names never need quoting
// but may arrive quoted, so both forms are read.
std::vector<std::string> parse_text_array(const char* s) {
  std::vector<std::string> out;
  if (!s || s[0] != '{') return out;
  std::string cur;
  bool quoted = false, in_elem = false;
  for (const char* p = s + 1; *p; ++p) {
    if (quoted) {
      if (*p == '\\' && p[1]) cur += *++p;
      else if (*p == '"') quoted = false;
      else cur += *p;
    } else if (*p == '"') {
      quoted = in_elem = true;
    } else if (*p == ',' || *p == '}') {
      if (in_elem) out.push_back(cur);
      cur.clear();
      in_elem = false;
    } else {
      cur += *p;
      in_elem = true;
    }
  }
  return out;
}

Event event_from(const pqxx::row& row) {
  Event e;
  e.id = row[0].as<int64_t>();
  e.type = row[1].c_str();
  if (!row[2].is_null()) e.key = row[2].c_str();
  e.attempt = row[3].as<int>();
  e.claim_token = row[4].as<int64_t>();
  e.handlers_done = parse_text_array(row[5].c_str());
  e.json.assign(row[7].c_str(), row[7].size());
  return e;
}

// The outcomes of `acks` whose ids are not in `applied`, with where each event is now.
AckResult refusals(pqxx::transaction_base& tx, const std::vector<Ack>& acks, std::vector<int64_t> applied) {
  AckResult out;
  out.applied = static_cast<int>(applied.size());
  if (applied.size() >= acks.size()) return out;
  std::sort(applied.begin(), applied.end());
  std::vector<std::pair<int64_t, int64_t>> refused;
  for (const Ack& a : acks) {
    if (!std::binary_search(applied.begin(), applied.end(), a.id)) refused.emplace_back(a.id, a.token);
  }
  for (const auto& row : tx.exec_params(kRefusedSql, int_array_literal(refused, true))) {
    RefusedOutcome r;
    r.id = row[0].as<int64_t>();
    if (!row[1].is_null()) r.status = row[1].c_str();
    if (!row[2].is_null()) r.lease_owner = row[2].c_str();
    out.refused.push_back(std::move(r));
  }
  return out;
}

std::vector<int64_t> parse_int_array(const char* s) {
  std::vector<int64_t> out;
  if (!s) return out;
  for (const char* p = s; *p;) {
    if (*p >= '0' && *p <= '9') {
      char* end = nullptr;
      out.push_back(std::strtoll(p, &end, 10));
      p = end;
    } else {
      ++p;
    }
  }
  return out;
}

}  // namespace

std::string text_array_literal(const std::vector<std::string>& items) {
  std::string out = "{";
  for (const auto& s : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

Queue::Queue(std::unique_ptr<pqxx::connection> conn, std::string owner, TypeFilter filter)
    : conn_(std::move(conn)), owner_(std::move(owner)), everything_(filter.everything) {
  std::vector<std::string> likes;
  for (const auto& p : filter.prefixes) likes.push_back(like_escape(p) + "%");
  exact_literal_ = text_array_literal(filter.exact);
  prefix_literal_ = text_array_literal(likes);
}

ClaimResult Queue::claim(const Limits& limits, std::chrono::milliseconds lease) {
  ClaimResult out;
  pqxx::nontransaction tx(*conn_);
  const pqxx::result r =
      tx.exec_params(kClaimSql, limits.heads, limits.events, limits.run, static_cast<int64_t>(lease.count()), owner_,
                     everything_, exact_literal_, prefix_literal_);
  out.events.reserve(r.size());
  for (const auto& row : r) {
    if (row[0].as<int64_t>() == 0) {  // the claim stopped at its window limit: more is due
      out.more_due = true;
      continue;
    }
    if (std::string_view(row[6].c_str()) == "processing") ++out.lease_expiries;
    out.events.push_back(event_from(row));
  }
  return out;
}

ClaimResult Queue::claim_in_transaction(const Limits& limits) {
  tx_ = std::make_unique<pqxx::work>(*conn_, "pgrelay-claim");
  const pqxx::result r = tx_->exec_params(kClaimSql, limits.heads, limits.events, limits.run, int64_t{0}, owner_,
                                          everything_, exact_literal_, prefix_literal_);
  ClaimResult out;
  out.events.reserve(r.size());
  for (const auto& row : r) {
    if (row[0].as<int64_t>() == 0) {  // more is due (see claim())
      out.more_due = true;
      continue;
    }
    out.events.push_back(event_from(row));
  }
  if (out.events.empty()) {
    tx_->commit();  // nothing held: do not keep a transaction open while idle
    tx_.reset();
  }
  return out;
}

std::string Queue::ack_document(const std::vector<Ack>& acks) const {
  std::string doc;
  doc.reserve(acks.size() * 64);
  doc += '[';
  for (const Ack& a : acks) {
    if (doc.size() > 1) doc += ',';
    doc += "{\"id\":" + std::to_string(a.id) + ",\"token\":" + std::to_string(a.token) + ",\"kind\":\"" +
           kind_name(a.kind) + "\",\"delay_ms\":" + std::to_string(a.delay_ms);
    if (a.run_goes_on) doc += ",\"run_goes_on\":true";
    if (!a.error.empty()) append_string_member(doc, "error", std::string_view(a.error).substr(0, 2000));
    if (!a.handlers_done.empty()) {
      doc += ",\"done\":[";
      for (size_t i = 0; i < a.handlers_done.size(); ++i) {
        if (i) doc += ',';
        doc += '"';
        log::append_json_escaped(doc, a.handlers_done[i]);
        doc += '"';
      }
      doc += ']';
    }
    doc += '}';
  }
  doc += ']';
  return doc;
}

Queue::AttemptBatches Queue::attempt_batches(const std::vector<Ack>& acks) {
  struct Bucket {
    int64_t until_us = 0;
    std::string doc;
  };
  // A batch's ids are nearly always one bucket, at most a few: a short vector beats a map.
  std::vector<std::pair<int64_t, Bucket>> buckets;
  for (const Ack& a : acks) {
    if (a.attempts.empty()) continue;
    const int64_t bucket = a.id >> 10;
    auto it = std::find_if(buckets.begin(), buckets.end(), [&](const auto& b) { return b.first == bucket; });
    if (it == buckets.end()) it = buckets.insert(buckets.end(), {bucket, Bucket{}});
    Bucket& b = it->second;
    for (const Attempt& t : a.attempts) {
      std::string& doc = b.doc;
      doc += doc.empty() ? '[' : ',';
      doc += "{\"e\":" + std::to_string(a.id) + ",\"h\":\"";
      log::append_json_escaped(doc, t.handler);
      doc += "\",\"a\":" + std::to_string(t.attempt) + ",\"s\":" + std::to_string(t.started_at_us) +
             ",\"d\":" + std::to_string(t.duration_ms) + ",\"o\":\"" + t.outcome + '"';
      if (t.http_status != 0) doc += ",\"st\":" + std::to_string(t.http_status);
      if (t.exit_code) doc += ",\"x\":" + std::to_string(*t.exit_code);
      if (!t.error.empty()) append_string_member(doc, "err", std::string_view(t.error).substr(0, 2000));
      if (!t.response_head.empty()) append_string_member(doc, "r", t.response_head);
      doc += '}';
      b.until_us = std::max(b.until_us, t.started_at_us);
    }
  }
  AttemptBatches out;
  if (buckets.empty()) return out;
  out.buckets = out.untils = "{";
  out.docs = "[";
  for (size_t i = 0; i < buckets.size(); ++i) {
    const char* sep = i ? "," : "";
    out.buckets += sep + std::to_string(buckets[i].first);
    out.untils += sep + std::to_string(buckets[i].second.until_us);
    // Appended in place: `sep + doc` would copy each bucket's document (~18 KB) twice.
    out.docs += sep;
    out.docs += buckets[i].second.doc;
    out.docs += ']';
  }
  out.buckets += '}';
  out.untils += '}';
  out.docs += ']';
  return out;
}

AckResult Queue::ack(const std::vector<Ack>& acks, bool keep_done) {
  if (acks.empty()) return {};
  pqxx::nontransaction tx(*conn_);
  return ack_in(tx, acks, keep_done, false);
}

AckResult Queue::ack_in(pqxx::transaction_base& tx, const std::vector<Ack>& acks, bool keep_done, bool locked) {
  const bool all_done =
      !keep_done && std::all_of(acks.begin(), acks.end(), [](const Ack& a) { return a.kind == Ack::Kind::done; });
  const std::string more_keys = text_array_literal(busy_keys_);
  const AttemptBatches attempts = attempt_batches(acks);
  pqxx::result r;
  if (all_done) {
    std::vector<std::pair<int64_t, int64_t>> id_tokens;
    id_tokens.reserve(acks.size());
    for (const Ack& a : acks) id_tokens.emplace_back(a.id, a.token);
    const std::string ids = int_array_literal(id_tokens, true), tokens = int_array_literal(id_tokens, false);
    std::string run_goes_on = "{";
    for (const Ack& a : acks) {
      if (run_goes_on.size() > 1) run_goes_on += ',';
      run_goes_on += a.run_goes_on ? 't' : 'f';
    }
    run_goes_on += '}';
    r = attempts.docs.empty() ? tx.exec_params(kAckDoneSql, ids, tokens, locked, more_keys, run_goes_on)
                              : tx.exec_params(kAckDoneLoggedSql, ids, tokens, locked, more_keys, run_goes_on,
                                               attempts.buckets, attempts.untils, attempts.docs, owner_);
  } else {
    const std::string doc = ack_document(acks);
    r = attempts.docs.empty() ? tx.exec_params(kAckSql, doc, keep_done, locked, more_keys)
                              : tx.exec_params(kAckLoggedSql, doc, keep_done, locked, more_keys, attempts.buckets,
                                               attempts.untils, attempts.docs, owner_);
  }
  busy_keys_ = parse_text_array(r[0][1].c_str());
  return refusals(tx, acks, parse_int_array(r[0][0].c_str()));
}

AckResult Queue::finish_transaction(const std::vector<Ack>& acks, bool keep_done) {
  AckResult result;
  if (!acks.empty()) result = ack_in(*tx_, acks, keep_done, true);
  tx_->commit();
  tx_.reset();
  return result;
}

AckResult Queue::ack_with_sql(const std::vector<SqlCall>& calls,
                              const std::function<std::vector<Ack>(const SqlResults&)>& decide, bool keep_done) {
  SqlResults results;
  pqxx::work tx(*conn_, "pgrelay-sql-ack");
  for (const SqlCall& call : calls) {
    std::string doc = "[";
    for (const Event* e : call.events) {
      if (doc.size() > 1) doc += ',';
      doc += "{\"id\":" + std::to_string(e->id) + ",\"token\":" + std::to_string(e->claim_token) +
             ",\"event\":" + e->json + "}";
    }
    doc += ']';
    // A savepoint, so that a call failing as a whole leaves the transaction usable.
    tx.exec("SAVEPOINT pgrelay_sql_call");
    try {
      for (const auto& row : tx.exec_params("SELECT id, error FROM pgrelay.call_handler($1::text::regproc, $2::jsonb)",
                                            call.function, doc)) {
        results.emplace_back(call.handler, row[0].as<int64_t>(), row[1].is_null() ? "" : row[1].c_str());
      }
      tx.exec("RELEASE SAVEPOINT pgrelay_sql_call");
    } catch (const pqxx::sql_error& e) {
      tx.exec("ROLLBACK TO SAVEPOINT pgrelay_sql_call");
      std::string why = e.what();
      while (!why.empty() && why.back() == '\n') why.pop_back();
      for (const Event* ev : call.events) results.emplace_back(call.handler, ev->id, call.function + ": " + why);
    }
  }
  const std::vector<Ack> acks = decide(results);
  AckResult result;
  if (!acks.empty()) result = ack_in(tx, acks, keep_done, false);
  tx.commit();
  return result;
}

std::vector<int64_t> Queue::extend(const std::vector<std::pair<int64_t, int64_t>>& id_tokens,
                                   std::chrono::milliseconds lease) {
  std::vector<int64_t> kept;
  if (id_tokens.empty()) return kept;
  pqxx::nontransaction tx(*conn_);
  const pqxx::result r = tx.exec_params(kExtendSql, int_array_literal(id_tokens, true),
                                        int_array_literal(id_tokens, false), static_cast<int64_t>(lease.count()));
  kept.reserve(r.size());
  for (const auto& row : r) kept.push_back(row[0].as<int64_t>());
  return kept;
}

std::optional<std::chrono::milliseconds> Queue::next_due() {
  pqxx::nontransaction tx(*conn_);
  const pqxx::result r = tx.exec(kNextDueSql);
  if (r.empty() || r[0][0].is_null()) return std::nullopt;
  return std::chrono::milliseconds(std::max<int64_t>(0, r[0][0].as<int64_t>()));
}

void Queue::promote_waiting() {
  if (busy_keys_.empty()) return;
  pqxx::nontransaction tx(*conn_);
  busy_keys_ = parse_text_array(tx.exec_params1(kPromoteSql, text_array_literal(busy_keys_))[0].c_str());
}

void Queue::promote_orphans() {
  pqxx::nontransaction tx(*conn_);
  for (auto& k : parse_text_array(tx.exec1(kPromoteOrphansSql)[0].c_str())) busy_keys_.push_back(std::move(k));
}

void Queue::announce_routes() {
  pqxx::nontransaction tx(*conn_);
  const int64_t back =
      tx.exec_params1(kAnnounceSql, owner_, everything_, exact_literal_, prefix_literal_)[0].as<int64_t>();
  if (back > 0) log::info("took back events no relay routed until now", {{"count", back}});
}

}  // namespace pgrelay
