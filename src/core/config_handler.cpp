// handlers.<name>: the common keys, each type's own keys, and its secret.
#include "core/config_handler.hpp"

namespace pgrelay::config_json {
namespace {

RetryPolicy parse_retry(const Value& v, const std::string& path) {
  RetryPolicy p;
  need_object(v, path);
  check_keys(v, path, {"max_attempts", "base_ms", "cap_ms", "jitter"});
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    const std::string k = m->name.GetString();
    const std::string kp = path + "." + k;
    if (k == "max_attempts") p.max_attempts = static_cast<int>(need_int(m->value, kp, 1, 1000));
    else if (k == "base_ms") p.base_ms = need_int(m->value, kp, 0, 86400000);
    else if (k == "cap_ms") p.cap_ms = need_int(m->value, kp, 0, 7 * 86400000LL);
    else if (k == "jitter") p.jitter = need_fraction(m->value, kp);
  }
  if (p.cap_ms < p.base_ms) fail(path + ".cap_ms", "must not be below base_ms");
  return p;
}

CircuitBreakerOptions parse_breaker(const Value& v, const std::string& path) {
  CircuitBreakerOptions b;
  need_object(v, path);
  check_keys(v, path, {"failures", "cooldown_ms"});
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    const std::string k = m->name.GetString();
    if (k == "failures") b.failures = static_cast<int>(need_int(m->value, path + "." + k, 0, 1000000));
    else b.cooldown_ms = need_int(m->value, path + "." + k, 1, 86400000);
  }
  return b;
}

// "cloudevents": {"mode": "binary" | "structured", "source": URI-reference}.
void parse_cloudevents(const Value& v, const std::string& path, HandlerConfig* h) {
  need_object(v, path);
  check_keys(v, path, {"mode", "source"});
  auto mode = v.FindMember("mode");
  if (mode == v.MemberEnd()) fail(path + ".mode", "is missing (binary or structured)");
  h->cloudevents_mode = need_choice(mode->value, path + ".mode", {"binary", "structured"});
  auto source = v.FindMember("source");
  if (source != v.MemberEnd()) {
    h->cloudevents_source = need_string(source->value, path + ".source", 1000);
    bool printable = !h->cloudevents_source.empty();
    for (unsigned char c : h->cloudevents_source) printable = printable && c > 0x20 && c < 0x7f;
    if (!printable) {
      fail(path + ".source",
           "must be a non-empty URI reference of printable ASCII without spaces (e.g. "
           "\"https://shop.example.com/orders\" or \"/shop/orders\")");
    }
  }
}

bool base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

}  // namespace

std::string webhook_secret_problem(const std::string& secret) {
  if (secret.empty()) return "is empty";
  const std::string prefix = "whsec_";
  if (secret.compare(0, prefix.size(), prefix) != 0) return {};
  const std::string b64 = secret.substr(prefix.size());
  if (b64.empty()) return "is \"whsec_\" with no key after it (use the secret exactly as issued)";
  size_t data = b64.size();
  while (data > 0 && b64.size() - data < 2 && b64[data - 1] == '=') --data;
  const size_t padding = b64.size() - data;
  bool chars_ok = true;
  for (size_t i = 0; i < data; ++i) chars_ok = chars_ok && base64_char(b64[i]);
  // Unpadded: any length but 1 mod 4 (a lone 6-bit group is no byte); padded: a multiple of 4.
  const bool length_ok = padding == 0 ? data % 4 != 1 : b64.size() % 4 == 0 && data % 4 + padding == 4;
  if (!chars_ok || !length_ok || data == 0) {
    return "starts with \"whsec_\" but the rest is not base64 (A-Z a-z 0-9 + /, optionally padded with =); "
           "use the secret exactly as issued, or one without the whsec_ prefix, which is used as raw bytes";
  }
  return {};
}

std::string read_secret(const Value& obj, const std::string& path, const char* key, const EnvLookup& env,
                        Secrets secrets) {
  const std::string env_key = std::string(key) + "_env";
  auto lit = obj.FindMember(key);
  auto var = obj.FindMember(env_key.c_str());
  if (lit != obj.MemberEnd() && var != obj.MemberEnd()) fail(path, std::string("sets both ") + key + " and " + env_key);
  if (lit != obj.MemberEnd()) {
    std::string s = need_string(lit->value, path + "." + key, 4096);
    if (s.empty()) fail(path + "." + key, "must not be empty");
    return s;
  }
  if (var != obj.MemberEnd()) {
    const std::string name = need_string(var->value, path + "." + env_key, 200);
    auto v = env(name);
    if (v && !v->empty()) return *v;
    if (secrets == Secrets::optional) return {};
    fail(path + "." + env_key, "names " + name + ", which is not set in the environment");
  }
  return {};
}

