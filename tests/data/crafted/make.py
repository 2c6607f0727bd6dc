#!/usr/bin/env python3
"""Generate crafted mailvault backup directories for robustness tests.

Usage: python3 tests/data/crafted/make.py OUTDIR [--case NAME ...]

Writes OUTDIR/<case>/ (one backup directory per case, see CASES below),
OUTDIR/<case>/expected.json for the cases whose directory holds a good
backup (install-relative path -> sha256 of the content a restore must
produce), and OUTDIR/cases.json (the list of cases generated).

Everything is generated here, from fixed seeds and fixed timestamps, with
the Python standard library only: the output is byte-identical on every run
(for a given zlib build). It contains its own small writer of mailvault
archives (docs/formats/archive.md, format version 1), independent of the
Rust code, and its own ZIP writer, so that every header field of the
hostile cases can be set exactly.
"""

import argparse
import calendar
import hashlib
import itertools
import json
import os
import random
import shutil
import struct
import sys
import time
import zlib

# ---------------------------------------------------------------------------
# ZIP writer
# ---------------------------------------------------------------------------

FLAG_ENCRYPTED = 0x0001
FLAG_UTF8 = 0x0800
MADE_BY_UNIX = (3 << 8) | 20
MODE_FILE = 0o100644
MODE_SYMLINK = 0o120777
STORE, DEFLATE = 0, 8
ZIP64_LIMIT = 0xFFFFFFFF


def deflate(data, level=6):
    """Raw deflate (ZIP method 8) of a bytes object."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def deflate_chunks(chunks, level=6):
    """Raw deflate of an iterable of byte chunks, never holding the
    uncompressed whole: returns (compressed, crc32, uncompressed size)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out, crc, size = [], 0, 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
        out.append(c.compress(chunk))
    out.append(c.flush())
    return b"".join(out), crc, size


