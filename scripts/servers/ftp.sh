#!/usr/bin/env bash
# A real FTP/FTPS server for the FTP backend's tests (repo/tests/ftp.rs), on
# loopback only: vsftpd, a local user with a random password, a test CA
# (standing in for a self-signed setup), a certificate for 127.0.0.1 and an
# expired one.
#
#   scripts/servers/ftp.sh start   install what is missing, start, write the env file
#   scripts/servers/ftp.sh env     print the env file (source it: `. <(scripts/servers/ftp.sh env)`)
#   scripts/servers/ftp.sh stop    stop the servers started by `start`
#
# Three vsftpd instances, all accepting plain and TLS (AUTH TLS) logins:
#   main     MAILVAULT_TEST_FTP_PORT: every test but the two below
#   expired  MAILVAULT_TEST_FTPS_EXPIRED_PORT: serves an expired certificate
#   kill     MAILVAULT_TEST_FTP_KILL_PORT: the resume test kills its sessions
#            mid-upload (its pid is MAILVAULT_TEST_FTP_KILL_PID), so no other
#            test may use it
#   selfsigned MAILVAULT_TEST_FTPS_SELFSIGNED_PORT: a self-signed certificate
#            (MAILVAULT_TEST_FTPS_SELFSIGNED_CERT) made by `openssl req -x509`
# State lives in target/servers/ftp/ (config, certificates, logs, pids); the
# env file is target/servers/ftp.env.
set -euo pipefail
cd "$(dirname "$0")/../.."

state=target/servers/ftp
envfile=target/servers/ftp.env
user=mvftp

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port: wait for the FTP greeting
  for _ in $(seq 1 100); do
    if python3 - "$1" <<'EOF' 2>/dev/null; then return 0; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
sys.exit(0 if s.recv(100).startswith(b"220") else 1)
EOF
    sleep 0.1
  done
  echo "vsftpd on port $1 did not answer; see $state/*.log" >&2
  return 1
}

