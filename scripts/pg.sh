#!/usr/bin/env bash
# A throw-away PostgreSQL server for the tests and the audit benchmark.
#
#   scripts/pg.sh [start]   install PostgreSQL from Debian packages if missing, initdb a data
#                           dir under var/pg (gitignored), start it on 127.0.0.1:15432, create
#                           the database gateway_test, and print its DSN on stdout (only the DSN,
#                           progress goes to stderr). Idempotent: a second call only prints the DSN.
#   scripts/pg.sh stop      stop the server (no error when it is not running)
#   scripts/pg.sh status    exit 0 when the server answers, 3 when it does not
#   scripts/pg.sh dsn       print the DSN
#
# Runs as root (CI, containers): the server runs as the `postgres` user created by the
# package. Runs as a normal user: the server runs as that user.
# Environment: PG_PORT (15432: below the ephemeral port range, so no client socket can hold it), PG_DB (gateway_test), PG_ROOT (<repo>/var/pg).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PORT=${PG_PORT:-15432}
DB=${PG_DB:-gateway_test}
ROOT=${PG_ROOT:-$REPO/var/pg}
DATA=$ROOT/data
RUN=$ROOT/run
LOG=$RUN/server.log
DSN="postgresql://postgres@127.0.0.1:$PORT/$DB"

say() { echo "pg.sh: $*" >&2; }

find_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}

ensure_installed() {
  BIN=$(find_bindir)
  if [ -z "$BIN" ]; then
    if [ "$(id -u)" != 0 ]; then
      say "PostgreSQL is not installed and we are not root: install the 'postgresql' package"
      exit 1
    fi
    say "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN=$(find_bindir)
    if [ -z "$BIN" ]; then say "PostgreSQL install failed"; exit 1; fi
  fi
}

# run a command as the server's owner
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() {
  [ -n "${BIN:-}" ] || BIN=$(find_bindir)
  [ -n "$BIN" ] && [ -f "$DATA/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
  ensure_installed
  mkdir -p "$ROOT"
  exec 9>"$ROOT/.lock"
  flock 9   # two callers at once (./dev test and a test fixture) must not both initdb
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$DATA" "$RUN"
    chown postgres:postgres "$DATA" "$RUN"
    chmod 700 "$DATA"
  else
    mkdir -p "$DATA" "$RUN"
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    say "initdb $DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >&2 \
      || as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >&2
  fi
  if ! running; then
    # another server on the port (e.g. another checkout's test cluster) would make ours fail with
    # "could not create any TCP/IP sockets" deep in its log: say what is wrong and what to do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      say "port 127.0.0.1:$PORT is already in use by another process (another checkout's test PostgreSQL?);" \
          "stop it (its scripts/pg.sh stop) or choose another port: PG_PORT=15433 ./dev test" \
          "/ 端口 $PORT 已被占用：请停止另一个测试数据库，或设置 PG_PORT"
      exit 1
    fi
    say "starting on 127.0.0.1:$PORT"
    # 9>&- : the server must not inherit the lock file descriptor (it would hold the lock forever)
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $RUN -c max_connections=60 -c shared_buffers=32MB" \
      start >&2 9>&- || { say "server did not start; log:"; tail -n 30 "$LOG" >&2; exit 1; }
  fi
  if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    say "creating database $DB"
    "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qc "CREATE DATABASE $DB" >&2
  fi
  flock -u 9
  exec 9>&-
  echo "$DSN"
}

stop() {
  BIN=$(find_bindir)
  if [ -n "$BIN" ] && running; then
    as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
  else
    say "not running"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) if running; then say "running on 127.0.0.1:$PORT"; exit 0; else say "not running"; exit 3; fi ;;
  dsn) echo "$DSN" ;;
  *) echo "usage: scripts/pg.sh [start|stop|status|dsn]" >&2; exit 2 ;;
esac
