#!/usr/bin/env python3
"""Reads a mailbox over IMAP with Python's imaplib (a client independent of
mailvault): LIST, then for every selectable folder UID FETCH of FLAGS and
BODY.PEEK[] (so nothing is marked seen). Prints JSON:
{"list": [raw LIST lines], "folders": {"<wire name>": [{"hex": body, "flags": [...]}]}}

    imap_fetch.py HOST PORT USER PASSWORD
"""
import imaplib
import json
import re
import sys

host, port, user, password = sys.argv[1:5]
c = imaplib.IMAP4(host, int(port))
c.login(user, password)
typ, lines = c.list()
assert typ == "OK", lines
res = {"list": [l.decode() for l in lines], "folders": {}}
for raw in lines:
    m = re.match(rb'\((?P<attrs>[^)]*)\) "(?P<sep>[^"]*)" (?P<name>.*)$', raw)
    attrs, name = m.group("attrs"), m.group("name")
    if b"\\Noselect" in attrs or b"\\NonExistent" in attrs:
        continue
    wire = name.decode()
    typ, _ = c.select(wire if wire.startswith('"') else '"%s"' % wire, readonly=True)
    assert typ == "OK", wire
    msgs = []
    typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    assert typ == "OK", data
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode().split()
        msgs.append({"hex": body.hex(), "flags": sorted(flags)})
    res["folders"][wire.strip('"')] = msgs
c.logout()
json.dump(res, sys.stdout)
