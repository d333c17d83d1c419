# Shared shell helpers for scripts/*: paths, package install, build. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${PGRELAY_BUILD_DIR:-$ROOT/build}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages the build, the tests and the demo need.
PACKAGES=(build-essential cmake ninja-build pkg-config libpqxx-dev libpq-dev libboost-dev
          rapidjson-dev libcli11-dev doctest-dev libssl-dev postgresql-15
          python3 curl chromium libnats-dev nats-server pgbouncer
          help2man file lintian   # man page from --help; cpack's dpkg-shlibdeps needs file; the .deb check
          clang-format clang-tidy)  # scripts/check-style

# install_packages [extra...]: apt-get installs whatever of PACKAGES (+extras) is missing.
install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# install_test_node_modules: the npm packages the tests check pgrelay against
# (tests/node: the CloudEvents SDK, Ajv, puppeteer-core for the console's browser test), installed with npm ci from the lock file
# when it changed. Without node or npm (nor a way to install them), the tests that
# need them say so and skip; a failing npm ci is an error.
install_test_node_modules() {
  local dir="$ROOT/tests/node"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    install_packages nodejs npm || true
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node/npm not available: the CloudEvents, config schema and console browser checks will skip"; return 0
  fi
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "npm ci in tests/node"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci in tests/node failed"
  fi
}

# build [cmake args...]: configures once, then builds incrementally.
build() {
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
  fi
  cmake --build "$BUILD_DIR" -- -j"$(nproc)"
}
