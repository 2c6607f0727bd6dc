#!/usr/bin/env bash
# Benchmark of the mail tools (issue 8), in one run, on one generated store:
#   1. a full backup of it;
#   2. search by subject over that backup (headers only) against a full
#      restore (kmsrecover --into) of it;
#   3. export to Maildir from the backup against that restore, and from the
#      live store against `cp -a` of the same store (medians of three
#      alternating rounds);
#   4. merge of 10,000 loose .eml files into a new folder, against copying
#      them into #msgs by hand (cp, no duplicate check, no index).
# Writes bench/work/mailtools.md (copy it into docs/performance.md).
#
#   bench/mailtools.sh                 # ~5 minutes on 2 cores
#   MESSAGES=10000 bench/mailtools.sh  # quicker
#
# Not a test: nothing here passes or fails on timing.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-50000}
LOOSE=${LOOSE:-10000}
WORK=${WORK:-$PWD/bench/work}
command -v /usr/bin/time >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq time >/dev/null; }
cargo build --release -q
MV=$PWD/target/release/mailvault
KMS=$PWD/target/release/kmsrecover
mkdir -p "$WORK"
OUT=$WORK/mailtools.md

run() {
  local label=$1; shift
  sync; sleep 2
  /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/$label.err" || {
    local rc=$?; [ "${ALLOW_RC:-}" = "$rc" ] || { cat "$WORK/$label.err"; exit 1; }; }
  read -r secs rss < <(tail -1 "$WORK/time.txt")
  printf '%-32s %8.2f s %8d KiB\n' "$label" "$secs" "$rss"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f%%", 100*a/b}'; }

store=$WORK/store-$MESSAGES
[ -d "$store" ] || "$MV" sample-store --domains 5 --users 20 --messages "$MESSAGES" --seed 1 "$store" >/dev/null
files=$(find "$store/store/mail" -name '*.eml' | wc -l)
bytes=$(du -sb "$store" | cut -f1)
find "$store" -type f -print0 | xargs -0 cat > /dev/null
echo "==> store: $files messages, $(numfmt --to=iec "$bytes")"

echo "==> 1. full backup"
rm -rf "$WORK/mt-backup"
run backup-full "$MV" backup full -q --install-dir "$store" --backup-dir "$WORK/mt-backup"

echo "==> 2. search by subject over the backup"
# Two words of one message's subject, so the search has a real hit to find.
subject=$(grep -m1 -h '^Subject: ' "$(find "$store/store/mail" -name '*.eml' | sort | sed -n 777p)" | cut -c10- | awk '{print $2, $3}')
ALLOW_RC=3 run search-subject "$MV" search --subject "$subject" "$WORK/mt-backup"; search_s=$secs; search_rss=$rss

echo "==> 3. full restore against export to Maildir (three rounds, alternating: this disk's"
echo "    write-back makes single runs vary by a factor of up to 5)"
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
rs=(); eb=(); el=(); cs=()
for r in 1 2 3; do
  rm -rf "$WORK/mt-out"
  run "kmsrecover-full-$r" "$KMS" -q --into "$WORK/mt-out" "$WORK/mt-backup"; rs+=("$secs"); restore_rss=$rss
  rm -rf "$WORK/mt-out"
  run "export-maildir-from-backup-$r" "$MV" export -q --from "$WORK/mt-backup" --format maildir --out "$WORK/mt-out"; eb+=("$secs"); exb_rss=$rss
  rm -rf "$WORK/mt-out"
  run "export-maildir-live-$r" "$MV" export -q --install-dir "$store" --format maildir --out "$WORK/mt-out"; el+=("$secs"); exl_rss=$rss
  rm -rf "$WORK/mt-out"
  run "cp-a-store-$r" sh -c "cp -a '$store/store' '$WORK/mt-out' && sync"; cs+=("$secs")
  rm -rf "$WORK/mt-out"
done
restore_s=$(median "${rs[@]}"); exb_s=$(median "${eb[@]}"); exl_s=$(median "${el[@]}"); cp_s=$(median "${cs[@]}")

echo "==> 4. merge of $LOOSE loose .eml files"
loose=$WORK/mt-loose
rm -rf "$loose"; mkdir -p "$loose"
python3 - "$store/store/mail" "$loose" "$LOOSE" <<'PY'
import os, shutil, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
paths = sorted(os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs if f.endswith(".eml"))
for i, p in enumerate(paths[:n]):
    shutil.copy2(p, os.path.join(dst, "%06d.eml" % (i + 1)))
PY
target=$WORK/mt-target
rm -rf "$target"; "$MV" sample-install "$target" >/dev/null
run merge-loose "$MV" merge-eml -q --install-dir "$target" -d example.com -u jane -f Imported --running-check false "$loose"; merge_s=$secs; merge_rss=$rss
run merge-again "$MV" merge-eml -q --install-dir "$target" -d example.com -u jane -f Imported --running-check false "$loose"; again_s=$secs
mkdir -p "$target/store/mail/example.com/jane/ByHand/#msgs"
run cp-by-hand sh -c "cp $loose/*.eml '$target/store/mail/example.com/jane/ByHand/#msgs/' && sync"; hand_s=$secs
rm -rf "$loose" "$target"

{
  echo "### Mail tools ($(date -u +%Y-%m-%dT%H:%MZ), bench/mailtools.sh)"
  echo
  echo "Store: $files messages, $(numfmt --to=iec "$bytes"); backup: one full."
  echo
  echo "| measure | time | against | ratio | peak RSS |"
  echo "|---|---|---|---|---|"
  echo "| full restore, kmsrecover --into (baseline; median of 3: ${rs[*]}) | $restore_s s | | | $((restore_rss / 1024)) MiB |"
  echo "| search by subject over the backup | $search_s s | the full restore | **$(pct "$search_s" "$restore_s")** | $((search_rss / 1024)) MiB |"
  echo "| export to Maildir from the backup (median of 3: ${eb[*]}) | $exb_s s | the full restore | **$(ratio "$exb_s" "$restore_s")×** | $((exb_rss / 1024)) MiB |"
  echo "| export to Maildir from the live store (median of 3: ${el[*]}) | $exl_s s | cp -a of the store + sync, $cp_s s | **$(ratio "$exl_s" "$cp_s")×** | $((exl_rss / 1024)) MiB |"
  echo "| merge of $LOOSE loose .eml files | $merge_s s | cp into #msgs by hand, $hand_s s | **$(ratio "$merge_s" "$hand_s")×** | $((merge_rss / 1024)) MiB |"
  echo "| the same merge again (all duplicates) | $again_s s | | | |"
} > "$OUT"
cat "$OUT"
