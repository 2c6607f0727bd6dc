#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (ZIP validators: Info-ZIP unzip, 7-Zip, bsdtar, Python; the target servers
# s3s-fs and vsftpd, Dovecot, PostgreSQL and MariaDB; the mail corpora),
# runs formatting, lints and docs, starts the servers on
# loopback, runs every test against them, and stops them. `.ci/run` calls
# this same script.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v unzip   >/dev/null || need_apt+=(unzip)
command -v zip     >/dev/null || need_apt+=(zip)
command -v 7z      >/dev/null || need_apt+=(p7zip-full)
command -v bsdtar  >/dev/null || need_apt+=(libarchive-tools)
command -v python3 >/dev/null || need_apt+=(python3)
command -v setpriv >/dev/null || need_apt+=(util-linux)
command -v strace  >/dev/null || need_apt+=(strace)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "==> cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
echo "==> servers on loopback (s3s-fs: S3 with SigV4; vsftpd: FTP and FTPS; Dovecot: IMAP over exports;
    PostgreSQL and MariaDB: the sample panel's databases)"
stop_servers() {
  scripts/servers/s3.sh stop >/dev/null 2>&1 || true
  scripts/servers/ftp.sh stop >/dev/null 2>&1 || true
  scripts/servers/dovecot.sh stop >/dev/null 2>&1 || true
  scripts/servers/postgres.sh stop >/dev/null 2>&1 || true
  scripts/servers/mariadb.sh stop >/dev/null 2>&1 || true
}
trap stop_servers EXIT
scripts/servers/s3.sh start
scripts/servers/ftp.sh start
scripts/servers/dovecot.sh start
scripts/servers/postgres.sh start
scripts/servers/mariadb.sh start
set -a
. target/servers/s3.env
. target/servers/ftp.env
. target/servers/dovecot.env
. target/servers/postgres.env
. target/servers/mariadb.env
set +a
echo "==> mail corpora (mail-parser 1.0.1 resources, SpamAssassin, CPython), cached in target/corpora"
set -a
. "$(scripts/corpora.sh)"
set +a
# Tests that need a server or a corpus fail instead of skipping when it is missing.
export MAILVAULT_TEST_SERVERS=required

echo "==> cargo test"
cargo test --workspace 2>&1 | tee target/test.log
# One closing line for CI: sum cargo's per-binary results.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } } END { printf "%d passed, %d failed\n", p, f; exit (f > 0) }' target/test.log
