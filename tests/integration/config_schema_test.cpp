// config/pgrelay.schema.json agrees with `pgrelay check-config`: on the shipped
// configs both accept, and on every hostile config of tests/bad_input/config both
// refuse, the schema naming the key check-config names. An independent validator
// (Ajv, JSON Schema draft 2020-12, pinned in tests/node) judges the schema's side.
#include <doctest/doctest.h>

#include <rapidjson/document.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "support/child_process.hpp"

using namespace pgrelay::test;

namespace {

const std::string kRoot = PGRELAY_SOURCE_DIR;

// Rules check-config applies that JSON Schema cannot state; for these files the
// schema is expected not to name check-config's reason. A file leaves this list
// when the schema learns to refuse it.
const std::map<std::string, std::string> kBeyondSchema = {
    {"cap_below_base.json", "one value compared with another (cap_ms >= base_ms)"},
    {"duplicate_handler.json", "a key given twice (JSON parsers keep the last)"},
    {"missing_secret_env.json", "the environment (secret_env names an unset variable)"},
    {"undefined_handler.json", "a reference between keys (routes name defined handlers)"},
};

// "handlers.h.retry.cap_ms", "/handlers/h/retry/cap_ms" and "routes[0]" alike as
// ".handlers.h.retry.cap_ms" / ".routes.0", so check-config's and Ajv's paths compare.
std::string normalized(const std::string& path) {
  std::string out = path.empty() || path[0] == '/' || path[0] == '.' ? "" : ".";
  for (char c : path) {
    if (c == '/' || c == '[') out += '.';
    else if (c != ']') out += c;
  }
  return out;
}

// The key path check-config's error names: "config: relay.wake must be ..." -> "relay.wake";
// "" for errors about the whole file (invalid JSON, not an object).
std::string named_path(const std::string& error) {
  const auto at = error.find(" config: ");  // after "pgrelay check-config:"
  if (at == std::string::npos) return "";
  const std::string rest = error.substr(at + 9);
  if (rest.rfind("invalid JSON", 0) == 0 || rest.rfind("the document", 0) == 0) return "";
  return rest.substr(0, rest.find(' '));
}

struct SchemaVerdict {
  bool valid = false;
  std::string errors;
  std::set<std::string> paths;  // normalized
};

std::map<std::string, SchemaVerdict> validate_with_ajv(const std::vector<std::string>& files) {
  std::vector<std::string> argv = {"node", kRoot + "/tests/node/config_schema_check.js",
                                   kRoot + "/config/pgrelay.schema.json"};
  argv.insert(argv.end(), files.begin(), files.end());
  ChildProcess p(argv);
  const auto code = p.wait(std::chrono::seconds(60));
  INFO("Ajv said: " << p.out() << p.err());
  REQUIRE(code.has_value());
  REQUIRE(*code == 0);
  std::map<std::string, SchemaVerdict> out;
  std::istringstream lines(p.out());
  for (std::string line; std::getline(lines, line);) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    REQUIRE(d.IsObject());
    SchemaVerdict v;
    v.valid = d["valid"].GetBool();
    v.errors = d["errors"].GetString();
    for (const auto& path : d["paths"].GetArray()) v.paths.insert(normalized(path.GetString()));
    out[std::filesystem::path(d["file"].GetString()).filename().string()] = v;
  }
  REQUIRE(out.size() == files.size());
  return out;
}

// Skips with a message on a machine without node; fails if node is there but the
// validator is not installed.
bool validator_ready() {
  ChildProcess p({"node", "--version"});
  const auto code = p.wait(std::chrono::seconds(20));
  if (!code || *code != 0) {
    std::cerr << "SKIPPED (config schema check): node is not installed\n";
    MESSAGE("skipped: node is not installed");
    return false;
  }
  INFO("tests/node/node_modules is missing: run scripts/test, or npm ci in tests/node");
  REQUIRE(!read_file(kRoot + "/tests/node/node_modules/ajv/package.json").empty());
  return true;
}

}  // namespace

TEST_CASE("the config schema accepts the shipped configs, which check-config accepts") {
  if (!validator_ready()) return;
  const std::vector<std::string> files = {kRoot + "/config/pgrelay.example.json", kRoot + "/config/demo.json"};
  const auto schema = validate_with_ajv(files);
  for (const auto& f : files) {
    const std::string name = std::filesystem::path(f).filename().string();
    CAPTURE(name);
    const RunResult r = run_pgrelay({"-c", f, "check-config"},
                                    {{"PGRELAY_ADMIN_TOKEN", "t0ken"}, {"BILLING_WEBHOOK_SECRET", "s3cret"}});
    CHECK_MESSAGE(r.code == 0, r.out << r.err);
    CHECK_MESSAGE(schema.at(name).valid, schema.at(name).errors);
  }
  // The example names the schema, so editors validate and complete it.
  CHECK(read_file(kRoot + "/config/pgrelay.example.json").find("\"$schema\": \"./pgrelay.schema.json\"") !=
        std::string::npos);
}

TEST_CASE("the config schema refuses every hostile config check-config refuses, naming the same key") {
  if (!validator_ready()) return;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(kRoot + "/tests/bad_input/config")) {
    if (e.path().extension() == ".json") files.push_back(e.path().string());
  }
  REQUIRE(files.size() >= 20);
  const auto schema = validate_with_ajv(files);
  for (const auto& f : files) {
    const std::string name = std::filesystem::path(f).filename().string();
    const RunResult r = run_pgrelay({"-c", f, "check-config"});
    const std::string path = named_path(r.err + r.out);
    const SchemaVerdict& v = schema.at(name);
    CAPTURE(name);
    CAPTURE(r.err);
    CAPTURE(v.errors);
    CHECK(r.code == 2);
    const bool names_it = path.empty() ? !v.valid : v.paths.count(normalized(path)) > 0;
    if (kBeyondSchema.count(name)) {
      CHECK_MESSAGE(!names_it, "the schema now catches " << name << ": take it off kBeyondSchema");
    } else {
      CHECK(!v.valid);
      CHECK_MESSAGE(names_it, "check-config names " << (path.empty() ? "the whole file" : path));
    }
  }
}
