#!/usr/bin/env python3
"""Reads an export back with Python's own `mailbox` module, independently of
mailvault: every mailbox directory under OUT (OUT/<domain>/<user>) as a
Maildir (its subfolders through list_folders()) or its *.mbox files. Prints
JSON: {"<user>@<domain>": {"<folder>": [{"hex": content, "flags": "..."}]}}
with folder names decoded from Maildir++ (`.` -> `/`, IMAP modified UTF-7
decoded here, not by mailvault) and mbox contents as Python gives them
(mboxrd `>From` quoting left as is: Python does not undo it).

    read_back.py maildir|mbox OUT
"""
import json
import mailbox
import os
import sys


def decode_mutf7(name):
    """IMAP modified UTF-7 (RFC 3501 5.1.3) -> str."""
    out, i = [], 0
    while i < len(name):
        c = name[i]
        if c != "&":
            out.append(c)
            i += 1
            continue
        j = name.index("-", i)
        chunk = name[i + 1 : j]
        if chunk == "":
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            import base64

            out.append(base64.b64decode(b64).decode("utf-16-be"))
        i = j + 1
    return "".join(out)


def maildir(path):
    md = mailbox.Maildir(path, factory=None, create=False)
    folders = {"INBOX": md}
    for f in md.list_folders():
        folders["/".join(decode_mutf7(p) for p in f.split("."))] = md.get_folder(f)
    res = {}
    for name, box in folders.items():
        msgs = []
        for key in box.keys():
            msg = box.get_message(key)
            msgs.append({"hex": box.get_bytes(key).hex(), "flags": msg.get_flags(), "key": key})
        res[name] = msgs
    return res


def mboxes(path):
    res = {}
    for root, _dirs, files in os.walk(path):
        for f in files:
            if not f.endswith(".mbox"):
                continue
            full = os.path.join(root, f)
            name = os.path.relpath(full, path)[: -len(".mbox")]
            box = mailbox.mbox(full, factory=None, create=False)
            res[name] = [{"hex": box.get_bytes(k).hex(), "flags": ""} for k in box.keys()]
    return res


def main():
    fmt, out = sys.argv[1], sys.argv[2]
    res = {}
    for domain in sorted(os.listdir(out)):
        for user in sorted(os.listdir(os.path.join(out, domain))):
            p = os.path.join(out, domain, user)
            if user.startswith(".") or not os.path.isdir(p):
                continue
            res[f"{user}@{domain}"] = maildir(p) if fmt == "maildir" else mboxes(p)
    json.dump(res, sys.stdout)


main()