def repeated(head, line, total, chunk_lines=65536):
    """Chunks: `head`, then `line` repeated until at least `total` bytes."""
    yield head
    n = -(-(total - len(head)) // len(line))
    block = line * chunk_lines
    while n >= chunk_lines:
        yield block
        n -= chunk_lines
    if n:
        yield line * n


def dos_datetime(secs):
    t = time.gmtime(secs)
    dtime = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    ddate = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    return dtime, ddate


class Entry:
    """One ZIP entry, with every field a hostile case may want to bend.

    name        central directory name (str or bytes)
    data        uncompressed content (bytes), or packed=(compressed, crc, size)
    claim       (crc, size) written in the headers instead of the true values
    local_name  name written in the local header instead of `name`
    """

    def __init__(self, name, data=b"", *, packed=None, mtime=0, method=DEFLATE,
                 mode=MODE_FILE, flags=FLAG_UTF8, local_name=None, claim=None,
                 timestamp_extra=True, level=6):
        self.name = name.encode("utf-8") if isinstance(name, str) else name
        self.local_name = (local_name.encode("utf-8") if isinstance(local_name, str)
                           else local_name) or self.name
        if len(self.local_name) != len(self.name):
            # Not needed by ZIP, but keeps every other offset as for `name`.
            raise ValueError("local name must have the length of the central name")
        self.data = data if packed is None else None
        self.method = method
        if packed is not None:
            self.raw, self.crc, self.size = packed
        else:
            self.crc, self.size = zlib.crc32(data), len(data)
            self.raw = deflate(data, level) if method == DEFLATE else data
        if claim is not None:
            self.crc, self.size = claim
        self.mtime = mtime
        self.mode = mode
        self.flags = flags
        self.timestamp_extra = timestamp_extra
        # Set by write_zip: where the local header and the compressed data start.
        self.header_offset = self.data_offset = None

    @property
    def text_name(self):
        return self.name.decode("utf-8", "replace")


def write_zip(path, entries, zip64="auto"):
    """Writes `entries` as a ZIP file. zip64="auto" writes ZIP64 records when
    a size, offset or the entry count needs them; zip64=False never does
    (counts and offsets are then stored modulo their field width)."""
    out = bytearray()
    central = bytearray()
    for e in entries:
        e.header_offset = len(out)
        dtime, ddate = dos_datetime(e.mtime)
        ts = struct.pack("<HHBI", 0x5455, 5, 1, e.mtime) if e.timestamp_extra else b""
        big = zip64 and (e.size >= ZIP64_LIMIT or len(e.raw) >= ZIP64_LIMIT)
        far = zip64 and e.header_offset >= ZIP64_LIMIT
        needed = 45 if (big or far) else 20
        local_extra = ts
        if big:
            local_extra = struct.pack("<HHQQ", 1, 16, e.size, len(e.raw)) + ts
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, needed, e.flags, e.method, dtime, ddate,
            e.crc, ZIP64_LIMIT if big else len(e.raw) & 0xFFFFFFFF,
            ZIP64_LIMIT if big else e.size & 0xFFFFFFFF,
            len(e.local_name), len(local_extra))
        out += e.local_name + local_extra
        e.data_offset = len(out)
        out += e.raw
        z64 = b""
        if big:
            z64 += struct.pack("<QQ", e.size, len(e.raw))
        if far:
            z64 += struct.pack("<Q", e.header_offset)
        central_extra = (struct.pack("<HH", 1, len(z64)) + z64 if z64 else b"") + ts
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, MADE_BY_UNIX, needed, e.flags, e.method,
            dtime, ddate, e.crc, ZIP64_LIMIT if big else len(e.raw) & 0xFFFFFFFF,
            ZIP64_LIMIT if big else e.size & 0xFFFFFFFF, len(e.name),
            len(central_extra), 0, 0, 0, (e.mode << 16) & 0xFFFFFFFF,
            ZIP64_LIMIT if far else e.header_offset & 0xFFFFFFFF)
        central += e.name + central_extra
    cd_offset, cd_size, count = len(out), len(central), len(entries)
    out += central
    if zip64 and (count >= 0xFFFF or cd_offset >= ZIP64_LIMIT or cd_size >= ZIP64_LIMIT):
        eocd64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, MADE_BY_UNIX, 45, 0, 0,
                           count, count, cd_size, cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF,
                           ZIP64_LIMIT, ZIP64_LIMIT, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count & 0xFFFF,
                           count & 0xFFFF, cd_size & 0xFFFFFFFF,
                           cd_offset & 0xFFFFFFFF, 0)
    with open(path, "wb") as f:
        f.write(out)
    return bytes(out)


# ---------------------------------------------------------------------------
# The backed-up install
# ---------------------------------------------------------------------------

class File:
    """One file of the install: path (install-relative), content, mtime.
    `opts` are Entry keyword overrides for the crafted cases; `packed` is a
    precompressed (compressed, crc, size) for large content."""

    def __init__(self, path, data=b"", secs=0, nanos=0, *, packed=None, **opts):
        self.path, self.data, self.secs, self.nanos = path, data, secs, nanos
        self.packed, self.opts = packed, opts

    @property
    def crc_size(self):
        if "claim" in self.opts:
            return self.opts["claim"]
        if self.packed is not None:
            return self.packed[1], self.packed[2]
        return zlib.crc32(self.data), len(self.data)

    def entry(self, prefix="@backup/"):
        return Entry(prefix + self.path, self.data, packed=self.packed,
                     mtime=self.secs, **self.opts)


WORDS = ("backup restore mailbox folder message server domain archive volume "
         "catalog invoice meeting report quarterly budget schedule review please "
         "attached thanks regards tomorrow monday project update draft final").split()


