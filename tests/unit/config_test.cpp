// Config validation: every error names the key path and the problem.
#include <doctest/doctest.h>

#include <map>

#include "core/config.hpp"

using namespace pgrelay;

namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string error_of(const std::string& json, std::map<std::string, std::string> env = {}) {
  try {
    parse_config(json, env_of(env));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const char* kValid = R"({
  // comments are allowed
  "database": {"url": "postgresql:///app"},
  "relay": {"batch_size": 100, "lease_ms": 20000},
  "handlers": {
    "print": {"type": "stdout"},
    "mail": {"type": "command", "command": ["/bin/mail", "-s"], "retry": {"max_attempts": 3, "base_ms": 10, "cap_ms": 100}}
  },
  "routes": [{"match": "orders.*", "handlers": ["print", "mail"]}, {"match": "*", "handlers": ["print"]}]
})";

}  // namespace

TEST_CASE("a valid config parses into the model with defaults filled in") {
  Config c = parse_config(kValid, env_of({}));
  CHECK(c.database.url == "postgresql:///app");
  CHECK(c.relay.batch_size == 100);
  CHECK(c.relay.max_in_flight == 1024);
  REQUIRE(c.handlers.size() == 2);
  CHECK(c.handler("mail")->argv == std::vector<std::string>{"/bin/mail", "-s"});
  CHECK(c.handler("mail")->retry.max_attempts == 3);
  CHECK(c.handler("print")->retry.max_attempts == 10);
  REQUIRE(c.routes.size() == 2);
  CHECK(c.routes[0].handlers.size() == 2);
}

TEST_CASE("unknown keys are errors that name the key path and the known keys") {
  const std::string e = error_of(R"({"relay": {"batchsize": 10}})");
  CHECK(e.find("relay.batchsize") != std::string::npos);
  CHECK(e.find("batch_size") != std::string::npos);
  CHECK(error_of(R"({"handlers": {"p": {"type": "stdout", "url": "x"}}})").find("handlers.p.url") != std::string::npos);
  CHECK(error_of(R"({"bogus": 1})").find("config: bogus is not a known key") != std::string::npos);
}

TEST_CASE("wrong types and out-of-range values name the key and what was expected") {
  CHECK(error_of(R"({"relay": {"batch_size": "ten"}})") == "config: relay.batch_size must be an integer, not a string");
  CHECK(error_of(R"({"relay": {"batch_size": 0}})").find("must be between 1 and 10000 (got 0)") != std::string::npos);
  CHECK(error_of(R"({"relay": {"lease_ms": 1e300}})").find("relay.lease_ms must be an integer") != std::string::npos);
  CHECK(error_of(R"({"relay": {"wake": "smoke"}})").find("relay.wake must be one of notify, poll, wal") !=
        std::string::npos);
  CHECK(error_of(R"([1, 2])").find("must be an object") != std::string::npos);
}

TEST_CASE("a key given twice in one object is an error naming its path") {
  CHECK(error_of(R"({"relay": {"batch_size": 10, "batch_size": 20}})") ==
        "config: relay.batch_size appears twice in the same object");
  CHECK(error_of(R"({"handlers": {"out": {"type": "stdout"}, "out": {"type": "stdout"}}})") ==
        "config: handlers.out appears twice in the same object");
  CHECK(error_of(R"({"routes": [{"match": "a", "match": "b", "handlers": []}]})") ==
        "config: routes[0].match appears twice in the same object");
  // The same key in different objects is fine.
  CHECK(
      error_of(
          R"({"handlers": {"a": {"type": "stdout"}, "b": {"type": "stdout"}}, "routes": [{"match": "*", "handlers": ["a"]}]})")
          .empty());
}

TEST_CASE("a config that is not valid UTF-8 is refused with its line and column") {
  const std::string bad = std::string("{\"relay\": {\n  \"id\": \"r") + "\xC3\x28" + "\"}}";
  const std::string e = error_of(bad);
  CHECK(e.find("invalid JSON at line 2, column 11") != std::string::npos);
  CHECK(e.find("encoding") != std::string::npos);
}

