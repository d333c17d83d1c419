// Claim, ack, extend: the SQL on the relay's hot path, one statement per round trip.
#include "store/queue.hpp"

#include <algorithm>
#include <cstdlib>

#include <pqxx/pqxx>
#include <pqxx/transaction>

#include "core/log.hpp"

namespace pgrelay {
namespace {

// Candidates are taken in due order with SKIP LOCKED inside a CTE (a subquery
// in WHERE id IN (...) may be re-run by the planner and claim more than asked).
// Only the oldest unfinished event of a key is a candidate, so a failing event
// holds back its own key and nothing else. Paused types (pgrelay pause) are read
// once per claim into a hashed sub-plan and skipped by a filter; a paused event
// still heads its key. Both columns are NOT NULL, so NOT IN means "not paused".
// Written as NOT EXISTS, the check became an anti-join the planner answered with
// a sequential scan and a sort of the whole backlog (30 ms per claim of 50,000 due
// rows instead of 2); as "<> ALL (ARRAY(...))" its selectivity was guessed so low
// that the transactional claim did the same (docs/claim-query.md).
// What makes a row claimable, shared by both claims so a rule cannot reach one
// and miss the other (the pause check once did). Parameters: $1 batch size,
// $2 every type routed, $3 exact types, $4 LIKE patterns of prefixed types.
constexpr const char* kCandidatesSql = R"sql(
     AND e.next_attempt_at <= now()
     AND ($2 OR e.event_type = ANY ($3::text[]) OR e.event_type LIKE ANY ($4::text[]))
     AND e.event_type NOT IN (SELECT p.event_type FROM pgrelay.paused_types p)
     AND (e.key IS NULL OR NOT EXISTS (
           SELECT 1 FROM pgrelay.db_events o
            WHERE o.key = e.key AND o.id < e.id AND o.status IN ('pending', 'processing')))
   ORDER BY e.next_attempt_at, e.id
   LIMIT $1
   FOR UPDATE OF e SKIP LOCKED
)sql";

// The event document handlers receive, built in SQL; `attempt` is this attempt's number.
std::string event_doc_sql(const std::string& attempt) {
  return R"sql('{"id":' || e.id || ',"type":' || to_json(e.event_type) || ',"key":' || coalesce(to_json(e.key)::text, 'null')
              || ',"payload":' || e.payload || ',"headers":' || e.headers || ',"created_at":' || to_json(e.created_at)
              || ',"attempt":' || )sql" + attempt + " || '}' AS doc";
}

// The lease claim: $5 lease in milliseconds, $6 owner.
std::string claim_sql() {
  return std::string(R"sql(
WITH cand AS (
  SELECT e.id, e.status AS was
    FROM pgrelay.db_events e
   WHERE e.status IN ('pending', 'processing'))sql") + kCandidatesSql + R"sql(), token AS (
  SELECT nextval('pgrelay.claim_token_seq') AS t
), claimed AS (
  UPDATE pgrelay.db_events e
     SET status = 'processing',
         attempts = e.attempts + 1,
         next_attempt_at = now() + $5 * interval '1 millisecond',
         lease_owner = $6,
         claim_token = token.t
    FROM cand, token
   WHERE e.id = cand.id
  RETURNING e.id, e.event_type, e.key, e.attempts, e.claim_token, e.handlers_done, cand.was,
            )sql" + event_doc_sql("e.attempts") + R"sql(
)
SELECT * FROM claimed ORDER BY id
)sql";
}

// The transactional claim: the same candidates, locked and not written; the
// transaction stays open while the batch is delivered. Rows another relay holds
// this way are pending and locked, so SKIP LOCKED passes them and the key check
// still sees them as unfinished.
std::string claim_in_tx_sql() {
  return "SELECT e.id, e.event_type, e.key, e.attempts + 1, e.handlers_done,\n       " +
         event_doc_sql("(e.attempts + 1)") + "\n  FROM pgrelay.db_events e\n WHERE e.status = 'pending'" +
         kCandidatesSql;
}