def message(rng, n, sender, recipient, secs, attachment=0):
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(secs))
    subject = " ".join(rng.choice(WORDS) for _ in range(4)).capitalize()
    body = []
    for _ in range(rng.randint(4, 12)):
        body.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + ".")
    head = (f"Return-Path: <{sender[1]}>\r\n"
            f"Received: from mail.example.com by mail.example.com; {date}\r\n"
            f"Message-ID: <{n:08x}.{secs}@mail.example.com>\r\n"
            f"Date: {date}\r\n"
            f"From: {sender[0]} <{sender[1]}>\r\n"
            f"To: {recipient[0]} <{recipient[1]}>\r\n"
            f"Subject: {subject}\r\n"
            "MIME-Version: 1.0\r\n")
    text = "\r\n".join(body) + "\r\n"
    if not attachment:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text).encode()
    import base64
    blob = base64.encodebytes(rng.randbytes(attachment)).decode().replace("\n", "\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text +
            "--b1\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + blob +
            "--b1--\r\n").encode()


def index_fld(msgs):
    """A Kerio-like folder index: one line per message."""
    lines = [f"U{n:08X} F00000001 S{len(data)} D{secs:08x} M{secs:08x} I0001 CIPM.Note\n"
             for n, data, secs in msgs]
    return "".join(lines).encode()


MAILSERVER_CFG = b"""<?xml version="1.0" encoding="utf-8"?>
<config>
  <list name="Domain">
    <listitem>
      <variable name="Domain">example.com</variable>
      <variable name="Type">local</variable>
      <variable name="Description">Example Inc.</variable>
    </listitem>
  </list>
  <table name="StoreDir">
    <variable name="Path">/opt/kerio/mailserver/store</variable>
  </table>
</config>
"""

USERS_CFG = b"""<?xml version="1.0" encoding="utf-8"?>
<config>
  <list name="User">
    <listitem>
      <variable name="Name">john</variable>
      <variable name="Domain">example.com</variable>
      <variable name="FullName">John Smith</variable>
      <variable name="Password">SHA:5e884898da28047151d0e56f8dc6292773603d0d</variable>
      <variable name="Account_enabled">1</variable>
    </listitem>
    <listitem>
      <variable name="Name">jane</variable>
      <variable name="Domain">example.com</variable>
      <variable name="FullName">Jane Doe</variable>
      <variable name="Password">SHA:2bb80d537b1da3e38bd30361aa855686bde0eacd</variable>
      <variable name="Account_enabled">1</variable>
    </listitem>
  </list>
</config>
"""

JOHN = ("John Smith", "john@example.com")
JANE = ("Jane Doe", "jane@example.com")
MAILDIR = "store/mail/example.com"


def install():
    """The tiny install, in archive order (docs/formats/archive.md section 5):
    mailserver.cfg, users.cfg, then store/ depth-first in byte order."""
    rng = random.Random(20260101)
    files = [File("mailserver.cfg", MAILSERVER_CFG, 1766000000, 123456789),
             File("users.cfg", USERS_CFG, 1766000100, 0)]
    for user, peer, count in (("jane", JOHN, 2), ("john", JANE, 3)):
        msgs = []
        for n in range(1, count + 1):
            secs = 1766100000 + n * 3600 + (100 if user == "john" else 0)
            # john's second message carries an attachment: a sizeable
            # deflate stream to damage in the bad-crc case.
            attach = 12000 if (user == "john" and n == 2) else 0
            me = JOHN if user == "john" else JANE
            data = message(rng, n, peer, me, secs, attach)
            msgs.append((n, data, secs))
            files.append(File(f"{MAILDIR}/{user}/INBOX/#msgs/{n:08x}.eml", data,
                              secs, n * 1000))
        last = msgs[-1][2]
        files.append(File(f"{MAILDIR}/{user}/INBOX/index.fld", index_fld(msgs),
                          last, 500000000))
    return files


def by_path(files):
    return {f.path: f for f in files}


# ---------------------------------------------------------------------------
# mailvault archive writer (docs/formats/archive.md)
# ---------------------------------------------------------------------------

TOOL = "mailvault-crafted make.py 1"
HOST = "mail.example.com"
SOURCE = "/opt/kerio/mailserver"
KINDS = {"F": "full", "D": "differential", "C": "copy"}


