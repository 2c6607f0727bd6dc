#!/usr/bin/env bash
# A real MariaDB server for the database disaster-recovery tests: the Debian
# mariadb-server binaries, a data directory of its own made by
# mariadb-install-db under target/servers/mariadb/, and mariadbd run as a
# plain background process as the unprivileged `mysql` system user (`nobody`
# when that user is missing), with its own config file (nothing under
# /etc/mysql is read), TCP on 127.0.0.1 at a free port only, a private unix
# socket and pid file, and the event scheduler on. Nothing of the packaged
# server (/var/lib/mysql, /run/mysqld, port 3306) is used or touched.
#
#   scripts/servers/mariadb.sh start   install mariadb-server if missing, start, write the env file
#   scripts/servers/mariadb.sh env     print the env file's path (sourceable: set -a; . FILE)
#   scripts/servers/mariadb.sh stop    stop the server started by `start` (clean shutdown), remove its state
#
# Grants are enforced (no --skip-grant-tables). The env file
# (target/servers/mariadb.env) sets MAILVAULT_TEST_MARIADB_HOST,
# MAILVAULT_TEST_MARIADB_PORT, MAILVAULT_TEST_MARIADB_USER and
# MAILVAULT_TEST_MARIADB_PASSWORD (an account with every privilege, GRANT
# OPTION included: databases, users, grants, routines, triggers, events;
# and PROXY, as root has it),
# MAILVAULT_TEST_MARIADB_SOCKET (the unix socket; the same account logs in
# there with its password) and MAILVAULT_TEST_MARIADB_VERSION (x.y.z).
set -euo pipefail
cd "$(dirname "$0")/../.."

state="$PWD/target/servers/mariadb"
envfile="$PWD/target/servers/mariadb.env"
data="$state/data"
rundir="$state/run"
sock="$rundir/mariadb.sock"
pidfile="$rundir/mariadbd.pid"
cnf="$state/my.cnf"
logfile="$state/mariadbd.log"
test_user=mvtest

server_bin() {
  local b
  for b in /usr/sbin/mariadbd "$(command -v mariadbd 2>/dev/null || true)"; do
    if [ -n "$b" ] && [ -x "$b" ]; then echo "$b"; return 0; fi
  done
  return 0
}

. scripts/servers/lib.sh

# The server's pid if it is our own (the pid file may be stale after a
# reboot or a crash), else nothing.
our_pid() {
  local pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--defaults-file=$cnf "; then
    echo "$pid"
  fi
}

stop() {
  local pid
  pid=$(our_pid)
  if [ -n "$pid" ]; then
    # SIGTERM: mariadbd's normal shutdown.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$state"
  rm -f "$envfile"
}

start() {
  local mariadbd
  mariadbd=$(server_bin)
  if [ -z "$mariadbd" ] || ! command -v mariadb-install-db >/dev/null || ! command -v mariadb >/dev/null; then
    echo "==> installing mariadb-server"
    apt_install mariadb-server
    mariadbd=$(server_bin)
    [ -n "$mariadbd" ] || { echo "mariadb.sh: no mariadbd after installing mariadb-server" >&2; exit 1; }
  fi
  command -v setpriv >/dev/null || apt_install util-linux
  if id mysql >/dev/null 2>&1; then owner=mysql; else owner=nobody; fi
  stop

  mkdir -p "$state" "$rundir" "$data"
  chmod 755 "$PWD/target/servers" "$state" "$rundir"
  chown "$owner:" "$state" "$rundir" "$data"
  if ! run_as_owner test -w "$state"; then
    echo "mariadb.sh: user $owner cannot write $state (a parent directory not searchable by others?)" >&2
    exit 1
  fi

  local port password
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')

  cat >"$cnf" <<EOF
# MariaDB for mailvault's tests: loopback and a private socket only; the
# character set of Debian's packaged config; durability traded for speed.
[mariadbd]
datadir = $data
socket = $sock
pid-file = $pidfile
port = $port
bind-address = 127.0.0.1
skip-name-resolve
log-error = $logfile
event-scheduler = ON
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
max-connections = 200
innodb-buffer-pool-size = 64M
innodb-log-file-size = 32M
innodb-flush-log-at-trx-commit = 2
innodb-doublewrite = 0
sync-binlog = 0
EOF
  chmod 644 "$cnf"

  # root@localhost logs in over the socket as the OS user root (unix_socket
  # authentication) and makes the tests' account below.
  run_as_owner mariadb-install-db --defaults-file="$cnf" --user="$owner" \
    --auth-root-authentication-method=socket --auth-root-socket-user=root \
    --skip-test-db >"$state/install-db.log" 2>&1 ||
    { cat "$state/install-db.log" >&2; echo "mariadb.sh: mariadb-install-db failed" >&2; exit 1; }

  # --defaults-file first: the server reads that file only. setsid: the
  # server outlives the shell that started it, in a session of its own.
  setsid setpriv --reuid="$owner" --regid="$(id -g "$owner")" --init-groups -- \
    "$mariadbd" --defaults-file="$cnf" >"$state/stdout.log" 2>&1 </dev/null &
  local launcher=$!

  local ok=""
  for _ in $(seq 300); do
    if [ -S "$sock" ] && mariadb --no-defaults --protocol=socket --socket="$sock" -u root -e 'SELECT 1' >/dev/null 2>&1; then
      ok=1; break
    fi
    if ! kill -0 "$launcher" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ -z "$ok" ]; then
    cat "$state/stdout.log" "$logfile" >&2 2>/dev/null || true
    echo "mariadb.sh: mariadbd did not start" >&2
    stop
    exit 1
  fi

  # The tests' account, on TCP ('%') and on the socket ('localhost'). PROXY
  # as root has it: reloading a `mariadb-dump --system=users` dump replays
  # root's "GRANT PROXY ON ''@'%' ... WITH GRANT OPTION".
  mariadb --no-defaults --protocol=socket --socket="$sock" -u root <<EOF
DELETE FROM mysql.global_priv WHERE User = '';
CREATE USER '$test_user'@'%' IDENTIFIED BY '$password';
CREATE USER '$test_user'@'localhost' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON *.* TO '$test_user'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$test_user'@'localhost' WITH GRANT OPTION;
GRANT PROXY ON ''@'%' TO '$test_user'@'%' WITH GRANT OPTION;
GRANT PROXY ON ''@'%' TO '$test_user'@'localhost' WITH GRANT OPTION;
FLUSH PRIVILEGES;
EOF

  local version
  version=$(mariadb --no-defaults -N -B --protocol=tcp -h 127.0.0.1 -P "$port" -u "$test_user" -p"$password" \
    -e 'SELECT VERSION()' | sed 's/-.*//')
  umask 077
  cat >"$envfile" <<EOF
MAILVAULT_TEST_MARIADB_HOST=127.0.0.1
MAILVAULT_TEST_MARIADB_PORT=$port
MAILVAULT_TEST_MARIADB_USER=$test_user
MAILVAULT_TEST_MARIADB_PASSWORD=$password
MAILVAULT_TEST_MARIADB_SOCKET=$sock
MAILVAULT_TEST_MARIADB_VERSION=$version
EOF
  echo "mariadb.sh: MariaDB $version pid $(our_pid) on 127.0.0.1:$port and $sock, user $test_user; env in $envfile" >&2
  echo "$envfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "$envfile" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