TEST_CASE("malformed JSON reports the line and column of the mistake") {
  CHECK(error_of("{\n  \"relay\": {\"batch_size\": 10}\n  \"log\": {}\n}") ==
        "config: invalid JSON at line 3, column 3 (byte 34): Missing a comma or '}' after an object member.");
  // Columns count characters, not bytes.
  CHECK(error_of("{\"relay\": {\"id\": \"ünï\" x}}").find("line 1, column 24") != std::string::npos);
  CHECK(error_of(R"({"relay": )").find("invalid JSON at line 1, column 11") != std::string::npos);
  CHECK(error_of("").find("invalid JSON at line 1, column 1") != std::string::npos);
}

TEST_CASE("a route naming an undefined handler lists the known handlers") {
  const std::string e = error_of(R"({"handlers": {"print": {"type": "stdout"}},
                                     "routes": [{"match": "a", "handlers": ["hook"]}]})");
  CHECK(e == "config: routes[0].handlers[0] \"hook\" is not defined (known: print)");
}

TEST_CASE("handlers must carry what their type needs") {
  CHECK(error_of(R"({"handlers": {"x": {"type": "command"}}})").find("handlers.x.command is missing") !=
        std::string::npos);
  CHECK(error_of(R"({"handlers": {"x": {}}})").find("handlers.x.type is missing") != std::string::npos);
  CHECK(error_of(R"({"handlers": {"x": {"type": "webhook", "url": "ftp://a"}}})").find("http://") != std::string::npos);
  CHECK(error_of(R"({"handlers": {"x": {"type": "webhook", "url": "http://a", "secret_env": "NOPE"}}})")
            .find("NOPE, which is not set") != std::string::npos);
  CHECK(error_of(R"({"handlers": {"x": {"type": "sql", "function": "f(); drop table t"}}})")
            .find("handlers.x.function must be a function name") != std::string::npos);
}

TEST_CASE("a retry cap below its base is rejected") {
  CHECK(error_of(R"({"handlers": {"x": {"type": "stdout", "retry": {"base_ms": 100, "cap_ms": 10}}}})")
            .find("handlers.x.retry.cap_ms must not be below base_ms") != std::string::npos);
}

TEST_CASE("environment variables override the file and are validated like it") {
  Config c = parse_config(kValid, env_of({{"DATABASE_URL", "host=/tmp"}, {"PGRELAY_BATCH_SIZE", "7"}}));
  CHECK(c.database.url == "host=/tmp");
  CHECK(c.relay.batch_size == 7);
  CHECK(parse_config(kValid, env_of({{"DATABASE_URL", "a"}, {"PGRELAY_DATABASE_URL", "b"}})).database.url == "b");
  CHECK(error_of(kValid, {{"PGRELAY_BATCH_SIZE", "x7"}}) ==
        "config: PGRELAY_BATCH_SIZE must be an integer (got \"x7\")");
  CHECK(error_of(kValid, {{"PGRELAY_BATCH_SIZE", "0"}}).find("(set by PGRELAY_BATCH_SIZE)") != std::string::npos);
  CHECK(error_of("{}", {{"PGRELAY_WAKE", "loud"}}).find("relay.wake") != std::string::npos);
}

TEST_CASE("secrets can come from the environment by name") {
  Config c =
      parse_config(R"({"handlers": {"h": {"type": "webhook", "url": "http://x/", "secret_env": "HOOK_SECRET"}}})",
                   env_of({{"HOOK_SECRET", "whsec_abc"}}));
  CHECK(c.handler("h")->secret == "whsec_abc");
}

TEST_CASE("webhook secrets are checked when the config is read: whsec_ with padded or unpadded base64, never empty") {
  auto hook = [](const std::string& secret) {
    return R"({"handlers": {"h": {"type": "webhook", "url": "http://x/", "secret": ")" + secret + R"("}}})";
  };
  CHECK(error_of(hook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).empty());
  CHECK(error_of(hook("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD+r6DNVIHYb4=")).empty());
  CHECK(error_of(hook("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD+r6DNVIHYb4")).empty());  // unpadded, 43 characters
  CHECK(error_of(hook("plain raw bytes")).empty());
  const std::string not_b64 = error_of(hook("whsec_not base64!"));
  CHECK(not_b64.find("config: handlers.h.secret starts with \"whsec_\" but the rest is not base64") !=
        std::string::npos);
  CHECK(not_b64.find("not base64!") == std::string::npos);  // the secret itself is never quoted
  CHECK(error_of(hook("whsec_")).find("handlers.h.secret is \"whsec_\" with no key after it") != std::string::npos);
  CHECK(
      error_of(R"({"handlers": {"h": {"type": "webhook", "url": "http://x/", "secret_env": "S"}}})", {{"S", "whsec_a"}})
          .find("handlers.h.secret_env (its value) starts with \"whsec_\" but the rest is not base64") !=
      std::string::npos);
}

TEST_CASE("commands that do not deliver read a config whose secret variables are unset") {
  const char* cfg = R"({"admin": {"listen": "127.0.0.1:0", "token_env": "UNSET_TOKEN"},
    "handlers": {"h": {"type": "webhook", "url": "http://x/", "secret_env": "UNSET_SECRET"}},
    "routes": [{"match": "*", "handlers": ["h"]}]})";
  CHECK(error_of(cfg).find("admin.token_env names UNSET_TOKEN, which is not set") != std::string::npos);
  const Config c = parse_config(cfg, env_of({}), Secrets::optional);
  CHECK(c.admin.token.empty());
  CHECK(c.handler("h")->secret.empty());
  // A secret that is set is still read, and checked.
  CHECK(parse_config(cfg, env_of({{"UNSET_SECRET", "s3"}}), Secrets::optional).handler("h")->secret == "s3");
}

TEST_CASE("a config without routes is refused for delivery, by run and check-config alike") {
  const Config c = parse_config(R"({"handlers": {"p": {"type": "stdout"}}})", env_of({}));
  CHECK_THROWS_WITH_AS(require_deliverable(c),
                       doctest::Contains("config: routes is empty: no event would be delivered"), ConfigError);
  CHECK_NOTHROW(require_deliverable(parse_config(kValid, env_of({}))));
}

TEST_CASE("a webhook's pool follows its concurrency unless pool_size is set, and a smaller pool is warned about") {
  const Config c = parse_config(R"({"handlers": {
      "follows": {"type": "webhook", "url": "http://x/", "concurrency": 64},
      "capped": {"type": "webhook", "url": "http://x/", "concurrency": 64, "pool_size": 8},
      "wider": {"type": "webhook", "url": "http://x/", "concurrency": 4, "pool_size": 16}}})",
                                env_of({}));
  CHECK(c.handler("follows")->pool_size == 0);
  CHECK(webhook_pool_size(*c.handler("follows")) == 64);
  CHECK(webhook_pool_size(*c.handler("capped")) == 8);
  CHECK(webhook_pool_size(*c.handler("wider")) == 4);  // more connections than requests would never be used
  const auto warnings = config_warnings(c);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("handlers.capped.pool_size 8 is below its concurrency 64: at most 8 requests are in flight") ==
        0);
}