def stem_secs(stem):
    return calendar.timegm(time.strptime(stem[1:], "%Y%m%dT%H%M%SZ"))


def rfc3339(secs):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))


def volume_name(stem, n):
    return f"{stem}.zip" if n == 0 else f"{stem}.{n}.zip"


def fields(pairs):
    return "".join(f"{k}: {v}\n" for k, v in pairs).encode()


def escape_path(path):
    return (path.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))


def row(f, where):
    """A catalog row: (crc, size, secs, nanos, where, path)."""
    crc, size = f.crc_size
    return (crc, size, f.secs, f.nanos, str(where), f.path)


def catalog_header():
    return b"# mailvault catalog 1\n# crc32\tsize\tmtime\twhere\tpath\n"


def catalog_line(r):
    crc, size, secs, nanos, where, path = r
    return f"{crc:08x}\t{size}\t{secs}.{nanos:09d}\t{where}\t{escape_path(path)}\n".encode()


def catalog_text(rows):
    return catalog_header() + b"".join(catalog_line(r) for r in rows)


def render_backup(stem, volumes, *, rows=None, base=None, state_totals=None,
                  catalog=None):
    """The entries of every volume of one backup.

    volumes       list (one per volume) of lists of stored File
    rows          catalog rows in order (default: every stored file with
                  its volume number); a differential passes base/deleted rows
    base          stem of the base full, for a differential
    state_totals  (state-files, state-bytes) instead of those of `rows`
    catalog       a ready catalog Entry instead of catalog_text(rows)
    Returns a list (one per volume) of lists of Entry."""
    kind = KINDS[stem[0]]
    start = stem_secs(stem)
    if rows is None:
        rows = [row(f, n) for n, vol in enumerate(volumes) for f in vol]
    state = [r for r in rows if r[4] != "deleted"]
    if state_totals is None:
        state_totals = (len(state), sum(r[1] for r in state))
    last = len(volumes) - 1
    out = []
    for n, vol in enumerate(volumes):
        ended = start + 60 * (n + 1)
        version = [("format-version", 1), ("tool", TOOL), ("type", kind),
                   ("started", rfc3339(start)), ("host", HOST), ("source", SOURCE)]
        if base:
            version.append(("base", base))
        version.append(("volume", n))
        entries = [Entry(".version.txt", fields(version), mtime=start)]
        entries += [f.entry() for f in vol]
        summary = [("type", kind), ("status", "complete"), ("started", rfc3339(start)),
                   ("ended", rfc3339(ended)), ("volume", n),
                   ("last-volume", "yes" if n == last else "no"),
                   ("volume-files", len(vol)),
                   ("volume-bytes", sum(f.crc_size[1] for f in vol))]
        if n == last:
            stored = [f for v in volumes for f in v]
            summary += [("volumes", len(volumes)), ("files", len(stored)),
                        ("bytes", sum(f.crc_size[1] for f in stored)),
                        ("state-files", state_totals[0]),
                        ("state-bytes", state_totals[1])]
            if kind == "differential":
                summary += [("from-base", sum(1 for r in rows if r[4] == "base")),
                            ("deleted", sum(1 for r in rows if r[4] == "deleted"))]
            entries.append(catalog or Entry(".catalog.tsv", catalog_text(rows),
                                            mtime=ended))
        entries.append(Entry(".summary.txt", fields(summary), mtime=ended))
        out.append(entries)
    return out


def write_backup(dirpath, stem, volumes, **kw):
    """Renders and writes a backup; returns its volumes' entry lists."""
    rendered = render_backup(stem, volumes, **kw)
    write_volumes(dirpath, stem, rendered)
    return rendered


def write_volumes(dirpath, stem, rendered, zip64="auto"):
    for n, entries in enumerate(rendered):
        write_zip(os.path.join(dirpath, volume_name(stem, n)), entries, zip64)


