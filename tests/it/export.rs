//! `mailvault export` end to end, checked by readers that are not
//! mailvault's: Python's `mailbox` module (Maildir with its subfolders,
//! mbox) and a real Dovecot serving the export over IMAP on loopback
//! (`scripts/servers/dovecot.sh start`; without `MAILVAULT_TEST_DOVECOT_PORT`
//! that test prints a skip line, unless `MAILVAULT_TEST_SERVERS=required`).
//! Content is compared byte for byte with the store's `#msgs` files, flags
//! with `index.fld`. How an export could lose or damage data is tested too:
//! existing output never written into, a full disk leaving only complete
//! mailboxes, a damaged archive entry reported and left out whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::{
    SmallDisk, TestInstall, copy_tree, flip_byte_in_entry, ok, repo_root, run, stderr, stdout, tree,
};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One message of a store or of an export: its bytes and its flags as
/// Maildir letters (sorted).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Msg {
    content: Vec<u8>,
    flags: String,
}

/// mailbox (`user@domain`) -> folder (as users see it) -> messages, sorted.
type Mail = BTreeMap<String, BTreeMap<String, Vec<Msg>>>;

/// Flag letters of Kerio's `index.fld` bits, mapped here independently:
/// seen 0x1, answered 0x2, flagged 0x4, draft 0x10.
fn letters(bits: u32) -> String {
    let mut v: Vec<char> = [(0x1, 'S'), (0x2, 'R'), (0x4, 'F'), (0x10, 'D')]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, c)| *c)
        .collect();
    v.sort_unstable();
    v.into_iter().collect()
}

/// The mail of an install's store, read from the files: `#msgs/*.eml` with
/// flags and classes from the folder's `index.fld`; calendar and contact
/// items (by class) left out.
fn source_mail(install: &Path) -> (Mail, usize) {
    let mail_root = install.join("store/mail");
    let mut out: Mail = BTreeMap::new();
    let mut groupware = 0;
    for e in walkdir::WalkDir::new(&mail_root) {
        let e = e.unwrap();
        if !e.file_type().is_file() || e.path().parent().unwrap().file_name().unwrap() != "#msgs" {
            continue;
        }
        let rel = e.path().strip_prefix(&mail_root).unwrap().to_str().unwrap();
        let parts: Vec<&str> = rel.split('/').collect();
        let (domain, mailbox) = (parts[0], parts[1]);
        let folder = parts[2..parts.len() - 2].join("/");
        let uid = u32::from_str_radix(parts[parts.len() - 1].trim_end_matches(".eml"), 16).unwrap();
        let index = std::fs::read_to_string(e.path().parent().unwrap().with_file_name("index.fld"))
            .unwrap_or_default();
        let (mut flags, mut class) = (0u32, String::new());
        for line in index.lines() {
            let toks: Vec<&str> = line.split_whitespace().collect();
            if toks
                .first()
                .and_then(|t| t.strip_prefix('U'))
                .map(|h| u32::from_str_radix(h, 16).unwrap())
                == Some(uid)
            {
                for t in toks {
                    if let Some(f) = t.strip_prefix('F') {
                        flags = u32::from_str_radix(f, 16).unwrap();
                    }
                    if let Some(c) = t.strip_prefix('C') {
                        class = c.to_string();
                    }
                }
            }
        }
        if ["IPM.Appointment", "IPM.Task", "IPM.Contact"].contains(&class.as_str()) {
            groupware += 1;
            continue;
        }
        out.entry(format!("{mailbox}@{domain}"))
            .or_default()
            .entry(folder)
            .or_default()
            .push(Msg {
                content: std::fs::read(e.path()).unwrap(),
                flags: letters(flags),
            });
    }
    for m in out.values_mut().flat_map(|m| m.values_mut()) {
        m.sort();
    }
    (out, groupware)
}