// Outcomes arrive as one JSON array; finished events are deleted unless kept.
constexpr const char* kAckSql = R"sql(
WITH a AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS a(id bigint, token bigint, kind text, delay_ms bigint, error text, done text[])
), removed AS (
  DELETE FROM pgrelay.db_events e USING a
   WHERE NOT $2 AND a.kind = 'done'
     AND e.id = a.id AND e.claim_token = a.token AND e.status = 'processing'
  RETURNING e.id
), updated AS (
  UPDATE pgrelay.db_events e
     SET status = CASE a.kind WHEN 'done' THEN 'done' WHEN 'dead' THEN 'dead' ELSE 'pending' END,
         attempts = CASE WHEN a.kind = 'release' THEN greatest(e.attempts - 1, 0) ELSE e.attempts END,
         next_attempt_at = CASE WHEN a.kind IN ('retry', 'release')
                                THEN now() + a.delay_ms * interval '1 millisecond'
                                ELSE e.next_attempt_at END,
         last_error = coalesce(a.error, e.last_error),
         handlers_done = CASE WHEN a.done IS NULL THEN e.handlers_done ELSE e.handlers_done || a.done END,
         lease_owner = NULL,
         claim_token = NULL,
         finished_at = CASE WHEN a.kind IN ('done', 'dead') THEN now() END
    FROM a
   WHERE ($2 OR a.kind <> 'done')
     AND e.id = a.id AND e.claim_token = a.token AND e.status = 'processing'
  RETURNING e.id
)
SELECT array(SELECT id FROM removed UNION ALL SELECT id FROM updated)
)sql";

// The common case, every outcome a success and nothing kept: no JSON to build or parse.
constexpr const char* kAckDoneSql = R"sql(
DELETE FROM pgrelay.db_events e
 USING unnest($1::bigint[], $2::bigint[]) AS a(id, token)
 WHERE e.id = a.id AND e.claim_token = a.token AND e.status = 'processing'
RETURNING e.id
)sql";

// Where the events whose outcomes were refused are now, to say why.
constexpr const char* kRefusedSql = R"sql(
SELECT a.id, e.status, e.lease_owner
  FROM unnest($1::bigint[]) AS a(id)
  LEFT JOIN pgrelay.db_events e ON e.id = a.id
 ORDER BY a.id
)sql";

// The fence of a lease claim is its token; a transactional claim's is the row
// lock its own transaction holds. A lease claim counted the attempt when it
// claimed; a transactional one counts it here (a release gives it back).
constexpr const char* kLeaseFence = "e.claim_token = a.token AND e.status = 'processing'";
constexpr const char* kTxFence = "e.status = 'pending'";

std::string with_fence(std::string sql, bool in_tx) {
  const std::string from = kLeaseFence;
  for (size_t at; (at = sql.find(from)) != std::string::npos;) sql.replace(at, from.size(), in_tx ? kTxFence : kLeaseFence);
  if (in_tx) {
    const std::string lease_attempts = "CASE WHEN a.kind = 'release' THEN greatest(e.attempts - 1, 0) ELSE e.attempts END";
    const size_t at = sql.find(lease_attempts);
    if (at != std::string::npos) {
      sql.replace(at, lease_attempts.size(), "CASE WHEN a.kind = 'release' THEN e.attempts ELSE e.attempts + 1 END");
    }
  }
  return sql;
}

constexpr const char* kExtendSql = R"sql(
UPDATE pgrelay.db_events e
   SET next_attempt_at = now() + $3 * interval '1 millisecond'
  FROM unnest($1::bigint[], $2::bigint[]) AS a(id, token)
 WHERE e.id = a.id AND e.claim_token = a.token AND e.status = 'processing'
RETURNING e.id
)sql";

constexpr const char* kNextDueSql = R"sql(
SELECT ceil(extract(epoch FROM min(next_attempt_at) - now()) * 1000)::bigint
  FROM pgrelay.db_events
 WHERE status IN ('pending', 'processing') AND next_attempt_at > now()
)sql";