def find(entries, name):
    name = name.encode() if isinstance(name, str) else name
    for i, e in enumerate(entries):
        if e.name == name:
            return i
    raise KeyError(name)


def expected_of(files):
    return {f.path: hashlib.sha256(f.data).hexdigest() for f in files}


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------

FULL = "F20260101T000000Z"
DIFF = "D20260102T000000Z"
MSG = f"{MAILDIR}/john/INBOX/#msgs"
CASES = []  # (name, valid, what, function(dirpath) -> expected dict or None)


def case(name, valid, what):
    def register(fn):
        CASES.append((name, valid, what, fn))
        return fn
    return register


def good_full(d):
    files = install()
    write_backup(d, FULL, [files])
    return files


def good_split(d):
    files = install()
    write_backup(d, FULL, [files[:4], files[4:7], files[7:]])
    return files


def diff_state():
    """The install one day later: john's third message deleted, his
    index.fld rewritten. Returns (state files, differential rows, stored)."""
    old = install()
    changed = by_path(old)[f"{MAILDIR}/john/INBOX/index.fld"]
    gone = by_path(old)[f"{MSG}/00000003.eml"]
    msgs = [(n, by_path(old)[f"{MSG}/{n:08x}.eml"].data,
             by_path(old)[f"{MSG}/{n:08x}.eml"].secs) for n in (1, 2)]
    new_index = File(changed.path, index_fld(msgs), 1767250000, 250000000)
    state, rows = [], []
    for f in old:
        if f is gone:
            continue
        if f is changed:
            state.append(new_index)
            rows.append(row(new_index, 0))
        else:
            state.append(f)
            rows.append(row(f, "base"))
    rows.append(row(gone, "deleted"))
    return state, rows, [new_index]


def good_chain(d):
    good_full(d)
    state, rows, stored = diff_state()
    write_backup(d, DIFF, [stored], rows=rows, base=FULL)
    return state


def full_with(d, files, stem=FULL, zip64="auto", **kw):
    rendered = render_backup(stem, [files], **kw)
    write_volumes(d, stem, rendered, zip64)
    return rendered


def read_good_full_bytes(d):
    tmp = os.path.join(d, ".tmp-good")
    os.mkdir(tmp)
    good_full(tmp)
    with open(os.path.join(tmp, FULL + ".zip"), "rb") as f:
        data = f.read()
    shutil.rmtree(tmp)
    return data


@case("good-full", True, "valid full backup (control case: verify and restore accept)")
def _(d):
    return expected_of(good_full(d))


@case("good-split", True, "valid full split into 3 standalone volumes; catalog and totals in .2.zip")
def _(d):
    return expected_of(good_split(d))


@case("good-chain", True, "valid full + differential (base rows, 1 changed file stored, 1 deleted row)")
def _(d):
    return expected_of(good_chain(d))


@case("zip-slip", False, "@backup/store/../../evil.txt entry, listed in an otherwise consistent catalog")
def _(d):
    full_with(d, install() + [File("store/../../evil.txt", b"evil\n", 1766500000)])


@case("absolute", False, "entry with an absolute name /tmp/evil.txt")
def _(d):
    (entries,) = render_backup(FULL, [install()])
    entries.insert(find(entries, ".catalog.tsv"), Entry("/tmp/evil.txt", b"evil\n",
                                                        mtime=1766500000))
    write_volumes(d, FULL, [entries])


@case("drive-letter", False, "entry @backup/C:/evil.txt (drive letter), listed in the catalog")
def _(d):
    full_with(d, install() + [File("C:/evil.txt", b"evil\n", 1766500000)])


@case("symlink", False, "a message entry is a symlink (mode 0120777) to /etc/passwd; catalog consistent")
def _(d):
    files = install()
    i = [f.path for f in files].index(f"{MSG}/00000001.eml")
    files[i] = File(files[i].path, b"/etc/passwd", files[i].secs, files[i].nanos,
                    mode=MODE_SYMLINK)
    full_with(d, files)