/// An export read back by Python's `mailbox` (tests/data/export/read_back.py).
fn read_back(format: &str, out: &Path) -> Mail {
    let o = Command::new("python3")
        .arg(repo_root().join("tests/data/export/read_back.py"))
        .args([format, s(out)])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "read_back.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut mail: Mail = BTreeMap::new();
    for (mailbox, folders) in v.as_object().unwrap() {
        for (folder, msgs) in folders.as_object().unwrap() {
            let mut list: Vec<Msg> = msgs
                .as_array()
                .unwrap()
                .iter()
                .map(|m| Msg {
                    content: hex(m["hex"].as_str().unwrap()),
                    flags: m["flags"].as_str().unwrap().to_string(),
                })
                .collect();
            list.sort();
            mail.entry(mailbox.clone())
                .or_default()
                .insert(folder.clone(), list);
        }
    }
    mail
}

fn hex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

/// Undoes one level of mboxrd quoting (`>From ` -> `From `, `>>From ` ->
/// `>From `), which Python's mailbox leaves in place.
fn unquote(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    for line in content.split_inclusive(|&b| b == b'\n') {
        let q = line.iter().take_while(|&&b| b == b'>').count();
        if q > 0 && line[q..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// What an mbox holds of a message: its content, with a final line end.
fn as_in_mbox(m: &Msg) -> Msg {
    let mut content = m.content.clone();
    if !content.ends_with(b"\n") {
        content.push(b'\n');
    }
    Msg {
        content,
        flags: String::new(),
    }
}

/// Drops empty folders that are not in the source (the INBOX Maildir every
/// exported mailbox has, public folders included).
fn without_empty(mut m: Mail, source: &Mail) -> Mail {
    for (mb, folders) in &mut m {
        folders.retain(|f, msgs| {
            !msgs.is_empty() || source.get(mb).is_some_and(|s| s.contains_key(f))
        });
    }
    m
}

fn export(args: &[&str]) -> Output {
    let mut a = vec!["export"];
    a.extend_from_slice(args);
    run(&a)
}

fn export_json(args: &[&str]) -> Value {
    let mut a = vec!["export", "--json"];
    a.extend_from_slice(args);
    let o = ok(&a);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Sets flag bits of items in an `index.fld`.
fn set_flags(index: &Path, flags: &[(u32, u32)]) {
    let text = std::fs::read_to_string(index).unwrap();
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let uid = u32::from_str_radix(&l[1..9], 16).unwrap();
            match flags.iter().find(|(u, _)| *u == uid) {
                Some((_, f)) => {
                    let mut toks: Vec<String> = l.split(' ').map(str::to_string).collect();
                    toks[1] = format!("F{f:08x}");
                    toks.join(" ")
                }
                None => l.to_string(),
            }
        })
        .collect();
    std::fs::write(index, out.join("\n") + "\n").unwrap();
}

/// The sample install with every flag in use somewhere (the sample itself
/// has only \Seen).
fn flagged_sample() -> TestInstall {
    let t = TestInstall::sample();
    set_flags(
        &t.path("store/mail/example.com/john/INBOX/index.fld"),
        &[(1, 0x17), (4, 0x2), (7, 0x5), (0xa, 0x10)],
    );
    set_flags(
        &t.path("store/mail/firma.cz/petr/Odeslaná pošta/index.fld"),
        &[(1, 0x3), (2, 0x14)],
    );
    t
}

#[test]
fn sample_to_maildir_reads_back_in_python_with_flags() {
    let t = flagged_sample();
    let out = t.tmp.path().join("out");
    let v = export_json(&["--install-dir", s(&t.install()), "--out", s(&out)]);
    let (source, groupware) = source_mail(&t.install());
    let got = without_empty(read_back("maildir", &out), &source);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        source.keys().collect::<Vec<_>>()
    );
    for (mb, folders) in &source {
        assert_eq!(got[mb], *folders, "{mb}");
    }
    // Every flag made it, in Maildir's order.
    let all: String = got
        .values()
        .flat_map(|f| f.values())
        .flatten()
        .map(|m| m.flags.clone())
        .collect();
    for c in ['D', 'F', 'R', 'S'] {
        assert!(all.contains(c), "no message with flag {c}");
    }
    assert!(
        got["john@example.com"]["INBOX"]
            .iter()
            .any(|m| m.flags == "DFRS")
    );
    // File names carry the size Dovecot trusts, and the flags.
    let cur = out.join("example.com/john/cur");
    for e in std::fs::read_dir(&cur).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let size: u64 = name
            .split(",S=")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(size, e.metadata().unwrap().len(), "{name}");
        assert!(name.contains(":2,"), "{name}");
    }
    assert!(
        out.join("example.com/john/.Projects.2026.Q4 Migration/maildirfolder")
            .is_file()
    );
    // Nothing left in tmp/, no staging area left.
    for e in walkdir::WalkDir::new(&out) {
        let e = e.unwrap();
        let p = e.path().strip_prefix(&out).unwrap().to_str().unwrap();
        assert!(!p.contains(".mailvault-export"), "{p}");
        if e.file_type().is_file() {
            assert!(!p.contains("/tmp/"), "left in tmp: {p}");
        }
    }
    // Counts in the summary agree with the store.
    let msgs: usize = source.values().flat_map(|f| f.values()).map(Vec::len).sum();
    let bytes: usize = source
        .values()
        .flat_map(|f| f.values())
        .flatten()
        .map(|m| m.content.len())
        .sum();
    assert_eq!(v["messages"].as_u64().unwrap() as usize, msgs);
    assert_eq!(v["bytes"].as_u64().unwrap() as usize, bytes);
    assert_eq!(
        (v["calendar_items"].as_u64().unwrap() + v["contact_items"].as_u64().unwrap()) as usize,
        groupware
    );
    assert_eq!(v["complete"], true);
    assert_eq!(v["not_exported"].as_array().unwrap().len(), 0);
    let john = v["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["address"] == "john@example.com")
        .unwrap();
    assert_eq!(john["folders"], 7);
    // Message times are the items' creation times from index.fld (IMAP's INTERNALDATE).
    let first = std::fs::read_dir(&cur)
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_name().to_string_lossy().contains(".K00000001."))
        .unwrap();
    let mtime = first
        .metadata()
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(mtime, 0x6ae8_4300);
}

