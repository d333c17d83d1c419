// Config loading, database opening and error-to-exit-code mapping for the CLI.
#include "cli/common.hpp"

#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>

#include <pqxx/except>

#include "core/log.hpp"
#include "store/admin_queries.hpp"
#include "store/connection.hpp"
#include "store/migrate.hpp"

namespace pgrelay::cli {

void add_global_options(CLI::App& app, Globals& g) {
  app.add_option("-c,--config", g.config_path, "Config file (JSON); default $PGRELAY_CONFIG, else built-in defaults");
  app.add_option("-d,--database", g.database,
                 "Connection string or URL; wins over the config and DATABASE_URL (PG* variables also work)");
  for (CLI::App* sub : app.get_subcommands({})) add_global_options(*sub, g);
}

std::string mask_passwords(const std::string& text) {
  // URL user info: scheme://user:PASSWORD@host
  static const std::regex url_password("([A-Za-z][A-Za-z0-9+.-]*://[^:/@\\s]*):[^@\\s]*@");
  // key=value connection strings and URL query parameters: password=PASSWORD, password='PASS WORD'
  static const std::regex kv_password("(password\\s*=\\s*)('([^'\\\\]|\\\\.)*'|[^\\s&]*)", std::regex::icase);
  std::string out = std::regex_replace(text, url_password, "$1:***@");
  return std::regex_replace(out, kv_password, "$1***");
}

void require_text(const std::string& value, const std::string& option) {
  const std::string problem = text_problem(value);
  if (!problem.empty()) throw UsageError(option + " " + problem);
}

Config load_config(const Globals& g, Secrets secrets) {
  std::string path = g.config_path;
  if (path.empty()) {
    if (const char* p = std::getenv("PGRELAY_CONFIG")) path = p;
  }
  Config c;
  if (path.empty()) {
    c = parse_config("{}", process_env(), secrets);
  } else {
    std::ifstream in(path);
    if (!in) throw ConfigError("config: cannot read " + path + ": " + std::strerror(errno));
    std::stringstream buf;
    buf << in.rdbuf();
    const std::string text = buf.str();
    if (text.size() > 4 * 1024 * 1024) throw ConfigError("config: " + path + " is larger than 4 MiB");
    try {
      c = parse_config(text, process_env(), secrets);
    } catch (const ConfigError& e) {
      throw ConfigError(std::string(e.what()) + " (in " + path + ")");
    }
  }
  if (!g.database.empty()) c.database.url = g.database;
  log::Level level = log::Level::info;
  log::Format format = log::Format::automatic;
  log::parse_level(c.log.level, &level);
  log::parse_format(c.log.format, &format);
  log::configure(level, format);
  return c;
}

std::unique_ptr<pqxx::connection> open_db_unchecked(const Config& c, const std::string& role) {
  return connect(c.database.url, role);
}

std::unique_ptr<pqxx::connection> open_db(const Config& c, const std::string& role) {
  auto conn = open_db_unchecked(c, role);
  if (!is_migrated(*conn)) {
    throw NotMigrated("database \"" + std::string(conn->dbname()) +
                      "\" is not migrated (it has no pgrelay.db_events): run `pgrelay migrate` with the same "
                      "--database/--config first");
  }
  return conn;
}

namespace {

// A server error for a person at a terminal: the message with its DETAIL and HINT,
// without the CONTEXT trace of PL/pgSQL frames, and no line longer than 300
// characters (a DETAIL can quote a whole failing row).
std::string server_message(const std::string& what) {
  std::string out;
  size_t at = 0;
  while (at < what.size()) {
    size_t end = what.find('\n', at);
    if (end == std::string::npos) end = what.size();
    std::string line = what.substr(at, end - at);
    at = end + 1;
    if (line.rfind("CONTEXT:", 0) == 0) break;
    if (line.size() > 300) {
      size_t cut = 300;
      while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
      line = line.substr(0, cut) + "...";
    }
    if (!line.empty()) out += (out.empty() ? "" : "\n") + line;
  }
  return out;
}

}  // namespace

int guarded(const char* command, const Action& action) {
  auto say = [command](const std::string& message) {
    std::cerr << mask_passwords("pgrelay " + std::string(command) + ": " + message) << "\n";
  };
  try {
    return action();
  } catch (const UsageError& e) {
    say(e.what());
    return kUsage;
  } catch (const ConfigError& e) {
    say(e.what());
    return kUsage;
  } catch (const NotMigrated& e) {
    say(e.what());
    return kUsage;
  } catch (const InvalidText& e) {
    say(e.what());
    return kUsage;
  } catch (const MigrationChecksumError& e) {
    say(e.what());
    return kFailure;
  } catch (const pqxx::broken_connection& e) {
    std::string msg = e.what();
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    say("cannot reach the database: " + msg + "\n  (set --database, DATABASE_URL or database.url in the config)");
    return kFailure;
  } catch (const pqxx::sql_error& e) {
    std::string msg = server_message(e.what());
    const std::string& state = e.sqlstate();
    // Class 22 (data exception) and 42 (syntax or access rule) are the caller's input.
    const bool users_fault = state.rfind("22", 0) == 0 || state.rfind("42", 0) == 0 || state.rfind("23", 0) == 0;
    say(msg);
    return users_fault ? kUsage : kFailure;
  } catch (const std::exception& e) {
    say(e.what());
    return kFailure;
  }
}

std::vector<std::string> split_csv(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, ',')) {
    if (!cur.empty()) out.push_back(cur);
  }
  return out;
}

}  // namespace pgrelay::cli
