// Per-test databases: CREATE DATABASE ... TEMPLATE is a file copy, far faster than migrating.
#include "support/test_db.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "store/migrate.hpp"

namespace pgrelay::test {
namespace {

std::string template_name(pqxx::connection& admin) {
  std::string all;
  for (const auto& f : embedded_sql()) all += f.sql;
  pqxx::nontransaction tx(admin);
  return "pgrelay_tpl_" + tx.exec_params1("SELECT left(md5($1), 12)", all)[0].as<std::string>();
}

void ensure_template(pqxx::connection& admin, const std::string& tpl) {
  pqxx::nontransaction tx(admin);
  // Serialise template creation across test processes running in parallel.
  tx.exec("SELECT pg_advisory_lock(1886221420, 99)");
  try {
    if (tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", tpl).empty()) {
      tx.exec("CREATE DATABASE " + admin.quote_name(tpl + "_build"));
      {
        pqxx::connection c(with_dbname(server_url(), tpl + "_build"));
        migrate(c);
      }
      tx.exec("ALTER DATABASE " + admin.quote_name(tpl + "_build") + " RENAME TO " + admin.quote_name(tpl));
    }
  } catch (...) {
    tx.exec("SELECT pg_advisory_unlock(1886221420, 99)");
    throw;
  }
  tx.exec("SELECT pg_advisory_unlock(1886221420, 99)");
}

}  // namespace

std::string server_url() {
  const char* u = std::getenv("PGRELAY_TEST_DATABASE_URL");
  if (!u || !*u) throw std::runtime_error("PGRELAY_TEST_DATABASE_URL is not set (scripts/test sets it)");
  return u;
}

std::string with_dbname(const std::string& base, const std::string& dbname) {
  const bool is_url = base.rfind("postgresql://", 0) == 0 || base.rfind("postgres://", 0) == 0;
  if (!is_url) return base + " dbname=" + dbname;  // a later dbname wins in libpq
  const size_t host = base.find("://") + 3;
  const size_t query = base.find('?', host);
  const size_t slash = base.find('/', host);
  const size_t path_end = query == std::string::npos ? base.size() : query;
  const size_t path = (slash == std::string::npos || slash > path_end) ? path_end : slash;
  return base.substr(0, path) + "/" + dbname + base.substr(path_end);
}

TestDb::TestDb() {
  static std::atomic<int> counter{0};
  pqxx::connection admin(server_url());
  const std::string tpl = template_name(admin);
  ensure_template(admin, tpl);
  name_ = "t_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  pqxx::nontransaction tx(admin);
  tx.exec("DROP DATABASE IF EXISTS " + admin.quote_name(name_));
  tx.exec("CREATE DATABASE " + admin.quote_name(name_) + " TEMPLATE " + admin.quote_name(tpl));
  url_ = with_dbname(server_url(), name_);
}

TestDb::~TestDb() {
  try {
    pqxx::connection admin(server_url());
    pqxx::nontransaction tx(admin);
    // A database with a replication slot (capture "wal") cannot be dropped: end its
    // readers, then drop its slots (a reader may take a moment to let go).
    for (int i = 0; i < 50; ++i) {
      tx.exec_params("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active",
                     name_);
      try {
        tx.exec_params("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1",
                       name_);
        break;
      } catch (const pqxx::sql_error&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    tx.exec("DROP DATABASE IF EXISTS " + admin.quote_name(name_) + " WITH (FORCE)");
  } catch (...) {
    // A leftover database is dropped with the throwaway cluster.
  }
}

std::unique_ptr<pqxx::connection> TestDb::connect() const { return std::make_unique<pqxx::connection>(url_); }

pqxx::result TestDb::exec(const std::string& sql) const {
  pqxx::connection c(url_);
  pqxx::work tx(c);
  pqxx::result r = tx.exec(sql);
  tx.commit();
  return r;
}

int64_t TestDb::scalar(const std::string& sql) const { return scalar_at(url_, sql); }

int64_t scalar_at(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  pqxx::work tx(c);
  const int64_t v = tx.exec(sql)[0][0].as<int64_t>();
  tx.commit();
  return v;
}

std::string TestDb::delivery_id(int64_t id) const {
  if (id_prefix_.empty()) {
    id_prefix_ = exec("SELECT value FROM pgrelay.settings WHERE name = 'event_id_prefix'")[0][0].as<std::string>();
  }
  return id_prefix_ + "-" + std::to_string(id);
}

}  // namespace pgrelay::test