#[test]
fn sample_to_mbox_and_eml_read_back() {
    let t = flagged_sample();
    let (source, _) = source_mail(&t.install());
    let out = t.tmp.path().join("mbox");
    let o = ok(&[
        "export",
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--format",
        "mbox",
    ]);
    assert!(
        stdout(&o).contains("exported 8 mailbox(es)"),
        "{}",
        stdout(&o)
    );
    let got = read_back("mbox", &out);
    let mut quoted = 0;
    for (mb, folders) in &source {
        for (folder, msgs) in folders {
            let mut want: Vec<Msg> = msgs.iter().map(as_in_mbox).collect();
            want.sort();
            let raw = &got[mb][folder];
            quoted += raw
                .iter()
                .filter(|m| m.content.windows(6).any(|w| w == b"\n>From"))
                .count();
            let mut unquoted: Vec<Msg> = raw
                .iter()
                .map(|m| Msg {
                    content: unquote(&m.content),
                    flags: String::new(),
                })
                .collect();
            unquoted.sort();
            assert_eq!(unquoted, want, "{mb} {folder}");
        }
    }
    assert!(
        quoted > 0,
        "the sample has `From ` lines in bodies: they must be quoted"
    );
    assert!(
        out.join("example.com/john/Projects/2026/Q4 Migration.mbox")
            .is_file()
    );
    assert!(out.join("firma.cz/petr/Odeslaná pošta.mbox").is_file());
    let text = std::fs::read_to_string(out.join("example.com/john/INBOX.mbox")).unwrap();
    assert!(text.starts_with("From bbb@zzz.org "), "{}", &text[..80]);

    let out = t.tmp.path().join("eml");
    ok(&[
        "export",
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--format",
        "eml",
    ]);
    let files = tree(&out);
    for (mb, folders) in &source {
        let (user, domain) = mb.split_once('@').unwrap();
        for (folder, msgs) in folders {
            let mut exported: Vec<&Vec<u8>> = files
                .iter()
                .filter(|(k, _)| {
                    k.strip_prefix(&format!("{domain}/{user}/{folder}/"))
                        .is_some_and(|rest| !rest.contains('/') && rest.ends_with(".eml"))
                })
                .map(|(_, v)| v)
                .collect();
            exported.sort();
            let want: Vec<&Vec<u8>> = msgs.iter().map(|m| &m.content).collect();
            assert_eq!(exported, want, "{mb} {folder}");
        }
    }
    // Calendars and contacts: one file per folder, every item in it.
    let ics = &files["example.com/john/Calendar.ics"];
    let ics = String::from_utf8_lossy(ics);
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 2, "{ics}");
    assert_eq!(ics.matches("BEGIN:VCALENDAR").count(), 1);
    assert!(ics.contains("SUMMARY:Quarterly review\r\n"));
    let vcf = String::from_utf8_lossy(&files["example.com/john/Contacts.vcf"]).into_owned();
    assert_eq!(vcf.matches("BEGIN:VCARD").count(), 2);
    assert!(vcf.contains("FN:Petr Novák\r\n"));
}