@case("duplicate", False, "the entry @backup/users.cfg twice (same content; one catalog row)")
def _(d):
    (entries,) = render_backup(FULL, [install()])
    i = find(entries, "@backup/users.cfg")
    entries.insert(i + 1, install()[1].entry())
    write_volumes(d, FULL, [entries])


@case("nul-name", False, "entry name containing a NUL byte (.../00000004\\0.eml); raw NUL in the catalog row")
def _(d):
    full_with(d, install() + [File(f"{MSG}/00000004\x00.eml", b"nul\r\n", 1766500000)])


@case("newline-name", False, "entry .../#msgs/a\\nb.eml (newline in the name), catalog row with the \\n escape")
def _(d):
    full_with(d, install() + [File(f"{MSG}/a\nb.eml", b"newline\r\n", 1766500000)])


@case("name-mismatch", False, "local header name .../#msgs/../../evil.e differs from central name .../#msgs/00000001.eml")
def _(d):
    files = install()
    f = by_path(files)[f"{MSG}/00000001.eml"]
    f.opts["local_name"] = f"@backup/{MSG}/../../evil.e"
    full_with(d, files)


@case("size-lie", False, "headers and catalog claim 10 bytes (crc of 10 zeros); the deflate data expands to 1 MiB")
def _(d):
    packed = deflate_chunks([bytes(1 << 20)])
    lie = (zlib.crc32(bytes(10)), 10)
    full_with(d, install() + [File(f"{MSG}/00000004.eml", secs=1766500000,
                                   packed=packed, claim=lie)])


@case("bomb", False, "legal but huge: a message of 200 MiB of zeros (~200 KB deflated), correct catalog row")
def _(d):
    packed = deflate_chunks(bytes(1 << 20) for _ in range(200))
    full_with(d, install() + [File(f"{MSG}/00000004.eml", secs=1766500000,
                                   packed=packed)])


@case("many-entries-no-zip64", False, "100,000 entries (99,997 1-byte stored messages) without ZIP64: end record says 34464")
def _(d):
    files = []
    for n in range(100000 - 3):
        files.append(File(f"{MSG}/{n:08x}.eml", b"x", 1766000000, 0,
                          method=STORE, timestamp_extra=False))
    full_with(d, files, zip64=False)


@case("no-version", False, "a foreign plain ZIP (hello.txt, docs/readme.txt) named like a full")
def _(d):
    write_zip(os.path.join(d, FULL + ".zip"),
              [Entry("hello.txt", b"hello\n", mtime=1767225600),
               Entry("docs/readme.txt", b"Not a backup.\n", mtime=1767225600)])


@case("garbage", False, "64 KiB of random bytes named F20260101T000000Z.zip")
def _(d):
    with open(os.path.join(d, FULL + ".zip"), "wb") as f:
        f.write(random.Random(64).randbytes(64 << 10))


@case("future-garbage", True, "the good full plus F20990101T000000Z.zip of random bytes (only the good full is valid)")
def _(d):
    files = good_full(d)
    with open(os.path.join(d, "F20990101T000000Z.zip"), "wb") as f:
        f.write(random.Random(2099).randbytes(64 << 10))
    return expected_of(files)


@case("unfinished-no-summary", False, "full without its .summary.txt (catalog present): an unfinished volume")
def _(d):
    (entries,) = render_backup(FULL, [install()])
    del entries[find(entries, ".summary.txt")]
    write_volumes(d, FULL, [entries])


@case("unfinished-status", False, ".summary.txt says status: incomplete")
def _(d):
    (entries,) = render_backup(FULL, [install()])
    i = find(entries, ".summary.txt")
    e = entries[i]
    entries[i] = Entry(e.name, e.data.replace(b"status: complete", b"status: incomplete"),
                       mtime=e.mtime)
    write_volumes(d, FULL, [entries])


@case("no-catalog", False, "mailvault full (format-version 1) without .catalog.tsv")
def _(d):
    (entries,) = render_backup(FULL, [install()])
    del entries[find(entries, ".catalog.tsv")]
    write_volumes(d, FULL, [entries])