HandlerConfig parse_handler(const std::string& name, const Value& v, const std::string& path, const EnvLookup& env,
                            Secrets secrets) {
  HandlerConfig h;
  h.name = name;
  if (!std::regex_match(name, name_pattern())) fail(path, "is not a valid handler name (letters, digits, _ . : -)");
  need_object(v, path);
  auto t = v.FindMember("type");
  if (t == v.MemberEnd()) fail(path + ".type", "is missing (one of stdout, command, webhook, sql, nats)");
  h.type = need_choice(t->value, path + ".type", {"stdout", "command", "webhook", "sql", "nats"});
  std::vector<std::string> known = {"type", "retry", "timeout_ms", "concurrency"};
  if (h.type == "command") known.push_back("command");
  if (h.type == "webhook") {
    for (const char* k : {"url", "headers", "secret", "secret_env", "connect_timeout_ms", "pool_size", "dead_statuses",
                          "circuit_breaker", "tls_verify", "ca_file", "cloudevents"}) {
      known.push_back(k);
    }
  }
  if (h.type == "sql") known.push_back("function");
  if (h.type == "nats") {
    known.push_back("url");
    known.push_back("subject");
    known.push_back("cloudevents");
  }
  check_keys(v, path, known);
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    const std::string k = m->name.GetString();
    const std::string kp = path + "." + k;
    if (k == "retry") h.retry = parse_retry(m->value, kp);
    else if (k == "timeout_ms") {
      h.timeout_ms = need_int(m->value, kp, 1, 86400000);
      h.timeout_given = true;
    } else if (k == "concurrency") h.concurrency = static_cast<int>(need_int(m->value, kp, 1, 4096));
    else if (k == "command") h.argv = need_string_array(m->value, kp, false);
    else if (k == "url" && h.type == "webhook") {
      h.url = need_string(m->value, kp);
      if (h.url.rfind("http://", 0) != 0 && h.url.rfind("https://", 0) != 0) {
        fail(kp, "must start with http:// or https:// (got \"" + h.url + "\")");
      }
    } else if (k == "url") {
      h.nats_url = need_string(m->value, kp);
      if (h.nats_url.rfind("nats://", 0) != 0) fail(kp, "must start with nats:// (got \"" + h.nats_url + "\")");
    } else if (k == "headers") {
      const Value& hs = need_object(m->value, kp);
      for (auto hm = hs.MemberBegin(); hm != hs.MemberEnd(); ++hm) {
        const std::string hk = hm->name.GetString();
        const std::string hv = need_string(hm->value, kp + "." + hk, 8192);
        const bool bad_name = hk.empty() || hk.find_first_of(" :\r\n\t") != std::string::npos;
        if (bad_name || hv.find_first_of("\r\n") != std::string::npos)
          fail(kp + "." + hk, "is not a valid HTTP header");
        h.headers.emplace_back(hk, hv);
      }
    } else if (k == "connect_timeout_ms") h.connect_timeout_ms = need_int(m->value, kp, 1, 600000);
    else if (k == "pool_size") h.pool_size = static_cast<int>(need_int(m->value, kp, 1, 4096));
    else if (k == "dead_statuses") {
      if (!m->value.IsArray()) fail(kp, std::string("must be an array of HTTP statuses, not ") + json_kind(m->value));
      h.dead_statuses.clear();
      for (rapidjson::SizeType i = 0; i < m->value.Size(); ++i) {
        h.dead_statuses.push_back(
            static_cast<int>(need_int(m->value[i], kp + "[" + std::to_string(i) + "]", 100, 599)));
      }
    } else if (k == "circuit_breaker") h.breaker = parse_breaker(m->value, kp);
    else if (k == "tls_verify") {
      if (!m->value.IsBool()) fail(kp, std::string("must be true or false, not ") + json_kind(m->value));
      h.tls_verify = m->value.GetBool();
    } else if (k == "ca_file") h.ca_file = need_string(m->value, kp);
    else if (k == "function") {
      h.function = need_string(m->value, kp, 200);
      static const std::regex fn("^[A-Za-z_][A-Za-z0-9_$]*(\\.[A-Za-z_][A-Za-z0-9_$]*)?$");
      if (!std::regex_match(h.function, fn))
        fail(kp, "must be a function name like schema.fn (got \"" + h.function + "\")");
    } else if (k == "cloudevents") {
      parse_cloudevents(m->value, kp, &h);
    } else if (k == "subject") {
      h.subject = need_string(m->value, kp, 200);
      if (h.subject.empty() || h.subject.find_first_of(" \t\r\n") != std::string::npos)
        fail(kp, "is not a valid NATS subject");
    }
  }
  if (h.type == "webhook") {
    h.secret = read_secret(v, path, "secret", env, secrets);
    if (!h.secret.empty()) {
      const std::string problem = webhook_secret_problem(h.secret);
      const bool from_env = v.HasMember("secret_env");
      // The secret itself is never quoted: it may be the real one with a typo.
      if (!problem.empty()) fail(path + (from_env ? ".secret_env (its value)" : ".secret"), problem);
    }
  }
  if (h.type == "command" && h.argv.empty()) fail(path + ".command", "is missing (the program and its arguments)");
  if (h.type == "webhook" && h.url.empty()) fail(path + ".url", "is missing (the endpoint, http:// or https://)");
  if (h.type == "sql" && h.function.empty()) fail(path + ".function", "is missing (a function f(event jsonb))");
  return h;
}

}  // namespace pgrelay::config_json