TEST_CASE("admin.allowed_hosts takes host names, lower-cased, and refuses URLs and ports") {
  const Config c = parse_config(R"({"admin": {"allowed_hosts": ["PgRelay.Internal", "[::1]"]}})", env_of({}));
  CHECK(c.admin.allowed_hosts == std::vector<std::string>{"pgrelay.internal", "[::1]"});
  CHECK(error_of(R"({"admin": {"allowed_hosts": ["http://a.b"]}})")
            .find("admin.allowed_hosts[0] must be a host name or address without port or scheme") != std::string::npos);
  CHECK(error_of(R"({"admin": {"allowed_hosts": ["a.b:9187"]}})").find("admin.allowed_hosts[0]") != std::string::npos);
}

TEST_CASE("transactional claims refuse long handler timeouts and sql handlers") {
  CHECK(error_of(R"({"relay": {"claim": "transaction"}, "handlers": {"h": {"type": "stdout", "timeout_ms": 20000}}})")
            .find("handlers.h.timeout_ms must be at most 10000 with relay.claim \"transaction\"") != std::string::npos);
  CHECK(
      error_of(
          R"({"relay": {"claim": "transaction"}, "handlers": {"s": {"type": "sql", "function": "f", "timeout_ms": 100}}})")
          .find("handlers.s.type \"sql\" needs relay.claim \"lease\"") != std::string::npos);
  CHECK(error_of(R"({"relay": {"claim": "optimistic"}})").find("relay.claim must be one of lease, transaction") !=
        std::string::npos);
}

TEST_CASE("an unset handler timeout is cut to what a short lease or a transactional claim allows") {
  const char* handler = R"("handlers": {"h": {"type": "stdout"}}, "routes": [{"match": "*", "handlers": ["h"]}])";
  const Config plain = parse_config(std::string("{") + handler + "}", env_of({}));
  CHECK(plain.handler("h")->timeout_ms == 30000);
  const Config tx = parse_config(std::string(R"({"relay": {"claim": "transaction"}, )") + handler + "}", env_of({}));
  CHECK(tx.handler("h")->timeout_ms == 10000);
  const Config short_lease = parse_config(std::string(R"({"relay": {"lease_ms": 2000}, )") + handler + "}", env_of({}));
  CHECK(short_lease.handler("h")->timeout_ms == 7999);
  // A timeout given is the user's word: still refused where it cannot hold.
  CHECK(error_of(R"({"relay": {"lease_ms": 2000}, "handlers": {"h": {"type": "stdout", "timeout_ms": 30000}}})")
            .find("handlers.h.timeout_ms must be below 4 x relay.lease_ms (8000)") != std::string::npos);
}

TEST_CASE("webhook and nats handlers take cloudevents with a mode and an optional source, and $schema is ignored") {
  const Config c = parse_config(R"({"$schema": "./pgrelay.schema.json", "handlers": {
      "h": {"type": "webhook", "url": "http://x/", "cloudevents": {"mode": "binary"}},
      "n": {"type": "nats", "cloudevents": {"mode": "structured", "source": "https://shop.example.com/o"}}}})",
                                env_of({}));
  CHECK(c.handler("h")->cloudevents_mode == "binary");
  CHECK(c.handler("h")->cloudevents_source.empty());
  CHECK(c.handler("n")->cloudevents_mode == "structured");
  CHECK(c.handler("n")->cloudevents_source == "https://shop.example.com/o");
  CHECK(error_of(R"({"handlers": {"h": {"type": "webhook", "url": "http://x/", "cloudevents": {"mode": "batch"}}}})")
            .find("handlers.h.cloudevents.mode must be one of binary, structured") != std::string::npos);
  CHECK(error_of(R"({"handlers": {"h": {"type": "nats", "cloudevents": {}}}})")
            .find("handlers.h.cloudevents.mode is missing") != std::string::npos);
  CHECK(error_of(R"({"handlers": {"h": {"type": "nats", "cloudevents": {"mode": "binary", "source": "a b"}}}})")
            .find("handlers.h.cloudevents.source must be a non-empty URI reference") != std::string::npos);
  CHECK(error_of(R"({"handlers": {"h": {"type": "stdout", "cloudevents": {"mode": "binary"}}}})")
            .find("handlers.h.cloudevents is not a known key") != std::string::npos);
}
