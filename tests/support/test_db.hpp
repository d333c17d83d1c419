// A fresh, migrated database per test case, cloned from a template and dropped
// afterwards, on the server named by PGRELAY_TEST_DATABASE_URL.
#pragma once
#include <memory>
#include <string>

#include <pqxx/pqxx>

namespace pgrelay::test {

class TestDb {
 public:
  TestDb();
  ~TestDb();
  TestDb(const TestDb&) = delete;

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  // A new connection to this database.
  std::unique_ptr<pqxx::connection> connect() const;
  // Runs SQL in its own transaction and returns the result.
  pqxx::result exec(const std::string& sql) const;
  // The first column of the first row, as a number.
  int64_t scalar(const std::string& sql) const;
  // What deliveries carry as the id of event `id`: "<event_id_prefix>-<id>".
  std::string delivery_id(int64_t id) const;

 private:
  std::string name_;
  std::string url_;
  mutable std::string id_prefix_;  // read on the first delivery_id()
};

// The admin connection string (PGRELAY_TEST_DATABASE_URL); fails the test if unset.
std::string server_url();
// `base` with its dbname replaced.
std::string with_dbname(const std::string& base, const std::string& dbname);

// Runs SQL at any database URL (an own cluster's too) in its own committed transaction;
// the first column of the first row, as a number.
int64_t scalar_at(const std::string& url, const std::string& sql);

}  // namespace pgrelay::test
