#!/usr/bin/env bash
# A real PostgreSQL server for the database disaster-recovery tests: the
# Debian server binaries (/usr/lib/postgresql/<major>/bin), a cluster of its
# own made by initdb under target/servers/postgres/, run by pg_ctl as the
# unprivileged `postgres` system user (PostgreSQL refuses to run as root;
# `nobody` when that user is missing), listening on 127.0.0.1 at a free port
# and on a private unix socket directory. Nothing of the packaged cluster
# (/etc/postgresql, /var/lib/postgresql, port 5432) is used or touched.
#
#   scripts/servers/postgres.sh start   install postgresql if missing, start, write the env file
#   scripts/servers/postgres.sh env     print the env file's path (sourceable: set -a; . FILE)
#   scripts/servers/postgres.sh stop    stop the server started by `start` (fast shutdown), remove its state
#
# Password (scram-sha-256) authentication on TCP and on the socket. The env
# file (target/servers/postgres.env) sets MAILVAULT_TEST_PG_HOST,
# MAILVAULT_TEST_PG_PORT, MAILVAULT_TEST_PG_USER and
# MAILVAULT_TEST_PG_PASSWORD (a superuser for the tests),
# MAILVAULT_TEST_PG_SOCKET_DIR, MAILVAULT_TEST_PG_VERSION (the server's major
# version), MAILVAULT_TEST_PG_BIN (the server's bin dir: pg_dump, pg_restore,
# psql of the same version), and PGHOST/PGPORT/PGUSER/PGPASSWORD with the
# same values for the command-line tools, with PGDATABASE=postgres.
set -euo pipefail
cd "$(dirname "$0")/../.."

state="$PWD/target/servers/postgres"
envfile="$PWD/target/servers/postgres.env"
data="$state/data"
sockdir="$state/run"
logfile="$state/postgres.log"
test_user=mvtest

# The newest installed server's bin dir, or nothing.
server_bin() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] || continue
    if [ -z "$best" ] || [ "$(basename "$(dirname "$d")")" -gt "$(basename "$(dirname "$best")")" ]; then
      best=$d
    fi
  done
  echo "$best"
}

. scripts/servers/lib.sh

# The postmaster pid if it is our own server (the pid file may be stale after
# a reboot or a crash), else nothing.
our_pid() {
  local f="$data/postmaster.pid" pid
  [ -f "$f" ] || return 0
  pid=$(head -n1 "$f")
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-D $data "; then
    echo "$pid"
  fi
}

stop() {
  local pid
  pid=$(our_pid)
  if [ -n "$pid" ]; then
    # Fast shutdown: SIGINT to the postmaster (what `pg_ctl stop -m fast` sends).
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      # Immediate shutdown, then the postmaster alone (its children follow it).
      kill -QUIT "$pid" 2>/dev/null || true
      sleep 1
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$state"
  rm -f "$envfile"
}

start() {
  local bin
  bin=$(server_bin)
  if [ -z "$bin" ]; then
    echo "==> installing postgresql"
    apt_install postgresql
    bin=$(server_bin)
    [ -n "$bin" ] || { echo "postgres.sh: no server under /usr/lib/postgresql/*/bin after installing postgresql" >&2; exit 1; }
  fi
  command -v setpriv >/dev/null || apt_install util-linux
  if id postgres >/dev/null 2>&1; then owner=postgres; else owner=nobody; fi
  stop

  mkdir -p "$state" "$sockdir"
  chmod 755 "$PWD/target/servers" "$state" "$sockdir"
  chown "$owner:" "$state" "$sockdir"
  if ! run_as_owner test -w "$state"; then
    echo "postgres.sh: user $owner cannot write $state (a parent directory not searchable by others?)" >&2
    exit 1
  fi

  local port password pwfile
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  # The bootstrap superuser `postgres` gets a password of its own that only
  # this script knows; the tests use $test_user.
  pwfile="$state/bootstrap.pw"
  python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$pwfile"
  chown "$owner:" "$pwfile"
  chmod 600 "$pwfile"

  run_as_owner "$bin/initdb" -D "$data" -U postgres --pwfile="$pwfile" \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$state/initdb.log" 2>&1 ||
    { cat "$state/initdb.log" >&2; echo "postgres.sh: initdb failed" >&2; exit 1; }

  cat >>"$data/postgresql.conf" <<EOF

# mailvault's test server: loopback and a private socket only, no fsync.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sockdir'
unix_socket_permissions = 0777
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
logging_collector = off
EOF

  # setsid: the server outlives the shell that started it, in a session of its own.
  # -w: pg_ctl returns once the server accepts connections.
  if ! setsid -w setpriv --reuid="$owner" --regid="$(id -g "$owner")" --init-groups -- \
    "$bin/pg_ctl" -D "$data" -l "$logfile" -w -t 60 start >"$state/pg_ctl.log" 2>&1 </dev/null; then
    cat "$state/pg_ctl.log" "$logfile" >&2 2>/dev/null || true
    echo "postgres.sh: the server did not start" >&2
    exit 1
  fi

  # The tests' superuser, made over the socket as the bootstrap superuser.
  PGPASSWORD=$(cat "$pwfile") "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -U postgres -d postgres \
    -c "CREATE ROLE $test_user WITH LOGIN SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS PASSWORD '$password'"

  local version
  version=$(cat "$data/PG_VERSION")
  umask 077
  cat >"$envfile" <<EOF
MAILVAULT_TEST_PG_HOST=127.0.0.1
MAILVAULT_TEST_PG_PORT=$port
MAILVAULT_TEST_PG_USER=$test_user
MAILVAULT_TEST_PG_PASSWORD=$password
MAILVAULT_TEST_PG_SOCKET_DIR=$sockdir
MAILVAULT_TEST_PG_VERSION=$version
MAILVAULT_TEST_PG_BIN=$bin
PGHOST=127.0.0.1
PGPORT=$port
PGUSER=$test_user
PGPASSWORD=$password
PGDATABASE=postgres
EOF
  echo "postgres.sh: PostgreSQL $version pid $(our_pid) on 127.0.0.1:$port and $sockdir, user $test_user; env in $envfile" >&2
  echo "$envfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "$envfile" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
