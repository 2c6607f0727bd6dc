//! `mailvault search` and giving a found message back with `kmsrecover
//! --message` (issue 8), end to end: the SpamAssassin corpus laid out as a
//! Kerio store, backed up as a full, a copy and a differential; what search
//! finds is compared with what Python's `email` package (an independent
//! parser) reads from the same files; a message given back must appear
//! byte for byte under a new number with nothing else in the install
//! changed. Encrypted repositories, damaged entries and hostile names too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What Python's email package reads of one message.
#[derive(Debug, Clone)]
struct Seen {
    message_id: Option<String>,
    subject: String,
}

/// Message-ID and decoded Subject of every `#msgs/*.eml` under `install`.
fn oracle(install: &Path) -> BTreeMap<String, Seen> {
    let script = r"import os,sys,json
from email import policy
from email.parser import BytesHeaderParser
root=sys.argv[1]; out={}; p=BytesHeaderParser(policy=policy.default)
for dp,dn,fn in os.walk(os.path.join(root,'store','mail')):
    if os.path.basename(dp)!='#msgs': continue
    for f in fn:
        if not f.endswith('.eml'): continue
        path=os.path.join(dp,f)
        with open(path,'rb') as fh: m=p.parse(fh)
        def g(k):
            try:
                v=m.get(k)
                return None if v is None else str(v)
            except Exception:
                return None
        mid=g('Message-ID')
        out[os.path.relpath(path,root)]={'id':mid.strip().strip('<>').strip() if mid else None,'subject':g('Subject') or ''}
print(json.dumps(out))
";
    let out = Command::new("python3")
        .args(["-c", script, s(install)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: BTreeMap<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|(k, v)| {
            (
                k,
                Seen {
                    message_id: v["id"].as_str().map(str::to_string),
                    subject: v["subject"].as_str().unwrap().to_string(),
                },
            )
        })
        .collect()
}

/// `mailvault search LOCATION ARGS --json`: (exit code, document, stderr).
fn search(location: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = bin()
        .arg("search")
        .arg(location)
        .args(args)
        .arg("--json")
        .env_remove("MAILVAULT_KEY_FILE")
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("search --json prints JSON ({e}): {}", stdout(&out)));
    (out.status.code().unwrap(), doc, stderr(&out))
}

