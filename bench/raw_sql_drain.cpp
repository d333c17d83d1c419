// The physical limit: the fastest plain-SQL loop that claims and finishes
// pre-inserted outbox rows in batches, one statement per batch, with no relay
// around it. Variants:
//   delete  DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING payload
//   update  UPDATE ... SET status='done' (same claim), RETURNING payload
//   lease   two round trips per batch, as a leasing relay does: UPDATE to
//           'processing' with a token, then DELETE the batch by id and token
//   txclaim a transactional claim (DESIGN.md): BEGIN; SELECT ... FOR UPDATE SKIP
//           LOCKED; (handlers would run here) DELETE by id; COMMIT
// Prints one JSON object: {"variant","workers","batch","rows","seconds","rows_per_s"}.
#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "bench_util.hpp"

namespace {

constexpr const char* kCandidates = R"sql(
  SELECT id FROM pgrelay.db_events
   WHERE status IN ('pending', 'processing') AND next_attempt_at <= now()
   ORDER BY next_attempt_at, id
   LIMIT $1
   FOR UPDATE SKIP LOCKED)sql";

std::string delete_sql() {
  return std::string("WITH c AS (") + kCandidates +
         ")\nDELETE FROM pgrelay.db_events e USING c WHERE e.id = c.id RETURNING e.id, e.event_type, e.payload";
}

std::string update_sql() {
  return std::string("WITH c AS (") + kCandidates +
         ")\nUPDATE pgrelay.db_events e SET status = 'done', finished_at = now() FROM c WHERE e.id = c.id"
         " RETURNING e.id, e.event_type, e.payload";
}

std::string lease_claim_sql() {
  return std::string("WITH c AS (") + kCandidates +
         ")\nUPDATE pgrelay.db_events e SET status = 'processing', attempts = e.attempts + 1,"
         " next_attempt_at = now() + interval '30 s', claim_token = $2 FROM c WHERE e.id = c.id"
         " RETURNING e.id, e.event_type, e.payload";
}

std::string select_sql() {
  return std::string(kCandidates)
      .replace(std::string(kCandidates).find("SELECT id"), 9, "SELECT id, event_type, payload");
}

constexpr const char* kTxFinishSql = "DELETE FROM pgrelay.db_events WHERE id = ANY ($1::bigint[])";

constexpr const char* kLeaseFinishSql =
    "DELETE FROM pgrelay.db_events WHERE id = ANY ($1::bigint[]) AND claim_token = $2";

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto f = bench::parse_flags(argc, argv);
    const std::string db = bench::flag(f, "db", "");
    const std::string variant = bench::flag(f, "variant", "delete");
    const int batch = static_cast<int>(bench::flag_int(f, "batch", 256));
    const int workers = static_cast<int>(bench::flag_int(f, "workers", 1));
    if (variant != "delete" && variant != "update" && variant != "lease" && variant != "txclaim") {
      std::cerr << "raw_sql_drain: --variant must be delete, update, lease or txclaim\n";
      return 2;
    }

    std::vector<std::unique_ptr<pqxx::connection>> conns;
    for (int i = 0; i < workers; ++i) {
      auto c = std::make_unique<pqxx::connection>(db);
      c->prepare("claim", variant == "delete"    ? delete_sql()
                          : variant == "update"  ? update_sql()
                          : variant == "txclaim" ? select_sql()
                                                 : lease_claim_sql());
      c->prepare("finish", variant == "txclaim" ? kTxFinishSql : kLeaseFinishSql);
      conns.push_back(std::move(c));
    }
    std::atomic<int64_t> rows{0};
    std::atomic<int64_t> token{1};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < workers; ++i) {
      threads.emplace_back([&, i] {
        pqxx::connection& c = *conns[i];
        while (!go) std::this_thread::yield();
        std::string ids;
        for (;;) {
          size_t n;
          if (variant == "txclaim") {
            pqxx::work tx(c);
            const pqxx::result r = tx.exec_prepared("claim", batch);
            n = r.size();
            if (n == 0) break;
            ids.assign("{");
            for (const auto& row : r) {
              if (ids.size() > 1) ids += ',';
              ids += row[0].c_str();
            }
            ids += '}';
            tx.exec_prepared("finish", ids);
            tx.commit();
          } else if (variant == "lease") {
            const int64_t t = token++;
            pqxx::result r;
            {
              pqxx::nontransaction tx(c);
              r = tx.exec_prepared("claim", batch, t);
            }
            n = r.size();
            if (n == 0) break;
            ids.assign("{");
            for (const auto& row : r) {
              if (ids.size() > 1) ids += ',';
              ids += row[0].c_str();
            }
            ids += '}';
            pqxx::nontransaction tx(c);
            tx.exec_prepared("finish", ids, t);
          } else {
            pqxx::nontransaction tx(c);
            n = tx.exec_prepared("claim", batch).size();
            if (n == 0) break;
          }
          rows += static_cast<int64_t>(n);
        }
      });
    }
    const auto t0 = std::chrono::steady_clock::now();
    go = true;
    for (auto& t : threads) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "{\"variant\":\"" << variant << "\",\"workers\":" << workers << ",\"batch\":" << batch
              << ",\"rows\":" << rows.load() << ",\"seconds\":" << s << ",\"rows_per_s\":" << rows.load() / s << "}\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "raw_sql_drain: " << e.what() << "\n";
    return 1;
  }
}