@case("catalog-extra-row", False, "the catalog lists .../#msgs/00000009.eml, which the archive does not hold")
def _(d):
    files = install()
    ghost = File(f"{MSG}/00000009.eml", b"ghost\r\n", 1766500000)
    full_with(d, files, rows=[row(f, 0) for f in files] + [row(ghost, 0)])


@case("catalog-missing-row", False, "the archive holds @backup/.../#msgs/00000004.eml, which the catalog does not list")
def _(d):
    files = install()
    extra = File(f"{MSG}/00000004.eml", b"unlisted\r\n", 1766500000)
    full_with(d, files + [extra], rows=[row(f, 0) for f in files])


@case("catalog-crc-mismatch", False, "the catalog row of .../#msgs/00000002.eml has a wrong crc32")
def _(d):
    files = install()
    rows = [row(f, 0) for f in files]
    rows = [((r[0] ^ 0xFFFFFFFF),) + r[1:] if r[5] == f"{MSG}/00000002.eml" else r
            for r in rows]
    full_with(d, files, rows=rows)


@case("catalog-bomb", False, "the catalog has 3,000,000 rows (~250 MiB) for a 9-file archive")
def _(d):
    files = install()
    rows = [row(f, 0) for f in files]
    ghost_crc = zlib.crc32(b"x")
    total = 3000000

    def chunks():
        yield catalog_text(rows)
        prefix = f"{ghost_crc:08x}\t1\t1766000000.000000000\t0\t{MSG}/"
        n, end = 0x100, 0x100 + total - len(rows)
        while n < end:
            m = min(n + 50000, end)
            yield "".join(f"{prefix}{i:08x}.eml\n" for i in range(n, m)).encode()
            n = m

    ended = stem_secs(FULL) + 60
    catalog = Entry(".catalog.tsv", packed=deflate_chunks(chunks(), 9), mtime=ended)
    state = (total, sum(r[1] for r in rows) + (total - len(rows)))
    full_with(d, files, rows=rows, state_totals=state, catalog=catalog)


@case("catalog-comments", False, "a valid catalog padded with '#' comment lines to 2 GiB (found in review: comments did not count against the row bound)")
def _(d):
    files = install()
    rows = [row(f, 0) for f in files]
    ended = stem_secs(FULL) + 60
    catalog = Entry(".catalog.tsv", mtime=ended,
                    packed=deflate_chunks(repeated(catalog_text(rows), b"#\n", 2 << 30), 9))
    full_with(d, files, rows=rows, catalog=catalog)


@case("version-bomb", False, ".version.txt is valid text then 'note: x' lines up to 600 MiB (<1 MB deflated)")
def _(d):
    (entries,) = render_backup(FULL, [install()])
    i = find(entries, ".version.txt")
    e = entries[i]
    entries[i] = Entry(e.name, mtime=e.mtime,
                       packed=deflate_chunks(repeated(e.data, b"note: x\n", 600 << 20), 9))
    write_volumes(d, FULL, [entries])


@case("summary-bomb", False, ".summary.txt is valid fields then 'skipped: unreadable store/x' lines up to 100 MiB")
def _(d):
    (entries,) = render_backup(FULL, [install()])
    i = find(entries, ".summary.txt")
    e = entries[i]
    line = b"skipped: unreadable store/x\n"
    entries[i] = Entry(e.name, mtime=e.mtime,
                       packed=deflate_chunks(repeated(e.data, line, 100 << 20), 9))
    write_volumes(d, FULL, [entries])