fn hit_paths(doc: &Value) -> BTreeSet<String> {
    doc["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect()
}

fn archives_of(hit: &Value) -> Vec<String> {
    hit["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// The mailbox (`store/mail/<domain>/<user>`) of a message path.
fn mailbox(path: &str) -> String {
    path.split('/').take(4).collect::<Vec<_>>().join("/")
}

/// The SpamAssassin store backed up as a full, then a copy, then (after a
/// few changes) a differential.
struct Chain {
    t: TestInstall,
    /// What Python reads of the store at the time of the full.
    before: BTreeMap<String, Seen>,
    full: String,
    copy: String,
    diff: String,
    /// A message unchanged since the full, with a unique Message-ID.
    known: String,
    /// A word of its subject found in 2 to 200 subjects, in several mailboxes.
    word: String,
    /// Another unchanged message of the same folder.
    other: String,
    /// A message added after the full (only in the differential).
    new_path: String,
    new_id: String,
    /// A message whose content changed after the full.
    changed: String,
}

const FOLDER: &str = "store/mail/d1.example.com/user01/INBOX";

fn chain() -> Option<Chain> {
    let spam = corpus("MAILVAULT_TEST_SPAM_STORE")?;
    let tmp = tempfile::tempdir().unwrap();
    // A copy: the corpus itself is never changed.
    copy_tree(&spam, &tmp.path().join("install"));
    let t = TestInstall { tmp };
    let before = oracle(&t.install());
    let ids = before.values().filter_map(|m| m.message_id.clone()).fold(
        BTreeMap::<String, usize>::new(),
        |mut m, id| {
            *m.entry(id).or_default() += 1;
            m
        },
    );
    let in_folder: Vec<&String> = before
        .keys()
        .filter(|k| k.starts_with(&format!("{FOLDER}/#msgs/")))
        .collect();
    assert!(in_folder.len() > 10, "{FOLDER} holds messages");
    // Not the highest number (a deleted last item's number is "free" again
    // for a folder whose status.fld does not record the next one).
    let mut pick = None;
    'outer: for p in &in_folder[..in_folder.len() - 1] {
        let m = &before[*p];
        if m.message_id.as_ref().is_none_or(|id| ids[id] != 1) {
            continue;
        }
        for w in m.subject.split(|c: char| !c.is_alphanumeric()) {
            if w.chars().count() < 5 || !w.chars().all(char::is_alphabetic) {
                continue;
            }
            let lw = w.to_lowercase();
            let with: Vec<&String> = before
                .iter()
                .filter(|(_, v)| v.subject.to_lowercase().contains(&lw))
                .map(|(k, _)| k)
                .collect();
            let mailboxes: BTreeSet<String> = with.iter().map(|p| mailbox(p)).collect();
            if (2..=200).contains(&with.len()) && mailboxes.len() >= 2 {
                pick = Some(((*p).clone(), w.to_string()));
                break 'outer;
            }
        }
    }
    let (known, word) = pick.expect("a message with a unique id and a shared subject word");
    let other = in_folder
        .iter()
        .rev()
        .skip(1)
        .find(|p| ***p != known)
        .map(|p| (*p).clone())
        .unwrap();

    t.backup_ok("full", &[]);
    let full = file_name(&t.archives()[0]);
    t.backup_ok("copy", &[]);
    let copy = file_name(t.archives().last().unwrap());

    // After the copy: one new message (an encoded subject), one changed.
    let new_dir = "store/mail/d2.example.com/user03/INBOX";
    let next = std::fs::read_dir(t.path(&format!("{new_dir}/#msgs")))
        .unwrap()
        .filter_map(|e| {
            u32::from_str_radix(e.unwrap().file_name().to_str()?.strip_suffix(".eml")?, 16).ok()
        })
        .max()
        .unwrap()
        + 1;
    let new_path = format!("{new_dir}/#msgs/{next:08x}.eml");
    let new_id = "only-in-the-differential.4711@mailvault.test".to_string();
    let body = format!(
        "From: =?utf-8?q?Ji=C5=99=C3=AD_Nov=C3=A1k?= <jiri@firma.cz>\r\nTo: user03@d2.example.com\r\n\
         Subject: =?utf-8?q?Zpr=C3=A1va_jen_v_DIFERENCI=C3=81LU?=\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\n\
         Message-ID: <{new_id}>\r\n\r\nAhoj.\r\n"
    );
    std::fs::write(t.path(&new_path), &body).unwrap();
    let changed = in_folder[2].clone();
    assert!(changed != known && changed != other);
    let mut c = b"X-Mailvault-Test: changed after the full\r\n".to_vec();
    c.extend(std::fs::read(t.path(&changed)).unwrap());
    std::fs::write(t.path(&changed), c).unwrap();
    t.backup_ok("differential", &[]);
    let diff = file_name(t.archives().last().unwrap());
    assert!(diff.starts_with('D') && copy.starts_with('C') && full.starts_with('F'));
    Some(Chain {
        t,
        before,
        full,
        copy,
        diff,
        known,
        word,
        other,
        new_path,
        new_id,
        changed,
    })
}

#[test]
fn search_finds_messages_in_every_archive_by_their_headers() {
    let Some(c) = chain() else { return };
    let b = c.t.backups();
    let id = c.before[&c.known].message_id.clone().unwrap();

    // By Message-ID: exactly that message, in the two archives storing it.
    let (code, doc, _) = search(&b, &["--message-id", &format!("<{id}>")]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(hit_paths(&doc), BTreeSet::from([c.known.clone()]));
    assert_eq!(
        archives_of(&doc["hits"][0]),
        [c.full.clone(), c.copy.clone()]
    );
    assert_eq!(doc["archives"].as_array().unwrap().len(), 3);

    // By a subject word in other letter case: what Python finds, no more.
    let expected: BTreeSet<String> = c
        .before
        .iter()
        .filter(|(_, v)| v.subject.to_lowercase().contains(&c.word.to_lowercase()))
        .map(|(k, _)| k.clone())
        .collect();
    let (code, doc, _) = search(&b, &["--subject", &c.word.to_uppercase()]);
    assert_eq!(code, 0);
    assert_eq!(hit_paths(&doc), expected, "--subject {}", c.word);
    assert!(expected.contains(&c.known));

    // --user keeps that mailbox only.
    let user = "user01@d1.example.com";
    let (code, doc, _) = search(&b, &["--subject", &c.word, "--user", user]);
    assert_eq!(code, 0);
    let mine: BTreeSet<String> = expected
        .iter()
        .filter(|p| mailbox(p) == mailbox(FOLDER))
        .cloned()
        .collect();
    assert!(!mine.is_empty() && mine.len() < expected.len());
    assert_eq!(hit_paths(&doc), mine);
    // Entries outside were not even read.
    assert!(doc["scanned"].as_u64().unwrap() < c.before.len() as u64 / 5);

    // Only in the differential: its archive alone; encoded words decoded.
    let (code, doc, _) = search(&b, &["--subject", "jen v diferenciálu"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(hit_paths(&doc), BTreeSet::from([c.new_path.clone()]));
    let hit = &doc["hits"][0];
    assert_eq!(archives_of(hit), vec![c.diff.clone()]);
    assert_eq!(hit["message_id"], c.new_id.as_str());
    assert_eq!(hit["from"], "Jiří Novák <jiri@firma.cz>");
    assert_eq!(hit["date"], "2026-11-24T10:00:00+01:00");
    let (_, doc, _) = search(
        &b,
        &[
            "--from",
            "NOVÁK",
            "--date-from",
            "2026-11-24",
            "--date-to",
            "2026-11-24",
        ],
    );
    assert_eq!(hit_paths(&doc), BTreeSet::from([c.new_path.clone()]));
    let (code, doc, _) = search(&b, &["--from", "novák", "--date-to", "2026-11-23"]);
    assert_eq!((code, doc["hits"].as_array().unwrap().len()), (3, 0));

    // Changed after the full: one row per content, each with its archives.
    let cid = c.before[&c.changed].message_id.clone().unwrap();
    let (_, doc, _) = search(&b, &["--message-id", &cid]);
    let rows: Vec<(String, Vec<String>)> = doc["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["path"] == c.changed.as_str())
        .map(|h| (h["crc32"].as_str().unwrap().to_string(), archives_of(h)))
        .collect();
    assert_eq!(rows.len(), 2, "{doc}");
    let mut by_archives: Vec<Vec<String>> = rows.iter().map(|r| r.1.clone()).collect();
    by_archives.sort();
    assert_eq!(
        by_archives,
        [vec![c.diff.clone()], vec![c.full.clone(), c.copy.clone()]]
    );
    assert_ne!(rows[0].0, rows[1].0);

    // One archive given: only it is searched.
    let (code, doc, _) = search(&b.join(&c.full), &["--message-id", &c.new_id]);
    assert_eq!(code, 3, "nothing found: {doc}");
    assert_eq!(doc["archives"].as_array().unwrap().len(), 1);

    // The table: path and archives, a summary line.
    let out = bin()
        .args(["search", s(&b), "--message-id", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains(&c.known) && text.contains(&c.full), "{text}");
    assert!(text.contains("1 message found"), "{text}");
    assert!(
        stderr(&out).contains("searching"),
        "progress on stderr: {}",
        stderr(&out)
    );

    // Nothing found: exit 3; no criterion: usage, exit 2.
    let out = bin()
        .args([
            "search",
            s(&b),
            "--subject",
            "no subject has these words 5f3a",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).contains("0 messages found"),
        "{}",
        stdout(&out)
    );
    let out = bin().args(["search", s(&b)]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("criterion"), "{}", stderr(&out));
}

/// The snapshot of an install without the install lock's file (which
/// every writing run, kmsrecover's restores included, leaves behind).
fn state(install: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut m = snapshot(install);
    m.remove(".kmsrecover.lock");
    m
}

/// The next free item number of a live folder: past every file, record
/// and the next number status.fld holds.
fn next_free(folder: &Path) -> u32 {
    let mut n = 0;
    for e in std::fs::read_dir(folder.join("#msgs")).unwrap() {
        let name = e.unwrap().file_name().to_str().unwrap().to_string();
        if let Some(u) = name
            .strip_suffix(".eml")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
        {
            n = n.max(u);
        }
    }
    let index = std::fs::read_to_string(folder.join("index.fld")).unwrap_or_default();
    for l in index.lines() {
        if let Some(u) = l
            .strip_prefix('U')
            .and_then(|r| u32::from_str_radix(&r[..8], 16).ok())
        {
            n = n.max(u);
        }
    }
    let status = std::fs::read_to_string(folder.join("status.fld")).unwrap_or_default();
    let next = status
        .lines()
        .find_map(|l| {
            l.strip_prefix('U')
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        })
        .unwrap_or(0);
    (n + 1).max(next)
}

/// The `index.fld` record of item `uid`.
fn record(index: &str, uid: u32) -> Option<String> {
    index
        .lines()
        .find(|l| l.starts_with(&format!("U{uid:08x} ")))
        .map(str::to_string)
}

fn field(record: &str, tag: char) -> String {
    record
        .split(' ')
        .find_map(|f| f.strip_prefix(tag))
        .unwrap()
        .to_string()
}

/// Gives `path` back with kmsrecover and checks that exactly its original
/// bytes appeared under the next free number, with one new index.fld
/// record (flags as backed up), and that nothing else in the install changed.
fn give_back_checked(
    c: &Chain,
    path: &str,
    original: &[u8],
    mtime: std::time::SystemTime,
    flags: &str,
) -> String {
    let install = c.t.install();
    let folder = install.join(FOLDER);
    let uid = next_free(&folder);
    let new_rel = format!("{FOLDER}/#msgs/{uid:08x}.eml");
    assert!(!install.join(&new_rel).exists());
    let index_before = std::fs::read_to_string(folder.join("index.fld")).unwrap();
    let before = state(&install);
    let out = kms_ok(&[
        "--message",
        path,
        s(&c.t.backups()),
        "--install-dir",
        s(&install),
    ]);
    assert!(stdout(&out).contains(&new_rel), "{}", stdout(&out));
    let after = state(&install);
    let mut changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    changed.sort();
    let gone: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    assert!(gone.is_empty(), "removed: {gone:?}");
    let allowed = [
        new_rel.clone(),
        format!("{FOLDER}/index.fld"),
        format!("{FOLDER}/status.fld"),
    ];
    assert!(
        changed.iter().all(|k| allowed.contains(k)),
        "changed beyond the folder's new item, index.fld and status.fld: {changed:?}"
    );
    let (bytes, new_mtime) = &after[&new_rel];
    assert_eq!(bytes.as_slice(), original, "exactly the backed-up bytes");
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(secs(*new_mtime), secs(mtime), "its mtime kept");
    let index_after = std::fs::read_to_string(folder.join("index.fld")).unwrap();
    assert!(
        index_after.starts_with(&index_before),
        "old records kept as they were"
    );
    assert_eq!(
        index_after.lines().count(),
        index_before.lines().count() + 1,
        "exactly one record more"
    );
    let rec = record(&index_after, uid).unwrap();
    assert_eq!(field(&rec, 'F'), flags, "{rec}");
    assert_eq!(field(&rec, 'S'), original.len().to_string(), "{rec}");
    new_rel
}

#[test]
fn kmsrecover_gives_a_found_message_back_once() {
    let Some(c) = chain() else { return };
    let install = c.t.install();
    let b = c.t.backups();
    let folder = install.join(FOLDER);
    let index = std::fs::read_to_string(folder.join("index.fld")).unwrap();

    // Found by search, deleted live, given back: its number is free.
    let id = c.before[&c.known].message_id.clone().unwrap();
    let (_, doc, _) = search(&b, &["--message-id", &id]);
    let path = doc["hits"][0]["path"].as_str().unwrap().to_string();
    assert_eq!(path, c.known);
    let original = std::fs::read(install.join(&path)).unwrap();
    let mtime = std::fs::metadata(install.join(&path))
        .unwrap()
        .modified()
        .unwrap();
    let uid = u32::from_str_radix(&path[path.len() - 12..path.len() - 4], 16).unwrap();
    let flags = field(&record(&index, uid).unwrap(), 'F');
    std::fs::remove_file(install.join(&path)).unwrap();
    let given = give_back_checked(&c, &path, &original, mtime, &flags);

    // Again: already there, nothing changes, and it says so.
    let before = state(&install);
    let out = kms_ok(&["--message", &path, s(&b), "--install-dir", s(&install)]);
    assert!(stdout(&out).contains("already there"), "{}", stdout(&out));
    assert_eq!(state(&install), before, "a second run adds nothing");

    // Its number taken meanwhile by another message: that one stays, the
    // backed-up one comes back under the next free number.
    let other = std::fs::read(install.join(&c.other)).unwrap();
    let other_mtime = std::fs::metadata(install.join(&c.other))
        .unwrap()
        .modified()
        .unwrap();
    let ouid = u32::from_str_radix(&c.other[c.other.len() - 12..c.other.len() - 4], 16).unwrap();
    let oflags = field(&record(&index, ouid).unwrap(), 'F');
    let occupant = b"Subject: arrived meanwhile\r\n\r\nnew mail under a reused number\r\n";
    std::fs::write(install.join(&c.other), occupant).unwrap();
    give_back_checked(&c, &c.other, &other, other_mtime, &oflags);
    assert_eq!(std::fs::read(install.join(&c.other)).unwrap(), occupant);

    // Dry run and a running server: nothing changes.
    std::fs::remove_file(install.join(&given)).unwrap();
    let before = state(&install);
    let out = kms_ok(&[
        "--message",
        &c.known,
        s(&b),
        "--install-dir",
        s(&install),
        "--dry-run",
    ]);
    assert!(stdout(&out).contains("would add"), "{}", stdout(&out));
    let out = kms(&[
        "--message",
        &c.known,
        s(&b),
        "--install-dir",
        s(&install),
        "--running-check",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert_eq!(state(&install), before);

    // Into a named folder of the same mailbox instead.
    let out = kms_ok(&[
        "--message",
        &c.new_path,
        "--message",
        &c.new_path,
        s(&b),
        "--install-dir",
        s(&install),
        "--as-folder",
        "Restored",
    ]);
    let restored = "store/mail/d2.example.com/user03/Restored";
    assert!(stdout(&out).contains(restored), "{}", stdout(&out));
    assert_eq!(
        std::fs::read(install.join(format!("{restored}/#msgs/00000001.eml"))).unwrap(),
        std::fs::read(install.join(&c.new_path)).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(install.join(format!("{restored}/#msgs")))
            .unwrap()
            .count(),
        1,
        "a path given twice is given back once"
    );

    // Not in the chosen backup: the full does not hold the new message.
    let before = state(&install);
    let out = kms(&[
        "--message",
        &c.new_path,
        s(&b.join(&c.full)),
        "--install-dir",
        s(&install),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&c.new_path) && stderr(&out).contains("mailvault search"),
        "{}",
        stderr(&out)
    );
    // A path that is not a message, and one that climbs out: usage errors.
    for bad in [
        "store/mail/d1.example.com/user01/INBOX/index.fld",
        "store/mail/d1.example.com/user01/../../../../escape/#msgs/00000001.eml",
    ] {
        let out = kms(&["--message", bad, s(&b), "--install-dir", s(&install)]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
    }
    assert!(!c.t.tmp.path().join("escape").exists());
    assert_eq!(state(&install), before);
}

#[test]
fn search_reads_encrypted_backups_with_their_key() {
    let t = TestInstall::sample();
    let key = t.tmp.path().join("backup.key");
    ok(&["key", "generate", "--out", s(&key)]);
    let target = t.tmp.path().join("encrypted");
    ok(&[
        "backup",
        "full",
        "--install-dir",
        s(&t.install()),
        "--target",
        s(&target),
        "--key",
        s(&key),
    ]);
    assert!(std::fs::read_dir(&target).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".zip.enc")
    }));
    let seen = oracle(&t.install());
    // The disabled user is not backed up.
    let expected: BTreeSet<String> = seen
        .iter()
        .filter(|(k, v)| v.subject.to_lowercase().contains("test") && !k.contains("/olduser/"))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(expected.len() >= 2);
    let (code, doc, _) = search(&target, &["--key", s(&key), "--subject", "TeSt"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(hit_paths(&doc), expected);
    // Without the key: refused, exit 1.
    let out = bin()
        .args(["search", s(&target), "--subject", "testing"])
        .env_remove("MAILVAULT_KEY_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("key"), "{}", stderr(&out));

    // Found there, given back from there.
    let found = doc["hits"][0]["path"].as_str().unwrap().to_string();
    let original = std::fs::read(t.path(&found)).unwrap();
    std::fs::remove_file(t.path(&found)).unwrap();
    let out = kms_ok(&[
        "--message",
        &found,
        s(&target),
        "--key",
        s(&key),
        "--install-dir",
        s(&t.install()),
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = &v["folders"][0]["items"][0];
    assert_eq!(item["outcome"], "added", "{v}");
    let back = std::fs::read(t.path(item["path"].as_str().unwrap())).unwrap();
    assert_eq!(back, original);
}

#[test]
fn a_damaged_entry_is_listed_and_the_rest_still_found() {
    let t = TestInstall::sample();
    // A short message that is nearly all header block: the byte flipped in
    // the middle of its compressed data lies in its headers. (Shorter than
    // the first read, it is read whole, so its CRC-32 is checked too.)
    let victim = "store/mail/example.com/john/INBOX/#msgs/0000fff0.eml".to_string();
    let mut m = String::new();
    for i in 0..8u64 {
        m.push_str(&format!(
            "Received: from relay{i}.example.net ([192.0.2.{i}]) by mx.example.com id {:016x}\r\n",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ));
    }
    m.push_str(
        "Subject: mostly headers\r\nMessage-ID: <mostly-headers@example.com>\r\n\r\nHi.\r\n",
    );
    assert!(m.len() < 1024);
    std::fs::write(t.path(&victim), m).unwrap();
    t.backup_ok("full", &[]);
    let zip = t.archives()[0].clone();
    let john = "store/mail/example.com/john/";
    let mine: BTreeSet<String> = oracle(&t.install())
        .into_keys()
        .filter(|k| k.starts_with(john))
        .collect();
    assert!(mine.contains(&victim) && mine.len() > 5);
    flip_byte_in_entry(&zip, &format!("@backup/{victim}"));
    let (code, doc, _) = search(&t.backups(), &["--user", "john@example.com"]);
    assert_eq!(code, 3, "{doc}");
    let problems = doc["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{doc}");
    assert_eq!(problems[0]["entry"], format!("@backup/{victim}").as_str());
    assert_eq!(problems[0]["kind"], "damaged");
    let mut rest = mine.clone();
    rest.remove(&victim);
    assert_eq!(hit_paths(&doc), rest, "every other message still found");
    let out = bin()
        .args(["search", s(&t.backups()), "--user", "john@example.com"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    assert!(
        text.contains("NOT searched") && text.contains(&victim),
        "{text}"
    );
}

#[test]
fn hostile_entry_names_never_reach_the_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    let good = "store/mail/a.cz/jan/INBOX/#msgs/00000001.eml";
    let evil = "store/mail/a.cz/jan/../../../../escape/#msgs/00000001.eml";
    let entries = serde_json::json!([
        [".version.txt", "Kerio Connect 9.4.1 backup\n"],
        [
            format!("@backup/{good}"),
            "Subject: good \u{1b}[31mred\u{1b}[0m\r\nMessage-ID: <good@a.cz>\r\n\r\nbody\r\n"
        ],
        [
            format!("@backup/{evil}"),
            "Subject: evil\r\nMessage-ID: <evil@a.cz>\r\n\r\nbody\r\n"
        ],
        [".summary.txt", "Backup finished\n"],
    ]);
    let st = Command::new("python3")
        .args([
            "-c",
            "import zipfile,sys,json,warnings\nwarnings.simplefilter('ignore')\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED)\nfor n,c in json.loads(sys.argv[2]): z.writestr(n,c)\nz.close()",
            s(&dir.join("F20260101T000000Z.zip")),
            &entries.to_string(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let (code, doc, _) = search(&dir, &["--domain", "a.cz"]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(hit_paths(&doc), BTreeSet::from([good.to_string()]));
    assert!(
        doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "hostile"),
        "{doc}"
    );
    let (_, doc, _) = search(&dir, &["--message-id", "evil@a.cz"]);
    assert!(doc["hits"].as_array().unwrap().is_empty());
    // A terminal never gets the subject's escape sequences.
    let out = bin()
        .args(["search", s(&dir), "--domain", "a.cz"])
        .output()
        .unwrap();
    assert!(!out.stdout.contains(&0x1b), "{}", stdout(&out));
    assert!(stdout(&out).contains("good"));

    // Giving back from it: the hostile archive is refused whole, the
    // hostile path as a usage error; nothing is written anywhere.
    let install = tmp.path().join("install");
    std::fs::create_dir_all(install.join("store/mail/a.cz/jan/INBOX/#msgs")).unwrap();
    let before = state(&install);
    let out = kms(&["--message", good, s(&dir), "--install-dir", s(&install)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = kms(&["--message", evil, s(&dir), "--install-dir", s(&install)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(state(&install), before);
    assert!(!tmp.path().join("escape").exists());
}
