#!/usr/bin/env bash
# Benchmark of targets and encryption (issue 7), in one run, on loopback:
#   1. encryption and decryption throughput on one core (crypt_throughput);
#   2. the same full backup to a local directory, to S3 (s3s-fs) and to FTP
#      (vsftpd), plain and encrypted: time against the local backup;
#   3. one user restored from a remote encrypted volume of about 2 GB: bytes
#      fetched against that user's compressed size, and time against
#      downloading the whole volume (curl, SigV4).
# Writes bench/work/targets.md (copy it into docs/performance.md).
#
#   bench/targets.sh                                  # ~10 minutes on 2 cores
#   MESSAGES=5000 BIG_MESSAGES=20000 bench/targets.sh # quicker
#
# Not a test: nothing here passes or fails on timing.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-20000}
BIG_MESSAGES=${BIG_MESSAGES:-140000}
WORK=${WORK:-$PWD/bench/work}
command -v /usr/bin/time >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq time >/dev/null; }
cargo build --release -q
cargo build --release -q -p mailvault-repo --example crypt_throughput
MV=$PWD/target/release/mailvault
KMS=$PWD/target/release/kmsrecover
mkdir -p "$WORK"
OUT=$WORK/targets.md

scripts/servers/s3.sh start >/dev/null
scripts/servers/ftp.sh start >/dev/null
trap 'scripts/servers/s3.sh stop >/dev/null 2>&1 || true; scripts/servers/ftp.sh stop >/dev/null 2>&1 || true' EXIT
set -a; . target/servers/s3.env; . target/servers/ftp.env; set +a
unset MAILVAULT_RETRY_BASE_MS
S3="s3://$MAILVAULT_TEST_S3_BUCKET/bench-$$?endpoint=$MAILVAULT_TEST_S3_ENDPOINT&path_style=true"
FTP="ftp://$MAILVAULT_TEST_FTP_USER@127.0.0.1:$MAILVAULT_TEST_FTP_PORT/bench-$$"
KEY=$WORK/bench.key
rm -f "$KEY"; "$MV" key generate --out "$KEY" >/dev/null

run() {
  local label=$1; shift
  sync; sleep 2
  /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/$label.err" || { cat "$WORK/$label.err"; exit 1; }
  read -r secs rss < "$WORK/time.txt"
  printf '%-32s %8.2f s %8d KiB\n' "$label" "$secs" "$rss"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }

echo "==> 1. encryption throughput, one core"
crypt=$(taskset -c 0 target/release/examples/crypt_throughput 1024 64 | tail -n +1)
echo "$crypt"