#[test]
fn calendars_and_contacts_skipped_on_request() {
    let t = TestInstall::sample();
    let out = t.tmp.path().join("out");
    let v = export_json(&[
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--user",
        "john@example.com",
        "--skip-calendars-contacts",
    ]);
    assert_eq!(v["complete"], true, "skipping on request is not a failure");
    let skipped = v["skipped"].as_array().unwrap();
    let folders: Vec<&str> = skipped
        .iter()
        .map(|s| s["folder"].as_str().unwrap())
        .collect();
    assert_eq!(folders, ["Calendar", "Contacts"]);
    assert_eq!(skipped[0]["items"], 2);
    let files = tree(&out);
    assert!(
        files
            .keys()
            .all(|k| !k.ends_with(".ics") && !k.ends_with(".vcf")),
        "{:?}",
        files.keys()
    );
    assert!(!out.join("example.com/john/.Calendar").exists());
    assert_eq!(v["mailboxes"].as_array().unwrap().len(), 1);
}

#[test]
fn one_folder_and_dry_run() {
    let t = TestInstall::sample();
    let out = t.tmp.path().join("out");
    let o = ok(&[
        "export",
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--user",
        "john@example.com",
        "--folder",
        "Projects",
        "--dry-run",
    ]);
    assert!(
        stdout(&o)
            .contains("Projects/2026/Q4 Migration -> .Projects.2026.Q4 Migration (3 messages)"),
        "{}",
        stdout(&o)
    );
    assert!(!out.exists(), "a dry run writes nothing");
    ok(&[
        "export",
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--user",
        "john",
        "--domain",
        "example.com",
        "--folder",
        "Projects",
    ]);
    let got = read_back("maildir", &out);
    let folders: Vec<&String> = got["john@example.com"].keys().collect();
    assert_eq!(folders, ["INBOX", "Projects", "Projects/2026/Q4 Migration"]);
    assert!(got["john@example.com"]["INBOX"].is_empty());
    // Another mailbox into the same --out is fine.
    ok(&[
        "export",
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--user",
        "petr@firma.cz",
    ]);
    assert!(
        out.join("firma.cz/petr/.Odeslan&AOE- po&AWE-ta/cur")
            .is_dir()
    );
}