stop() {
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    # Only our own vsftpd (the pid file may be stale after a reboot).
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$PWD/$state"; then
      kill "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

config() { # name port pasv_min pasv_max cert key
  cat >"$state/$1.conf" <<EOF
# vsftpd for mailvault's tests: loopback only, in the foreground.
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$2
background=NO
# The Debian build's seccomp filter kills sessions on syscalls newer
# kernels/libcs use; tests do not need it.
seccomp_sandbox=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
# Logins stay in their home dir.
chroot_local_user=YES
allow_writeable_chroot=YES
pam_service_name=vsftpd-mailvault
userlist_enable=NO
tcp_wrappers=NO
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=$3
pasv_max_port=$4
# Tests open many sessions at once.
max_clients=200
max_per_ip=200
# Plain and explicit TLS (AUTH TLS) logins both accepted.
ssl_enable=YES
allow_anon_ssl=NO
force_local_logins_ssl=NO
force_local_data_ssl=NO
ssl_tlsv1=YES
ssl_sslv2=NO
ssl_sslv3=NO
# rustls does not resume the control connection's TLS session on the data
# connection the way vsftpd checks it (SSL_session_reused): with YES every
# FTPS transfer fails with "522 SSL connection failed: session reuse required".
require_ssl_reuse=NO
ssl_ciphers=HIGH
rsa_cert_file=$PWD/$state/$5
rsa_private_key_file=$PWD/$state/$6
xferlog_enable=YES
vsftpd_log_file=$PWD/$state/$1.xfer.log
dual_log_enable=YES
xferlog_file=$PWD/$state/$1.xferlog
secure_chroot_dir=$PWD/$state/empty
EOF
}

start() {
  local need=()
  command -v vsftpd >/dev/null || [ -x /usr/sbin/vsftpd ] || need+=(vsftpd)
  command -v openssl >/dev/null || need+=(openssl)
  command -v python3 >/dev/null || need+=(python3)
  if [ ${#need[@]} -gt 0 ]; then
    echo "==> installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  stop
  mkdir -p "$state/empty"
  chmod 755 "$state/empty"

  # PAM service of our own: password check against /etc/shadow only (the
  # Debian "vsftpd" service also wants the shell in /etc/shells and the user
  # not in /etc/ftpusers).
  cat >/etc/pam.d/vsftpd-mailvault <<'EOF'
auth    required pam_unix.so
account required pam_unix.so
session required pam_permit.so
EOF

  local password home
  password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  if ! id "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$user"
  fi
  home=$(getent passwd "$user" | cut -d: -f6)
  mkdir -p "$home"
  chown "$user:" "$home"
  echo "$user:$password" | chpasswd

  # A test CA (what `ca_file` trusts: the self-signed case), a certificate
  # for 127.0.0.1 it signed, and an expired one (2020-01-01 to 2020-01-02;
  # `openssl ca` because OpenSSL 3.0's `req`/`x509` cannot date backwards).
  local ca="$state/ca"
  rm -rf "$ca"; mkdir -p "$ca"; : >"$ca/index.txt"; echo 1000 >"$ca/serial"
  cat >"$ca/ca.cnf" <<EOF
[ca]
default_ca = test_ca
[test_ca]
database = $ca/index.txt
new_certs_dir = $ca
serial = $ca/serial
unique_subject = no
default_md = sha256
policy = any
x509_extensions = leaf
[any]
commonName = supplied
[leaf]
subjectAltName = IP:127.0.0.1
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
EOF
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mailvault test CA" \
    -keyout "$ca/ca-key.pem" -out "$state/ca.pem" 2>/dev/null
  for leaf in cert expired; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$state/$leaf-key.pem" -out "$ca/$leaf.csr" 2>/dev/null
  done
  openssl ca -batch -notext -config "$ca/ca.cnf" -cert "$state/ca.pem" -keyfile "$ca/ca-key.pem" \
    -in "$ca/cert.csr" -out "$state/cert.pem" -days 30 2>/dev/null
  openssl ca -batch -notext -config "$ca/ca.cnf" -cert "$state/ca.pem" -keyfile "$ca/ca-key.pem" \
    -in "$ca/expired.csr" -out "$state/expired.pem" \
    -startdate 20200101000000Z -enddate 20200102000000Z 2>/dev/null
  # A self-signed server certificate as `openssl req -x509` makes them
  # (it says CA:TRUE, which webpki alone refuses for a server).
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$state/selfsigned-key.pem" -out "$state/selfsigned.pem" 2>/dev/null
  chmod 600 "$state"/*key.pem

  local port eport kport sport vsftpd
  vsftpd=$(command -v vsftpd || echo /usr/sbin/vsftpd)
  port=$(free_port); eport=$(free_port); kport=$(free_port); sport=$(free_port)
  [ "$port" != "$eport" ] && [ "$eport" != "$kport" ] && [ "$port" != "$kport" ] || { echo "port clash, run again" >&2; exit 1; }
  local base=$(( (RANDOM % 200) * 100 + 40000 ))
  config main "$port" "$base" $((base + 49)) cert.pem cert-key.pem
  config expired "$eport" $((base + 50)) $((base + 69)) expired.pem expired-key.pem
  config kill "$kport" $((base + 70)) $((base + 89)) cert.pem cert-key.pem
  config selfsigned "$sport" $((base + 90)) $((base + 99)) selfsigned.pem selfsigned-key.pem
  for name in main expired kill selfsigned; do
    setsid "$vsftpd" "$PWD/$state/$name.conf" >"$state/$name.log" 2>&1 </dev/null &
    echo $! >"$state/$name.pid"
  done
  wait_port "$port"; wait_port "$eport"; wait_port "$kport"; wait_port "$sport"

  cat >"$envfile" <<EOF
export MAILVAULT_TEST_FTP_HOST=127.0.0.1
export MAILVAULT_TEST_FTP_PORT=$port
export MAILVAULT_TEST_FTP_USER=$user
export MAILVAULT_FTP_PASSWORD=$password
export MAILVAULT_TEST_FTP_CA=$PWD/$state/ca.pem
export MAILVAULT_TEST_FTPS_EXPIRED_PORT=$eport
export MAILVAULT_TEST_FTP_KILL_PORT=$kport
export MAILVAULT_TEST_FTPS_SELFSIGNED_PORT=$sport
export MAILVAULT_TEST_FTPS_SELFSIGNED_CERT=$PWD/$state/selfsigned.pem
export MAILVAULT_TEST_FTP_KILL_PID=$(cat "$state/kill.pid")
EOF
  chmod 600 "$envfile"
  echo "vsftpd on 127.0.0.1:$port (expired certificate: $eport, resume test: $kport); env: $envfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) cat "$envfile" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
