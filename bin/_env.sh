# shellcheck shell=bash
# Shared by bin/dev, bin/test and .ci/run (sourced, not executed): the venv and the test Redis.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TEST_REDIS_URL="${OCR_RELAY_TEST_REDIS_URL:-redis://127.0.0.1:6379/9}"

die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

find_python() {
  local candidate
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  die "Python >= 3.11 is required (none of python3.11, python3.12, python3.13, python3 is)"
}

# Create .venv when missing and (re)install '.[dev]' whenever pyproject.toml changed since last time.
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    local python
    python="$(find_python)"
    "$python" -m venv "$VENV"
  fi
  local stamp="$VENV/.ocr-relay-installed" wanted
  wanted="$("$VENV/bin/python" -c 'import hashlib, sys
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$ROOT/pyproject.toml")"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "Installing ocr-relay and its dev dependencies into .venv ..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev]"
    echo "$wanted" >"$stamp"
  fi
}

redis_answers() {
  "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  echo "Installing $* with apt-get ..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

install_redis() {
  command -v apt-get >/dev/null 2>&1 || die "redis-server is missing; install Redis (e.g. 'brew install redis')"
  apt_install redis-server
}

# The console's browser tests drive Debian's chromium (Playwright's own download cannot work
# here). Without apt-get they are skipped, except under CI, where they fail.
ensure_chromium() {
  [ -x "${OCR_RELAY_CHROMIUM:-/usr/bin/chromium}" ] && return 0
  command -v chromium >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1; then
    apt_install chromium || echo "could not install chromium: the browser tests will not run" >&2
  else
    echo "chromium is missing (and no apt-get): the console's browser tests are skipped" >&2
  fi
}

# Make sure the tests' Redis answers; when nothing listens there, start a throwaway redis-server on
# that port (no persistence, data in a temp dir) that stop_test_redis removes again.
STARTED_REDIS_DIR=""
ensure_test_redis() {
  redis_answers "$TEST_REDIS_URL" && return 0
  command -v redis-server >/dev/null 2>&1 || install_redis
  local port
  port="$("$VENV/bin/python" -c 'import sys, urllib.parse as u
print(u.urlsplit(sys.argv[1]).port or 6379)' "$TEST_REDIS_URL")"
  STARTED_REDIS_DIR="$(mktemp -d)"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$STARTED_REDIS_DIR" --save "" \
    --appendonly no --daemonize yes --pidfile "$STARTED_REDIS_DIR/redis.pid" \
    --logfile "$STARTED_REDIS_DIR/redis.log"
  local _
  for _ in $(seq 50); do
    redis_answers "$TEST_REDIS_URL" && return 0
    sleep 0.1
  done
  cat "$STARTED_REDIS_DIR/redis.log" >&2
  die "redis-server did not start on port $port"
}

stop_test_redis() {
  if [ -n "$STARTED_REDIS_DIR" ]; then
    if [ -f "$STARTED_REDIS_DIR/redis.pid" ]; then
      local pid _
      pid="$(cat "$STARTED_REDIS_DIR/redis.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    fi
    rm -rf "$STARTED_REDIS_DIR"
  fi
}
