#!/usr/bin/env bash
# A real IMAP server for the export tests (tests/it/export.rs): Dovecot on
# 127.0.0.1 at a free port, run as a plain foreground process with its own
# config, base_dir, state and logs under target/servers/dovecot/ (nothing of
# the system's Dovecot setup is used or touched), one test user from a
# passwd-file whose mail is a Maildir the tests fill with an export.
#
#   scripts/servers/dovecot.sh start   install dovecot-imapd if missing, start, write the env file
#   scripts/servers/dovecot.sh env     print the env file's path (sourceable: set -a; . FILE)
#   scripts/servers/dovecot.sh stop    stop the server started by `start`
#
# The env file (target/servers/dovecot.env) sets MAILVAULT_TEST_DOVECOT_PORT,
# MAILVAULT_TEST_DOVECOT_USER, MAILVAULT_TEST_DOVECOT_PASSWORD,
# MAILVAULT_TEST_DOVECOT_MAILDIR (where a test puts the Maildir it wants
# served) and MAILVAULT_TEST_DOVECOT_OWNER (user:group the mail must belong
# to: Dovecot refuses to serve mail as root, so the user is `nobody`).
set -euo pipefail
cd "$(dirname "$0")/../.."

state="$PWD/target/servers/dovecot"
envfile="$PWD/target/servers/dovecot.env"
user=mvimap
owner_user=nobody
owner_group=$(id -gn nobody)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

stop() {
  local f="$state/master.pid"
  if [ -f "$f" ]; then
    local pid
    pid=$(cat "$f")
    # Only our own Dovecot (the pid file may be stale after a reboot).
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$state/dovecot.conf"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$f"
  fi
  rm -f "$envfile"
}

start() {
  if ! command -v dovecot >/dev/null && [ ! -x /usr/sbin/dovecot ]; then
    echo "==> installing dovecot-imapd"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq dovecot-imapd >/dev/null
  fi
  local dovecot
  dovecot=$(command -v dovecot || echo /usr/sbin/dovecot)
  stop
  rm -rf "$state"
  mkdir -p "$state/run" "$state/state" "$state/mail"
  # The internal users must reach the config and the passwd-file.
  chmod 755 "$state" "$state/mail"

  local port password uid gid
  port=$(free_port)
  password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  uid=$(id -u "$owner_user")
  gid=$(getent group "$owner_group" | cut -d: -f3)
  # user:password:uid:gid:gecos:home:shell:extra userdb fields
  printf '%s:{PLAIN}%s:%s:%s::%s::userdb_mail=maildir:%s\n' \
    "$user" "$password" "$uid" "$gid" "$state/mail" "$state/mail/Maildir" >"$state/passwd"
  chmod 644 "$state/passwd"

  cat >"$state/dovecot.conf" <<EOF
# Dovecot for mailvault's tests: loopback only, in the foreground, private
# base_dir and state; one passwd-file user whose mail is an exported Maildir.
base_dir = $state/run
state_dir = $state/state
instance_name = mailvault-test
log_path = $state/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $state/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $state/passwd
}
# The exported Maildir++ layout (dot-separated folders), served as is.
mail_location = maildir:$state/mail/Maildir
namespace inbox {
  inbox = yes
  separator = /
}
first_valid_uid = 1
mail_fsync = never
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
EOF
  setsid "$dovecot" -F -c "$state/dovecot.conf" >"$state/stdout.log" 2>&1 </dev/null &
  echo $! >"$state/master.pid"

  # Ready when it greets with "* OK".
  for _ in $(seq 100); do
    if python3 - "$port" <<'EOF' 2>/dev/null; then break; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
sys.exit(0 if s.recv(100).startswith(b"* OK") else 1)
EOF
    if ! kill -0 "$(cat "$state/master.pid")" 2>/dev/null; then
      cat "$state/stdout.log" "$state/dovecot.log" >&2 2>/dev/null || true
      echo "dovecot.sh: dovecot exited" >&2
      exit 1
    fi
    sleep 0.1
  done

  umask 077
  cat >"$envfile" <<EOF
MAILVAULT_TEST_DOVECOT_PORT=$port
MAILVAULT_TEST_DOVECOT_USER=$user
MAILVAULT_TEST_DOVECOT_PASSWORD=$password
MAILVAULT_TEST_DOVECOT_MAILDIR=$state/mail/Maildir
MAILVAULT_TEST_DOVECOT_OWNER=$owner_user:$owner_group
EOF
  echo "dovecot.sh: dovecot pid $(cat "$state/master.pid") on 127.0.0.1:$port, user $user; env in $envfile" >&2
  echo "$envfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "$envfile" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