#[test]
fn bad_selections_and_outputs_are_refused() {
    let t = TestInstall::sample();
    let install = t.install();
    let out = t.tmp.path().join("out");
    // An unknown mailbox is named; nothing is created.
    for user in ["nobody@nowhere", "nobody@example.com"] {
        let o = export(&[
            "--install-dir",
            s(&install),
            "--out",
            s(&out),
            "--user",
            user,
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("no mailbox `{user}`")),
            "{}",
            stderr(&o)
        );
        assert!(!out.exists());
    }
    // --out inside the live store being exported is refused.
    let o = export(&[
        "--install-dir",
        s(&install),
        "--out",
        s(&install.join("store/mail/export")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("inside the store"), "{}", stderr(&o));
    assert!(!install.join("store/mail/export").exists());
    let o = export(&[
        "--install-dir",
        s(&install),
        "--out",
        s(&out),
        "--user",
        "john@example.com",
        "--folder",
        "Nope",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no folder `Nope`") && stderr(&o).contains("Sent Items"),
        "{}",
        stderr(&o)
    );
    let o = export(&[
        "--install-dir",
        s(&install),
        "--out",
        s(&out),
        "--folder",
        "INBOX",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--folder without --user is a usage error"
    );
    let o = export(&[
        "--install-dir",
        s(&t.tmp.path().join("none")),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a Kerio Connect install"),
        "{}",
        stderr(&o)
    );

    // --out is a file: refused, the file untouched.
    let file = t.tmp.path().join("file");
    std::fs::write(&file, "keep").unwrap();
    let o = export(&["--install-dir", s(&install), "--out", s(&file)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");

    // An existing mailbox directory is never written into: the whole
    // export is refused before anything is written.
    std::fs::create_dir_all(out.join("example.com/john")).unwrap();
    std::fs::write(out.join("example.com/john/notes.txt"), "mine").unwrap();
    let before = tree(&out);
    let o = export(&["--install-dir", s(&install), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("example.com/john` already exists"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree(&out), before);
    assert_eq!(
        std::fs::read_dir(out.join("example.com")).unwrap().count(),
        1
    );
    // A staging area left by an interrupted export blocks its mailbox too.
    std::fs::create_dir_all(out.join("firma.cz/.petr.mailvault-export")).unwrap();
    let o = export(&[
        "--install-dir",
        s(&install),
        "--out",
        s(&out),
        "--user",
        "petr@firma.cz",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(".petr.mailvault-export"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
}

/// Runs mailvault as `nobody` (root reads and writes everything).
fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_mailvault"),
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn unwritable_out_and_unreadable_message() {
    let t = TestInstall::sample();
    let st = Command::new("chmod")
        .args(["-R", "a+rwX", s(t.tmp.path())])
        .status()
        .unwrap();
    assert!(st.success());
    let locked = t.tmp.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let o = as_nobody(&[
        "export",
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&locked.join("out")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot create") && stderr(&o).contains("locked/out"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("hint: pick an --out directory"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);

    // An unreadable message: the rest is exported, it is listed, exit 3.
    let secret = t.path("store/mail/example.com/jane/INBOX/#msgs/00000002.eml");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let out = t.tmp.path().join("out");
    let o = as_nobody(&[
        "export",
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--user",
        "jane@example.com",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let missing = v["not_exported"].as_array().unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(
        missing[0]["path"],
        "store/mail/example.com/jane/INBOX/#msgs/00000002.eml"
    );
    assert!(
        missing[0]["reason"]
            .as_str()
            .unwrap()
            .contains("ermission denied"),
        "{missing:?}"
    );
    assert!(stderr(&o).contains("00000002.eml"), "{}", stderr(&o));
    assert_eq!(v["complete"], false);
    let got = read_back("maildir", &out);
    assert_eq!(got["jane@example.com"]["INBOX"].len(), 11);
}

#[test]
fn full_disk_leaves_only_complete_mailboxes() {
    let t = TestInstall::sample();
    let (source, _) = source_mail(&t.install());
    let disk = SmallDisk::new(t.tmp.path().join("small"), "160k");
    let out = disk.path.join("out");
    let o = export(&[
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--threads",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("No space left"), "{}", stderr(&o));
    assert!(stderr(&o).contains("hint:"), "{}", stderr(&o));
    // Whatever mailbox directory is there is complete; no staging area.
    let got = without_empty(read_back("maildir", &out), &source);
    assert!(!got.is_empty(), "some mailboxes fit");
    assert!(got.len() < source.len(), "not all fit");
    for (mb, folders) in &got {
        assert_eq!(*folders, source[mb], "{mb} is incomplete");
    }
    for d in std::fs::read_dir(&out).unwrap() {
        for e in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let n = e.unwrap().file_name().into_string().unwrap();
            assert!(!n.contains("mailvault-export"), "staging left: {n}");
        }
    }
    drop(disk);
}

/// The backup's first-volume archives, oldest first.
fn archives(t: &TestInstall) -> Vec<PathBuf> {
    t.archives()
}

#[test]
fn from_a_backup_chain_the_backed_up_state() {
    let t = flagged_sample();
    let install = t.install();
    let saved = t.tmp.path().join("saved");
    copy_tree(&install, &saved);
    t.backup_ok("full", &[]);
    // After the full: a new message (no index.fld record yet), then a differential.
    let new_msg = b"From: late@example.net\r\nSubject: after the full\r\n\r\nFrom now on\r\n";
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000040.eml"),
        new_msg,
    )
    .unwrap();
    t.backup_ok("differential", &[]);
    // Then a folder is deleted live.
    std::fs::remove_dir_all(t.path("store/mail/example.com/john/Projects")).unwrap();

    let out = t.tmp.path().join("out");
    let v = export_json(&[
        "--from",
        s(&t.backups()),
        "--out",
        s(&out),
        "--user",
        "john@example.com",
    ]);
    assert!(
        v["source"].as_str().unwrap().starts_with("backup F"),
        "{}",
        v["source"]
    );
    let got = read_back("maildir", &out);
    let (src, _) = source_mail(&saved);
    let john = &got["john@example.com"];
    assert_eq!(
        john["Projects"], src["john@example.com"]["Projects"],
        "the deleted folder comes from the backup"
    );
    assert_eq!(
        john["Projects/2026/Q4 Migration"],
        src["john@example.com"]["Projects/2026/Q4 Migration"]
    );
    let mut inbox = src["john@example.com"]["INBOX"].clone();
    inbox.push(Msg {
        content: new_msg.to_vec(),
        flags: String::new(),
    });
    inbox.sort();
    assert_eq!(
        john["INBOX"], inbox,
        "the differential's message is there, the full's flags too"
    );
    assert!(out.join("example.com/john/Calendar.ics").is_file());

    // One archive alone: the full, without the later message.
    let full = &archives(&t)[0];
    let out2 = t.tmp.path().join("out2");
    ok(&[
        "export",
        "--from",
        s(full),
        "--out",
        s(&out2),
        "--user",
        "john@example.com",
        "--format",
        "mbox",
    ]);
    let got = read_back("mbox", &out2);
    assert_eq!(got["john@example.com"]["INBOX"].len(), 12);
    assert_eq!(got["john@example.com"]["Projects"].len(), 2);

    // Disabled users are not in backups: naming one says so plainly.
    let o = export(&[
        "--from",
        s(&t.backups()),
        "--out",
        s(&out2),
        "--user",
        "olduser@example.com",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no mailbox `olduser@example.com`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn from_an_encrypted_backup_with_key() {
    let t = TestInstall::sample();
    let key = t.tmp.path().join("backup.key");
    ok(&["key", "generate", "--out", s(&key)]);
    let enc = t.tmp.path().join("encrypted");
    ok(&[
        "backup",
        "full",
        "--install-dir",
        s(&t.install()),
        "--target",
        s(&enc),
        "--key",
        s(&key),
    ]);
    assert!(std::fs::read_dir(&enc).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".zip.enc")
    }));
    let out = t.tmp.path().join("out");
    let o = export(&["--from", s(&enc), "--out", s(&out), "--domain", "firma.cz"]);
    assert_eq!(o.status.code(), Some(1), "without the key: {}", stderr(&o));
    assert!(stderr(&o).contains("key"), "{}", stderr(&o));
    assert!(!out.join("firma.cz").exists());
    let v = export_json(&[
        "--from",
        s(&enc),
        "--key",
        s(&key),
        "--out",
        s(&out),
        "--domain",
        "firma.cz",
    ]);
    assert_eq!(v["complete"], true);
    let (source, _) = source_mail(&t.install());
    let got = without_empty(read_back("maildir", &out), &source);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["jana@firma.cz", "petr@firma.cz"]
    );
    assert_eq!(got["petr@firma.cz"], source["petr@firma.cz"]);
    assert_eq!(got["jana@firma.cz"], source["jana@firma.cz"]);
}

#[test]
fn damaged_archive_entry_is_listed_and_left_out_whole() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let full = archives(&t)[0].clone();
    let damaged = "store/mail/example.com/john/INBOX/#msgs/00000007.eml";
    let entry = crate::util::entry_names(&full)
        .into_iter()
        .find(|n| n.ends_with(damaged))
        .unwrap();
    flip_byte_in_entry(&full, &entry);
    let (source, _) = source_mail(&t.install());
    for format in ["maildir", "mbox"] {
        let out = t.tmp.path().join(format);
        let o = export(&[
            "--from",
            s(&t.backups()),
            "--out",
            s(&out),
            "--user",
            "john@example.com",
            "--format",
            format,
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(3), "{format}: {}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let missing = v["not_exported"].as_array().unwrap();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert_eq!(missing[0]["path"], damaged);
        assert_eq!(missing[0]["folder"], "INBOX");
        assert!(stderr(&o).contains(damaged), "{}", stderr(&o));
        // The others are all there, intact; of the damaged one nothing.
        let got = read_back(format, &out);
        let lost = std::fs::read(t.path(damaged)).unwrap();
        let mut want: Vec<Msg> = source["john@example.com"]["INBOX"]
            .iter()
            .filter(|m| m.content != lost)
            .map(|m| {
                if format == "mbox" {
                    as_in_mbox(m)
                } else {
                    m.clone()
                }
            })
            .collect();
        want.sort();
        let mut inbox: Vec<Msg> = got["john@example.com"]["INBOX"]
            .iter()
            .map(|m| {
                if format == "mbox" {
                    Msg {
                        content: unquote(&m.content),
                        flags: String::new(),
                    }
                } else {
                    m.clone()
                }
            })
            .collect();
        inbox.sort();
        assert_eq!(inbox, want, "{format}");
        assert_eq!(got["john@example.com"]["Sent Items"].len(), 3);
    }
    assert_eq!(
        std::fs::read_dir(t.tmp.path().join("maildir/example.com/john/tmp"))
            .unwrap()
            .count(),
        0
    );
}

/// Dovecot's settings from target/servers/dovecot.env, or None (skip).
fn dovecot() -> Option<BTreeMap<&'static str, String>> {
    let keys = ["PORT", "USER", "PASSWORD", "MAILDIR", "OWNER"];
    if std::env::var("MAILVAULT_TEST_DOVECOT_PORT").is_err() {
        assert!(
            std::env::var("MAILVAULT_TEST_SERVERS").as_deref() != Ok("required"),
            "MAILVAULT_TEST_SERVERS=required but MAILVAULT_TEST_DOVECOT_PORT is unset: run scripts/servers/dovecot.sh start and source target/servers/dovecot.env"
        );
        eprintln!(
            "skipped: MAILVAULT_TEST_DOVECOT_PORT not set (scripts/servers/dovecot.sh start)"
        );
        return None;
    }
    Some(
        keys.iter()
            .map(|k| {
                (
                    *k,
                    std::env::var(format!("MAILVAULT_TEST_DOVECOT_{k}")).unwrap(),
                )
            })
            .collect(),
    )
}

/// What IMAP returns of a message: lines end in CRLF.
fn crlf(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 64);
    for (i, &b) in content.iter().enumerate() {
        if b == b'\n' && (i == 0 || content[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[test]
fn dovecot_serves_the_maildir_export() {
    let Some(env) = dovecot() else { return };
    let t = flagged_sample();
    let out = t.tmp.path().join("out");
    ok(&[
        "export",
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--domain",
        "example.com",
    ]);
    ok(&[
        "export",
        "--install-dir",
        s(&t.install()),
        "--out",
        s(&out),
        "--user",
        "petr@firma.cz",
    ]);
    let (source, _) = source_mail(&t.install());
    let imap_flag = |c: char| match c {
        'S' => "\\Seen",
        'R' => "\\Answered",
        'F' => "\\Flagged",
        'D' => "\\Draft",
        _ => unreachable!(),
    };
    let maildir = PathBuf::from(&env["MAILDIR"]);
    for (mailbox, expect_list) in [
        (
            "john@example.com",
            vec![
                "INBOX",
                "Sent Items",
                "Deleted Items",
                "Projects",
                "Projects/2026/Q4 Migration",
            ],
        ),
        ("petr@firma.cz", vec!["INBOX", "Odeslan&AOE- po&AWE-ta"]),
    ] {
        let (user, domain) = mailbox.split_once('@').unwrap();
        let _ = std::fs::remove_dir_all(&maildir);
        copy_tree(&out.join(domain).join(user), &maildir);
        let st = Command::new("chown")
            .args(["-R", &env["OWNER"], s(&maildir)])
            .status()
            .unwrap();
        assert!(st.success());
        let o = Command::new("python3")
            .arg(repo_root().join("tests/data/export/imap_fetch.py"))
            .args(["127.0.0.1", &env["PORT"], &env["USER"], &env["PASSWORD"]])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "imap_fetch.py: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let list: Vec<&str> = v["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        for name in &expect_list {
            assert!(
                list.iter()
                    .any(|l| l.ends_with(&format!("\"/\" \"{name}\""))
                        || l.ends_with(&format!("\"/\" {name}"))),
                "LIST lacks {name}: {list:?}"
            );
        }
        let folders = v["folders"].as_object().unwrap();
        assert!(
            !folders.contains_key("Calendar"),
            "calendar items are not mail: {list:?}"
        );
        assert_eq!(folders.len(), expect_list.len(), "{list:?}");
        for (folder, msgs) in &source[mailbox] {
            let wire = if folder == "Odeslaná pošta" {
                "Odeslan&AOE- po&AWE-ta"
            } else {
                folder.as_str()
            };
            let mut got: Vec<(Vec<u8>, Vec<String>)> = folders[wire]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        hex(m["hex"].as_str().unwrap()),
                        m["flags"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|f| f.as_str().unwrap().to_string())
                            .filter(|f| f != "\\Recent")
                            .collect(),
                    )
                })
                .collect();
            got.sort();
            let mut want: Vec<(Vec<u8>, Vec<String>)> = msgs
                .iter()
                .map(|m| {
                    let mut f: Vec<String> =
                        m.flags.chars().map(|c| imap_flag(c).to_string()).collect();
                    f.sort();
                    (crlf(&m.content), f)
                })
                .collect();
            want.sort();
            assert_eq!(got.len(), want.len(), "{mailbox} {folder}");
            assert!(
                got == want,
                "{mailbox} {folder}: IMAP returns other bytes or flags"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&maildir);
}

#[test]
fn a_calendar_items_attachments_are_named_as_left_out() {
    let t = TestInstall::sample();
    let cal = t.path("store/mail/example.com/john/Calendar");
    let item = "From: pm@example.com\r\nSubject: Kick-off\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\n\
BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:kickoff@example.com\r\n\
DTSTART:20261201T090000Z\r\nSUMMARY:Kick-off\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n--B\r\n\
Content-Type: application/pdf; name=\"agenda.pdf\"\r\nContent-Disposition: attachment; filename=\"agenda.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--B--\r\n";
    std::fs::write(cal.join("#msgs/00000003.eml"), item).unwrap();
    let mut index = std::fs::read_to_string(cal.join("index.fld")).unwrap();
    index.push_str(&format!(
        "U00000003 F00000000 S{} D6ae8d450 M6ae8d450 I0001 CIPM.Appointment\n",
        item.len()
    ));
    std::fs::write(cal.join("index.fld"), index).unwrap();
    let out = t.tmp.path().join("out");
    let o = export(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "--user",
        "john@example.com",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let missing = v["not_exported"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{v}");
    assert!(
        missing[0]["reason"]
            .as_str()
            .unwrap()
            .contains("agenda.pdf"),
        "{v}"
    );
    let ics = std::fs::read_to_string(out.join("example.com/john/Calendar.ics")).unwrap();
    assert!(ics.contains("UID:kickoff@example.com"), "{ics}");
}

#[test]
fn mail_filed_with_a_calendar_class_is_exported_as_mail() {
    let t = TestInstall::sample();
    let cal = t.path("store/mail/example.com/john/Calendar");
    let mail = "From: pm@example.com\r\nSubject: moved here by a client\r\nMessage-ID: <m@x>\r\n\r\nnot an appointment\r\n";
    std::fs::write(cal.join("#msgs/00000003.eml"), mail).unwrap();
    let mut index = std::fs::read_to_string(cal.join("index.fld")).unwrap();
    index.push_str(&format!(
        "U00000003 F00000001 S{} D6ae8d450 M6ae8d450 I0001 CIPM.Appointment\n",
        mail.len()
    ));
    std::fs::write(cal.join("index.fld"), index).unwrap();
    let out = t.tmp.path().join("out");
    let v = export_json(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "--user",
        "john@example.com",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(v["not_exported"].as_array().unwrap().len(), 0, "{v}");
    let cur = out.join("example.com/john/.Calendar/cur");
    let files: Vec<Vec<u8>> = std::fs::read_dir(&cur)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(files, [mail.as_bytes().to_vec()]);
    let ics = std::fs::read_to_string(out.join("example.com/john/Calendar.ics")).unwrap();
    assert!(!ics.contains("not an appointment"));
}