const char* kind_name(Ack::Kind k) {
  switch (k) {
    case Ack::Kind::done: return "done";
    case Ack::Kind::retry: return "retry";
    case Ack::Kind::dead: return "dead";
    case Ack::Kind::release: return "release";
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
  conn_->prepare("pgrelay_claim", claim_sql());
  conn_->prepare("pgrelay_ack", kAckSql);
  conn_->prepare("pgrelay_extend", kExtendSql);
  conn_->prepare("pgrelay_ack_done", kAckDoneSql);
  conn_->prepare("pgrelay_claim_tx", claim_in_tx_sql());
  conn_->prepare("pgrelay_ack_tx", with_fence(kAckSql, true));
  conn_->prepare("pgrelay_ack_done_tx", with_fence(kAckDoneSql, true));
  conn_->prepare("pgrelay_next_due", kNextDueSql);
  conn_->prepare("pgrelay_refused", kRefusedSql);
}

ClaimResult Queue::claim(int limit, std::chrono::milliseconds lease) {
  ClaimResult out;
  pqxx::nontransaction tx(*conn_);
  const pqxx::result r = tx.exec_prepared("pgrelay_claim", limit, everything_, exact_literal_, prefix_literal_,
                                          static_cast<int64_t>(lease.count()), owner_);
  out.events.reserve(r.size());
  for (const auto& row : r) {
    Event e;
    e.id = row[0].as<int64_t>();
    e.type = row[1].c_str();
    if (!row[2].is_null()) e.key = row[2].c_str();
    e.attempt = row[3].as<int>();
    e.claim_token = row[4].as<int64_t>();
    e.handlers_done = parse_text_array(row[5].c_str());
    if (std::string_view(row[6].c_str()) == "processing") ++out.lease_expiries;
    e.json.assign(row[7].c_str(), row[7].size());
    out.events.push_back(std::move(e));
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
    if (!a.error.empty()) {
      doc += ",\"error\":\"";
      log::append_json_escaped(doc, a.error.substr(0, 2000));
      doc += '"';
    }
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

AckResult Queue::ack(const std::vector<Ack>& acks, bool keep_done) {
  if (acks.empty()) return {};
  pqxx::nontransaction tx(*conn_);
  return ack_in(tx, acks, keep_done, false);
}

namespace {

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
  for (const auto& row : tx.exec_prepared("pgrelay_refused", int_array_literal(refused, true))) {
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

AckResult Queue::ack_in(pqxx::transaction_base& tx, const std::vector<Ack>& acks, bool keep_done, bool in_tx) {
  const bool all_done =
      !keep_done && std::all_of(acks.begin(), acks.end(), [](const Ack& a) { return a.kind == Ack::Kind::done; });
  std::vector<int64_t> applied;
  applied.reserve(acks.size());
  if (all_done) {
    std::vector<std::pair<int64_t, int64_t>> id_tokens;
    id_tokens.reserve(acks.size());
    for (const Ack& a : acks) id_tokens.emplace_back(a.id, a.token);
    for (const auto& row : tx.exec_prepared(in_tx ? "pgrelay_ack_done_tx" : "pgrelay_ack_done",
                                            int_array_literal(id_tokens, true), int_array_literal(id_tokens, false))) {
      applied.push_back(row[0].as<int64_t>());
    }
  } else {
    applied = parse_int_array(
        tx.exec_prepared1(in_tx ? "pgrelay_ack_tx" : "pgrelay_ack", ack_document(acks), keep_done)[0].c_str());
  }
  return refusals(tx, acks, std::move(applied));
}

std::vector<Event> Queue::claim_in_transaction(int limit) {
  tx_ = std::make_unique<pqxx::work>(*conn_, "pgrelay-claim");
  const pqxx::result r =
      tx_->exec_prepared("pgrelay_claim_tx", limit, everything_, exact_literal_, prefix_literal_);
  std::vector<Event> out;
  out.reserve(r.size());
  for (const auto& row : r) {
    Event e;
    e.id = row[0].as<int64_t>();
    e.type = row[1].c_str();
    if (!row[2].is_null()) e.key = row[2].c_str();
    e.attempt = row[3].as<int>();
    e.handlers_done = parse_text_array(row[4].c_str());
    e.json.assign(row[5].c_str(), row[5].size());
    out.push_back(std::move(e));
  }
  if (out.empty()) {
    tx_->commit();  // nothing held: do not keep a transaction open while idle
    tx_.reset();
  }
  return out;
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
  const pqxx::result r = tx.exec_prepared("pgrelay_extend", int_array_literal(id_tokens, true),
                                          int_array_literal(id_tokens, false), static_cast<int64_t>(lease.count()));
  kept.reserve(r.size());
  for (const auto& row : r) kept.push_back(row[0].as<int64_t>());
  return kept;
}

std::optional<std::chrono::milliseconds> Queue::next_due() {
  pqxx::nontransaction tx(*conn_);
  const pqxx::result r = tx.exec_prepared("pgrelay_next_due");
  if (r.empty() || r[0][0].is_null()) return std::nullopt;
  return std::chrono::milliseconds(std::max<int64_t>(0, r[0][0].as<int64_t>()));
}

}  // namespace pgrelay