store=$WORK/store-$MESSAGES
[ -d "$store" ] || "$MV" sample-store --domains 5 --users 20 --messages "$MESSAGES" --seed 1 "$store" >/dev/null
bytes=$(du -sb "$store" | cut -f1)
find "$store" -type f -print0 | xargs -0 cat > /dev/null
# backups TABLE [PREFIX...]: the full backup, local / S3 / FTP, plain and
# encrypted, median of three, each run prefixed by PREFIX (e.g. taskset);
# appends the table's rows to the variable named TABLE.
backups() {
  local table=$1; shift
  local enc where r dest url k ts
  declare -A T
  for enc in plain encrypted; do
    k=(); [ "$enc" = encrypted ] && k=(--key "$KEY")
    for where in local s3 ftp; do
      # Median of three runs, each into a fresh place (single runs on this VM
      # vary by 10-20 %).
      ts=()
      for r in 1 2 3; do
        case $where in
          local) dest=$WORK/t-local-$enc; rm -rf "$dest"; url=$dest ;;
          s3) url=${S3/bench-$$/bench-$$-$table-$enc-r$r} ;;
          ftp) url=$FTP-$table-$enc-r$r ;;
        esac
        run "backup-$table-$where-$enc-$r" "$@" "$MV" backup full -q --install-dir "$store" --target "$url" --spool-dir "$WORK" "${k[@]}"
        ts+=("$secs")
      done
      T[$where-$enc]=$(printf '%s\n' "${ts[@]}" | sort -n | sed -n 2p)
    done
    printf -v "$table" '%s| %s | %s s | %s s (**%s×**) | %s s (**%s×**) |\n' "${!table}" "$enc" \
      "${T[local-$enc]}" "${T[s3-$enc]}" "$(ratio "${T[s3-$enc]}" "${T[local-$enc]}")" \
      "${T[ftp-$enc]}" "$(ratio "${T[ftp-$enc]}" "${T[local-$enc]}")"
  done
}
echo "==> 2a. full backup of $MESSAGES messages ($(numfmt --to=iec "$bytes")): local dir, S3, FTP (median of 3), servers sharing both cores"
shared=""
backups shared
# 2b. The same with the servers on a core of their own, as a target on
# another machine would be: the backup (local or remote) gets core 0, the
# S3 and FTP servers (and every thread or child they start) core 1.
echo "==> 2b. the same, backup on core 0, servers on core 1"
taskset -apc 1 "$(cat target/servers/s3.pid)" >/dev/null
for f in target/servers/ftp/*.pid; do taskset -apc 1 "$(cat "$f")" >/dev/null; done
apart=""
backups apart taskset -c 0
taskset -apc 0,1 "$(cat target/servers/s3.pid)" >/dev/null
for f in target/servers/ftp/*.pid; do taskset -apc 0,1 "$(cat "$f")" >/dev/null; done

big=$WORK/store-$BIG_MESSAGES
[ -d "$big" ] || { echo "==> generating $BIG_MESSAGES messages"; "$MV" sample-store --domains 5 --users 20 --messages "$BIG_MESSAGES" --seed 4 "$big" >/dev/null; }
echo "==> 3. one user from a remote encrypted volume"
BIGS3=${S3/bench-$$/bench-$$-big}
"$MV" backup full -q --install-dir "$big" --target "$BIGS3" --key "$KEY" --split-size 3G --spool-dir "$WORK" --json > "$WORK/big.json"
# The user's compressed size, from a plain local backup of the same store
# (the same deflate output, entry for entry).
rm -rf "$WORK/t-big-plain"
"$MV" backup full -q --install-dir "$big" --backup-dir "$WORK/t-big-plain" --split-size 3G
user_c=$(python3 - "$WORK/t-big-plain" <<'PY'
import sys, zipfile, glob
total = 0
for f in glob.glob(sys.argv[1] + "/F*.zip"):
    for i in zipfile.ZipFile(f).infolist():
        if i.filename.startswith("@backup/store/mail/d1.example.com/user001/"):
            total += i.compress_size
print(total)
PY
)
rm -rf "$WORK/t-big-plain"
# The encrypted volume's object key: s3://bucket/KEY?endpoint=...
obj=$(python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["volumes"][0]; print(v.split("?")[0].split("/",3)[3])' "$WORK/big.json")
vol_size=$(curl -sfI -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  "$MAILVAULT_TEST_S3_ENDPOINT/$MAILVAULT_TEST_S3_BUCKET/$obj" | tr -d '\r' | awk 'tolower($1)=="content-length:"{print $2}')
run download-whole-volume curl -sf -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  -o /dev/null "$MAILVAULT_TEST_S3_ENDPOINT/$MAILVAULT_TEST_S3_BUCKET/$obj"
dl_s=$secs
rm -rf "$WORK/r-user"
sync; sleep 2
/usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$KMS" --into "$WORK/r-user" -d d1.example.com -u user001 --key "$KEY" --json "$BIGS3" > "$WORK/r-user.json"
read -r ru_s ru_rss < "$WORK/time.txt"
fetched=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fetched_bytes"])' "$WORK/r-user.json")
printf '%-32s %8.2f s %8d KiB, fetched %s of %s\n' one-user-restore "$ru_s" "$ru_rss" "$fetched" "$vol_size"
rm -rf "$WORK/r-user"

{
  echo "### Targets and encryption ($(date -u +%Y-%m-%dT%H:%MZ), bench/targets.sh)"
  echo
  echo "Encryption, one core (1 GiB in memory, 64 KiB chunks):"
  echo
  echo '```'
  echo "$crypt"
  echo '```'
  echo
  echo "Full backup of $MESSAGES messages ($(numfmt --to=iec "$bytes")), to a local directory and over loopback (median of three runs each), the servers sharing the backup's two cores:"
  echo
  echo "| | local dir | S3 (s3s-fs) | FTP (vsftpd) |"
  echo "|---|---|---|---|"
  printf '%s' "$shared"
  echo
  echo "The same with the backup on core 0 and the servers on core 1 (as a target on another machine would be):"
  echo
  echo "| | local dir | S3 (s3s-fs) | FTP (vsftpd) |"
  echo "|---|---|---|---|"
  printf '%s' "$apart"
  echo
  echo "One user (d1.example.com/user001) restored from a remote encrypted volume of $(numfmt --to=iec "$vol_size") ($BIG_MESSAGES messages):"
  echo
  echo "| measure | result |"
  echo "|---|---|"
  echo "| the user's compressed size | $(numfmt --to=iec "$user_c") |"
  echo "| bytes fetched by kmsrecover | $(numfmt --to=iec "$fetched") (**$(ratio "$fetched" "$user_c")×** the user's size) |"
  echo "| kmsrecover, one user | $ru_s s, $((ru_rss / 1024)) MiB RSS |"
  echo "| downloading the whole volume (curl) | $dl_s s (**$(ratio "$dl_s" "$ru_s")×** the restore's time) |"
} > "$OUT"
cat "$OUT"
