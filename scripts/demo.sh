#!/usr/bin/env bash
# The main job on the bundled sample install: a full backup, a change, a
# differential backup, the chain listed and verified, and a targeted restore
# of one folder (John's INBOX) from the chain with kmsrecover; one deleted
# message found with `mailvault search` and given back alone; then an
# encrypted full to a second directory standing in for an off-site target.
# Works on a scratch copy under
# $DEMO_DIR (default: a new temporary directory); samples/ is never modified.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v unzip >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq unzip >/dev/null; }
cargo build --release -q
mv=$PWD/target/release/mailvault
kms=$PWD/target/release/kmsrecover
work=${DEMO_DIR:-$(mktemp -d)}
install=$work/install
backups=$work/backups
rm -rf "$install" "$backups"
mkdir -p "$work"
cp -a samples/install "$install"

echo "==> full backup of $install"
"$mv" backup full --install-dir "$install" --backup-dir "$backups"

echo "==> a message arrives in John's INBOX, one of Jane's is deleted"
inbox="$install/store/mail/example.com/john/INBOX"
printf 'From: boss@example.com\r\nSubject: demo\r\n\r\nArrived after the full backup.\r\n' > "$inbox/#msgs/00000100.eml"
rm "$install/store/mail/example.com/jane/INBOX/#msgs/00000001.eml"

echo "==> differential backup (dry run first, then for real)"
"$mv" backup differential --install-dir "$install" --backup-dir "$backups" --dry-run
"$mv" backup differential --install-dir "$install" --backup-dir "$backups"

echo "==> the chain"
"$mv" list "$backups"
"$mv" verify "$backups"

echo "==> any unzip opens the archives"
unzip -l "$(ls "$backups"/F*.zip | head -n 1)" | tail -n 3

echo "==> a user deletes John's INBOX; restore exactly that folder from the chain (full + differential)"
rm -rf "$inbox"
"$kms" --install-dir "$install" -d example.com -u john -l "$backups"
"$kms" --install-dir "$install" -d example.com -u john -f INBOX --dry-run "$backups"
"$kms" --install-dir "$install" -d example.com -u john -f INBOX "$backups"
ls "$inbox/#msgs" | wc -l | xargs echo "messages back in John's INBOX:"
test -f "$inbox/#msgs/00000100.eml" && echo "the message that arrived after the full is back too"

echo "==> Jane deleted a message before the differential: find it in the backups, give just that one back"
subject=$(grep -m1 '^Subject: ' "samples/install/store/mail/example.com/jane/INBOX/#msgs/00000001.eml" | cut -c10- | tr -d '\r' | cut -c1-24)
"$mv" search "$backups" --user jane@example.com --subject "$subject"
# The newest state (full + differential) no longer holds it: the full does.
"$kms" --install-dir "$install" --message 'store/mail/example.com/jane/INBOX/#msgs/00000001.eml' "$(ls "$backups"/F*.zip | head -n 1)"
# The message was deleted above by hand, not by the server: its index.fld
# record is stale, which reindex finds (exit 5) and a rebuild removes.
"$mv" reindex --check --install-dir "$install" -u jane@example.com || true
"$mv" reindex --install-dir "$install" -u jane@example.com

echo "==> off-site and encrypted: the same chain to a second directory (S3 and FTP work the same way: docs/targets.md)"
offsite=$work/offsite
rm -rf "$offsite" "$work/demo.key"
"$mv" key generate --out "$work/demo.key"
"$mv" backup full --install-dir "$install" --target "$offsite" --key "$work/demo.key" -q
ls "$offsite"
"$mv" list "$offsite" --key "$work/demo.key"
"$mv" verify "$offsite" --key "$work/demo.key" -q && echo "the encrypted chain verifies"
echo "demo files are in $work"
