// Migrations: idempotent, checksummed, safe when replicas start at once.
#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "store/migrate.hpp"
#include "support/child_process.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;

namespace {

// A database with nothing in it (not cloned from the migrated template).
struct EmptyDb {
  std::string name = "empty_" + std::to_string(::getpid()) + "_" + std::to_string(rand());
  std::string url;
  EmptyDb() {
    pqxx::connection admin(server_url());
    pqxx::nontransaction(admin).exec("CREATE DATABASE " + admin.quote_name(name));
    url = with_dbname(server_url(), name);
  }
  ~EmptyDb() {
    pqxx::connection admin(server_url());
    pqxx::nontransaction(admin).exec("DROP DATABASE IF EXISTS " + admin.quote_name(name) + " WITH (FORCE)");
  }
};

}  // namespace

TEST_CASE("migrate applies every file once and is idempotent") {
  EmptyDb db;
  auto r1 = run_pgrelay({"-d", db.url, "migrate"});
  CHECK(r1.code == 0);
  CHECK(r1.out.find("applied 0001_events.sql") != std::string::npos);
  auto r2 = run_pgrelay({"-d", db.url, "migrate"});
  CHECK(r2.code == 0);
  CHECK(r2.out == "migrate: up to date\n");
  pqxx::connection c(db.url);
  pqxx::nontransaction tx(c);
  CHECK(tx.exec1("SELECT count(*) FROM pgrelay.schema_migrations")[0].as<size_t>() == embedded_sql().size());
}

TEST_CASE("migrate refuses to run when an applied migration was changed") {
  EmptyDb db;
  pqxx::connection c(db.url);
  migrate(c);
  std::vector<SqlFile> changed = embedded_sql();
  changed[0].sql = "SELECT 1; -- edited after it was applied";
  try {
    migrate(c, changed);
    FAIL("expected a checksum error");
  } catch (const MigrationChecksumError& e) {
    CHECK(std::string(e.what()).find("0001_events.sql was changed after it was applied") != std::string::npos);
  }
}

TEST_CASE("a changed trigger file is re-applied without touching versioned migrations") {
  EmptyDb db;
  pqxx::connection c(db.url);
  migrate(c);
  std::vector<SqlFile> files = embedded_sql();
  const std::string extra = std::string(files.back().sql) + "\nCOMMENT ON FUNCTION pgrelay.untrack(regclass) IS 'v2';";
  files.back().sql = extra.c_str();
  MigrateReport r = migrate(c, files);
  REQUIRE(r.applied.size() == 1);
  CHECK(r.applied[0] == files.back().name);
}

TEST_CASE("replicas migrating at the same moment do not race") {
  EmptyDb db;
  constexpr int kReplicas = 4;
  std::vector<std::thread> threads;
  std::vector<MigrateReport> reports(kReplicas);
  std::atomic<int> failures{0};
  std::atomic<int> connected{0};
  std::atomic<bool> go{false};
  for (int i = 0; i < kReplicas; ++i) {
    threads.emplace_back([&, i] {
      try {
        pqxx::connection c(db.url);
        ++connected;
        while (!go.load()) std::this_thread::yield();  // all connected first: the migrations start together
        reports[i] = migrate(c);
      } catch (const std::exception& e) {
        MESSAGE(e.what());
        failures++;
      }
    });
  }
  while (connected.load() + failures.load() < kReplicas) std::this_thread::yield();
  go = true;
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  // One replica applied every file; the others, serialised behind it, found nothing to do.
  int appliers = 0;
  size_t applied_files = 0;
  for (const auto& r : reports) {
    appliers += !r.applied.empty();
    applied_files += r.applied.size();
  }
  CHECK(appliers == 1);
  CHECK(applied_files == embedded_sql().size());
  pqxx::connection c(db.url);
  pqxx::nontransaction tx(c);
  CHECK(tx.exec1("SELECT count(*) FROM pgrelay.schema_migrations")[0].as<size_t>() == embedded_sql().size());
  CHECK(tx.exec1("SELECT count(*) FROM pg_proc WHERE proname = 'emit' AND pronamespace = 'pgrelay'::regnamespace")[0]
            .as<int>() == 1);
  CHECK(run_pgrelay({"-d", db.url, "migrate"}).out == "migrate: up to date\n");
}

TEST_CASE("migrate --print writes a script that builds the schema on a fresh database") {
  EmptyDb db;
  auto printed = run_pgrelay({"migrate", "--print"});
  REQUIRE(printed.code == 0);
  {
    pqxx::connection c(db.url);
    pqxx::nontransaction tx(c);
    tx.exec(printed.out);
  }
  auto r = run_pgrelay({"-d", db.url, "migrate"});
  CHECK(r.code == 0);
  CHECK(r.out == "migrate: up to date\n");
}