@case("truncated-half", False, "the good full cut at half its length")
def _(d):
    data = read_good_full_bytes(d)
    with open(os.path.join(d, FULL + ".zip"), "wb") as f:
        f.write(data[:len(data) // 2])


@case("truncated-tail", False, "the good full without its last 30 bytes (end record damaged)")
def _(d):
    data = read_good_full_bytes(d)
    with open(os.path.join(d, FULL + ".zip"), "wb") as f:
        f.write(data[:-30])


@case("missing-middle", False, "good-split without .1.zip")
def _(d):
    good_split(d)
    os.remove(os.path.join(d, volume_name(FULL, 1)))


@case("missing-first", False, "good-split without the first volume .zip (leftover continuation volumes)")
def _(d):
    good_split(d)
    os.remove(os.path.join(d, volume_name(FULL, 0)))


@case("missing-last", False, "good-split without .2.zip, the volume holding the catalog and totals")
def _(d):
    good_split(d)
    os.remove(os.path.join(d, volume_name(FULL, 2)))


def corrupt(raw):
    """A one-byte change in the middle of a deflate stream. Prefers a change
    after which the stream still inflates, to the same length, so that only
    the CRC-32 reveals it; returns (offset in raw, new byte, how)."""
    want = zlib.decompress(raw, -15)
    mid = len(raw) // 2
    for off in itertools.chain.from_iterable((mid + k, mid - k - 1) for k in range(64)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[off] ^= 1 << bit
            try:
                d = zlib.decompressobj(-15)
                got = d.decompress(bytes(bad)) + d.flush()
            except zlib.error:
                continue
            if d.eof and not d.unused_data and len(got) == len(want) and got != want:
                return off, bad[off], "inflates to the same length; only the CRC-32 differs"
    return mid, raw[mid] ^ 0xFF, "deflate data damaged"


@case("bad-crc", False, "good full with one byte of .../#msgs/00000002.eml's deflate data changed (inflates; CRC-32 differs)")
def _(d):
    files = install()
    (entries,) = full_with(d, files)
    e = entries[find(entries, f"@backup/{MSG}/00000002.eml")]
    off, byte, _how = corrupt(e.raw)
    path = os.path.join(d, FULL + ".zip")
    with open(path, "r+b") as f:
        f.seek(e.data_offset + off)
        f.write(bytes([byte]))


@case("encrypted-entry", False, ".../#msgs/00000001.eml has the encryption flag (bit 0) set in both headers")
def _(d):
    files = install()
    by_path(files)[f"{MSG}/00000001.eml"].opts["flags"] = FLAG_UTF8 | FLAG_ENCRYPTED
    full_with(d, files)


@case("orphan-diff", False, "only the differential of good-chain; its base full is absent")
def _(d):
    _state, rows, stored = diff_state()
    write_backup(d, DIFF, [stored], rows=rows, base=FULL)


@case("kerio-native", True, "Kerio-style full: free-text .version.txt/.summary.txt, users.cfg at the root, no catalog")
def _(d):
    files = install()
    entries = [Entry(".version.txt", b"Kerio Connect 9.4.1 backup\n", mtime=stem_secs(FULL))]
    for f in files:
        entries.append(f.entry("" if f.path == "users.cfg" else "@backup/"))
    entries.append(Entry(".summary.txt", b"Backup finished\n", mtime=stem_secs(FULL) + 60))
    write_zip(os.path.join(d, FULL + ".zip"), entries)
    return expected_of(files)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir")
    p.add_argument("--case", action="append", metavar="NAME",
                   help="generate only this case (repeatable)")
    args = p.parse_args(argv)
    names = [c[0] for c in CASES]
    for n in args.case or ():
        if n not in names:
            p.error(f"unknown case {n!r}; cases: {', '.join(names)}")
    os.makedirs(args.outdir, exist_ok=True)
    listing = []
    for name, valid, what, fn in CASES:
        if args.case and name not in args.case:
            continue
        d = os.path.join(args.outdir, name)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.mkdir(d)
        expected = fn(d)
        if valid:
            with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
                json.dump(dict(sorted(expected.items())), f, indent=2)
                f.write("\n")
        listing.append({"case": name, "valid": valid, "what": what})
    with open(os.path.join(args.outdir, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(listing, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
