//! `mailvault migrate` end to end: from a full + differential chain and from
//! a live install onto an empty directory (verified equal, byte for byte,
//! the source untouched), the hostname and path rewrites in mailserver.cfg
//! (every other byte kept, both .cfg files still parse), and how it can
//! lose data: a target that is not empty, a target inside the source, a
//! dry run, a damaged archive, a forced target (nothing there removed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A realistic `Server` table (hostname and paths, as a Kerio install has
/// them) in front of the sample's lists, with a comment and an unrelated
/// path that only shares a prefix; returns the file's new text.
fn with_server_table(install: &Path) -> String {
    let p = install.join("mailserver.cfg");
    let text = std::fs::read_to_string(&p).unwrap();
    let table = "<config>\n  <!-- identity: edited by hand 2026-11-01 -->\n  <table name=\"Server\">\n    <variable name=\"Hostname\">mail.example.com</variable>\n    <variable name=\"StoreDir\">/opt/kerio/mailserver/store</variable>\n    <variable name=\"BackupDir\">/opt/kerio/mailserver/store/backup</variable>\n    <variable name=\"ArchiveDir\">/opt/kerio/mailserver2/archive</variable>\n    <variable name=\"Banner\">mail.example.com ESMTP</variable>\n  </table>\n";
    let new = text.replacen("<config>\n", table, 1);
    assert_ne!(new, text);
    std::fs::write(&p, &new).unwrap();
    new
}

/// Changes between the full and the differential: a new message, an edited
/// one, a removed one, an edited users.cfg.
fn change(t: &TestInstall) {
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000100.eml"),
        b"Subject: after the full\r\n\r\nx\r\n",
    )
    .unwrap();
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000002.eml"),
        b"Subject: edited\r\n\r\ny\r\n",
    )
    .unwrap();
    std::fs::remove_file(t.path("store/mail/example.com/jane/INBOX/#msgs/00000001.eml")).unwrap();
    std::fs::write(
        t.path("users.cfg"),
        std::fs::read_to_string(t.path("users.cfg")).unwrap() + "<!-- edited -->\n",
    )
    .unwrap();
}

fn migrate(args: &[&str]) -> Output {
    run(&[&["migrate"], args].concat())
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// Asserts the report says every mailbox and config file is equal, and
/// that it compared the mailboxes the source has.
fn assert_all_equal(v: &serde_json::Value, mailboxes: &[&str]) {
    let rows = v["mailboxes"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|m| m["mailbox"].as_str().unwrap())
        .collect();
    for m in mailboxes {
        assert!(names.contains(m), "{m} not in the report: {names:?}");
    }
    for m in rows {
        assert_eq!(m["equal"], true, "{m}");
        assert_eq!(m["items_source"], m["items_target"], "{m}");
        assert_eq!(m["bytes_source"], m["bytes_target"], "{m}");
        assert!(m["items_source"].as_u64().unwrap() > 0, "{m}");
    }
    for c in v["config"].as_array().unwrap() {
        assert_eq!(c["present"], true, "{c}");
        assert_eq!(c["parses"], true, "{c}");
        assert_eq!(c["as_expected"], true, "{c}");
    }
    assert!(v["files"]["missing"].as_array().unwrap().is_empty());
    assert!(v["files"]["different"].as_array().unwrap().is_empty());
    assert_eq!(v["files"]["equal"], v["files"]["source"]);
}

/// Both config files parse with an XML reader nobody here wrote.
fn python_parses(path: &Path) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys,xml.etree.ElementTree as E; r=E.parse(sys.argv[1]).getroot(); assert r.tag=='config'; print(len(r.findall('.//variable')))",
            s(path),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file with its mtime, as a restore keeps them.
fn mtimes(root: &Path) -> BTreeMap<String, std::time::SystemTime> {
    snapshot(root)
        .into_iter()
        .map(|(k, (_, t))| (k, t))
        .collect()
}

#[test]
fn from_a_chain_equal_byte_for_byte_with_hostname_and_paths_rewritten() {
    let t = TestInstall::sample();
    let original_cfg = with_server_table(&t.install());
    t.backup_ok("full", &[]);
    change(&t);
    t.backup_ok("differential", &[]);
    let expected = backed_up(tree(&t.install()));
    let to = t.tmp.path().join("new");
    let out = migrate(&[
        "--from",
        s(&t.backups()),
        "--to",
        s(&to),
        "--hostname",
        "mail.example.net",
        "--rewrite-path",
        "/opt/kerio/mailserver=/srv/kerio",
        "--json",
    ]);
    // The sample's disabled user (olduser) is not in backups: listed as
    // not migrated, so exit 3, and everything else verified equal.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_only_the_disabled_user_is_missing(&json_of(&out));
    let v = json_of(&out);
    assert_all_equal(
        &v,
        &[
            "john@example.com",
            "jane@example.com",
            "petr@firma.cz",
            "#public@example.com",
        ],
    );
    assert_eq!(v["plan"]["source"]["chain"].as_array().unwrap().len(), 2);

    // The tree is what the backups hold, byte for byte, mtimes kept;
    // mailserver.cfg differs only in the rewritten values.
    let got = tree(&to);
    let mut want = expected.clone();
    let cfg = String::from_utf8(got["mailserver.cfg"].clone()).unwrap();
    want.remove("mailserver.cfg");
    let mut got_rest = got.clone();
    got_rest.remove("mailserver.cfg");
    assert_eq!(
        got_rest.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(got_rest == want, "a migrated file differs from the source");
    let src_times = mtimes(&t.install());
    for (rel, time) in mtimes(&to) {
        if rel != "mailserver.cfg" {
            assert_eq!(Some(&time), src_times.get(&rel), "mtime of {rel}");
        }
    }
    assert_eq!(
        got["users.cfg"],
        std::fs::read(t.path("users.cfg")).unwrap()
    );
    assert_eq!(
        cfg,
        original_cfg
            .replace(
                ">mail.example.com</variable>",
                ">mail.example.net</variable>"
            )
            .replace(">/opt/kerio/mailserver/store<", ">/srv/kerio/store<")
            .replace(
                ">/opt/kerio/mailserver/store/backup<",
                ">/srv/kerio/store/backup<"
            ),
        "only the rewritten values changed"
    );
    assert!(cfg.contains(">mail.example.net</variable>"));
    assert!(!cfg.contains(">mail.example.com</variable>"));
    assert!(cfg.contains(">/srv/kerio/store/backup</variable>"));
    assert!(!cfg.contains(">/opt/kerio/mailserver/store"));
    // Only whole values and whole path components.
    assert!(cfg.contains(">mail.example.com ESMTP<"));
    assert!(cfg.contains(">/opt/kerio/mailserver2/archive<"));
    assert!(cfg.contains("<!-- identity: edited by hand 2026-11-01 -->"));
    python_parses(&to.join("mailserver.cfg"));
    python_parses(&to.join("users.cfg"));
    let rewrites = v["rewrites"].as_array().unwrap();
    assert_eq!(rewrites.len(), 3, "{rewrites:?}");
    assert!(
        rewrites
            .iter()
            .any(|r| r["variable"] == "Hostname" && r["old"] == "mail.example.com")
    );
}

#[test]
fn from_a_live_install_equal_and_the_source_untouched() {
    let t = TestInstall::sample();
    with_server_table(&t.install());
    use std::os::unix::fs::PermissionsExt as _;
    let key = t.path("sslcert/server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // An empty folder is a folder too.
    std::fs::create_dir_all(t.path("store/mail/example.com/jane/Empty/#msgs")).unwrap();
    // Deployments: the store on a disk of its own, its logs elsewhere.
    let disk2 = t.tmp.path().join("disk2");
    std::fs::create_dir(&disk2).unwrap();
    std::fs::rename(t.path("store"), disk2.join("store")).unwrap();
    std::os::unix::fs::symlink(disk2.join("store"), t.path("store")).unwrap();
    let elsewhere = t.tmp.path().join("var-log");
    std::fs::rename(t.path("store/logs"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, t.path("store/logs")).unwrap();
    let before = snapshot(&t.install());
    let before_disk2 = snapshot(&disk2);
    let to = t.tmp.path().join("new");
    let out = migrate(&[
        "--from-install",
        s(&t.install()),
        "--to",
        s(&to),
        "--hostname",
        "mail.example.com=mail.example.net",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let v = json_of(&out);
    assert_all_equal(
        &v,
        &["john@example.com", "olduser@example.com", "jana@firma.cz"],
    );
    let jane = v["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mailbox"] == "jane@example.com")
        .unwrap();
    assert_eq!(jane["folders_source"], jane["folders_target"]);
    assert!(to.join("store/mail/example.com/jane/Empty/#msgs").is_dir());
    assert!(!to.join("store/logs").exists());
    assert!(
        !std::fs::symlink_metadata(to.join("store"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(snapshot(&t.install()), before, "the source was changed");
    assert_eq!(snapshot(&disk2), before_disk2, "the source was changed");
    assert!(!t.path(".kmsrecover.lock").exists());

    // Everything but logs, queue and tmp, the disabled user's mail too,
    // byte for byte with mtimes; mailserver.cfg only rewritten.
    let mut want: BTreeMap<String, (Vec<u8>, std::time::SystemTime)> = before;
    want.extend(before_disk2);
    want.retain(|k, _| {
        !["store/logs/", "store/queue/", "store/tmp/"]
            .iter()
            .any(|p| k.starts_with(p))
    });
    assert!(want.contains_key("store/mail/firma.cz/petr/INBOX/index.fld"));
    let mut got = snapshot(&to);
    let cfg = got.remove("mailserver.cfg").unwrap().0;
    let old_cfg = want.remove("mailserver.cfg").unwrap().0;
    assert!(got == want, "a copied file differs from the source");
    assert!(got.contains_key("store/mail/example.com/olduser/INBOX/index.fld"));
    assert_eq!(
        String::from_utf8(cfg).unwrap(),
        String::from_utf8(old_cfg)
            .unwrap()
            .replace(">mail.example.com<", ">mail.example.net<")
    );
    assert_eq!(
        std::fs::metadata(to.join("sslcert/server.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600,
        "the private key stays private"
    );
    assert!(!to.join(".kmsrecover.lock").exists());

    // A link inside a mailbox is not followed, and the run says what it left.
    let link = "store/mail/example.com/john/INBOX/#msgs/00000077.eml";
    std::os::unix::fs::symlink("/etc/passwd", t.path(link)).unwrap();
    let to2 = t.tmp.path().join("new2");
    let out = migrate(&["--from-install", s(&t.install()), "--to", s(&to2), "-q"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains(link), "{}", stdout(&out));
    assert!(std::fs::symlink_metadata(to2.join(link)).is_err());
}

#[test]
fn refuses_targets_that_would_lose_data_and_a_dry_run_writes_nothing() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let backups = t.backups();

    // A target that is not empty, without --force.
    let to = t.tmp.path().join("busy");
    std::fs::create_dir_all(to.join("store")).unwrap();
    std::fs::write(to.join("mailserver.cfg"), b"<config/>\n").unwrap();
    let before = snapshot(&to);
    let out = migrate(&["--from", s(&backups), "--to", s(&to)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(snapshot(&to), before);
    assert_eq!(std::fs::read_dir(&to).unwrap().count(), 2);

    // --dry-run: the plan, nothing written, not even the target directory.
    let fresh = t.tmp.path().join("fresh");
    let out = migrate(&[
        "--from",
        s(&backups),
        "--to",
        s(&fresh),
        "--dry-run",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["target"]["exists"], false);
    assert!(v["source"]["items"].as_u64().unwrap() > 50);
    assert!(!fresh.exists());
    // Also forced onto the busy one: what is in the way is listed, nothing moves.
    let out = migrate(&[
        "--from",
        s(&backups),
        "--to",
        s(&to),
        "--force",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("store/mail/example.com/olduser"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("mailserver.cfg"), "{}", stdout(&out));
    assert_eq!(snapshot(&to), before);
    assert_eq!(std::fs::read_dir(&to).unwrap().count(), 2);

    // A target inside the source install, or inside the backups.
    let src_before = snapshot(&t.install());
    for (from, to) in [
        (
            vec!["--from-install", s(&t.install())],
            t.path("store/new-install"),
        ),
        (vec!["--from-install", s(&t.install())], t.install()),
        (vec!["--from", s(&backups)], backups.join("new")),
    ] {
        let out = migrate(&[&from[..], &["--to", s(&to)]].concat());
        assert_eq!(out.status.code(), Some(2), "{to:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("inside"), "{}", stderr(&out));
    }
    assert!(!t.path("store/new-install").exists());
    assert!(!backups.join("new").exists());
    assert_eq!(snapshot(&t.install()), src_before);

    // A live source while its server runs: refused, nothing written.
    let out = migrate(&[
        "--from-install",
        s(&t.install()),
        "--to",
        s(&fresh),
        "--running-check",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("running"), "{}", stderr(&out));
    assert!(!fresh.exists());

    // A missing source: named.
    let missing = t.tmp.path().join("no-such-backups");
    let out = migrate(&["--from", s(&missing), "--to", s(&fresh)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no-such-backups"), "{}", stderr(&out));
    assert!(!fresh.exists());
    let out = migrate(&["--from-install", s(&missing), "--to", s(&fresh)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no-such-backups"), "{}", stderr(&out));
    assert!(!fresh.exists());

    // Usage: neither source, a bad rewrite, --hostname without an old name to find.
    assert_eq!(migrate(&["--to", s(&fresh)]).status.code(), Some(2));
    let out = migrate(&[
        "--from",
        s(&backups),
        "--to",
        s(&fresh),
        "--rewrite-path",
        "/opt/kerio",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = migrate(&[
        "--from",
        s(&backups),
        "--to",
        s(&fresh),
        "--hostname",
        "mail.example.net",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("OLD=NEW"), "{}", stderr(&out));
    assert!(!fresh.exists());
}

#[test]
fn a_damaged_archive_is_not_a_success_and_names_the_entry() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let zip = t.archives()[0].clone();
    let entry = "@backup/store/mail/example.com/john/INBOX/#msgs/00000002.eml";
    flip_byte_in_entry(&zip, entry);
    let to = t.tmp.path().join("new");
    let out = migrate(&["--from", s(&t.backups()), "--to", s(&to)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains(entry), "{}", stderr(&out));
    assert!(!to.exists(), "a failed migration leaves no half install");

    // --salvage: what is intact, the rest listed, exit 3.
    let out = migrate(&[
        "--from",
        s(&t.backups()),
        "--to",
        s(&to),
        "--salvage",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json_of(&out);
    let rel = "store/mail/example.com/john/INBOX/#msgs/00000002.eml";
    assert!(
        v["not_migrated"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["path"] == rel),
        "{}",
        v["not_migrated"]
    );
    let john = v["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mailbox"] == "john@example.com")
        .unwrap();
    assert_eq!(john["equal"], false);
    assert_eq!(
        john["items_target"].as_u64().unwrap() + 1,
        john["items_source"].as_u64().unwrap()
    );
    assert!(
        v["files"]["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == rel)
    );
    assert!(to.join("store/mail/example.com/jane/INBOX/#msgs").is_dir());
    // The table says so too, even with -q.
    let to2 = t.tmp.path().join("new2");
    let out = migrate(&[
        "--from",
        s(&t.backups()),
        "--to",
        s(&to2),
        "--salvage",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains(rel), "{}", stdout(&out));
}

#[test]
fn an_encrypted_local_backup_with_its_key() {
    let t = TestInstall::sample();
    let key = t.tmp.path().join("k.key");
    ok(&["key", "generate", "--out", s(&key)]);
    let enc = t.tmp.path().join("enc");
    t.backup_ok("full", &["--target", s(&enc), "--key", s(&key)]);
    change(&t);
    t.backup_ok("differential", &["--target", s(&enc), "--key", s(&key)]);
    assert!(
        std::fs::read_dir(&enc).unwrap().flatten().all(|e| e
            .file_name()
            .to_string_lossy()
            .ends_with(".enc")
            || e.file_name().to_string_lossy().starts_with('.')),
        "the backups are encrypted"
    );
    let to = t.tmp.path().join("new");
    let out = migrate(&["--from", s(&enc), "--to", s(&to), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--key"), "{}", stderr(&out));
    assert!(!to.exists());
    let out = run(&[
        "migrate",
        "--from",
        s(&enc),
        "--key",
        s(&key),
        "--to",
        s(&to),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_only_the_disabled_user_is_missing(&json_of(&out));
    assert_all_equal(&json_of(&out), &["john@example.com"]);
    assert!(tree(&to) == backed_up(tree(&t.install())));
}

#[test]
fn forced_target_keeps_everything_that_was_there() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    // A fresh install on the new host: program files, a default config,
    // a link where a directory goes, and a message of its own.
    let to = t.tmp.path().join("new");
    std::fs::create_dir_all(to.join("bin")).unwrap();
    std::fs::write(to.join("bin/mailserver"), b"#!/bin/sh\n").unwrap();
    std::fs::write(to.join("mailserver.cfg"), b"<config>default</config>\n").unwrap();
    std::os::unix::fs::symlink("/etc", to.join("license")).unwrap();
    let own = "store/mail/example.com/john/INBOX/#msgs/00000099.eml";
    std::fs::create_dir_all(to.join(own).parent().unwrap()).unwrap();
    std::fs::write(to.join(own), b"Subject: the new server's own\r\n\r\n").unwrap();
    let before: BTreeMap<String, Vec<u8>> = tree(&to);

    let out = migrate(&[
        "--from",
        s(&t.backups()),
        "--to",
        s(&to),
        "--force",
        "--json",
    ]);
    // The target's own message makes John's mailbox differ from the source.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json_of(&out);
    let john = v["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mailbox"] == "john@example.com")
        .unwrap();
    assert_eq!(john["equal"], false);
    assert!(
        john["differences"].to_string().contains("00000099.eml"),
        "{john}"
    );
    for m in v["mailboxes"].as_array().unwrap() {
        if m["mailbox"] != "john@example.com" {
            assert_eq!(m["equal"], true, "{m}");
        }
    }
    // Nothing that was there is gone: in place, or moved aside whole.
    let displaced: Vec<PathBuf> = std::fs::read_dir(&to)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("mailvault-migrate-displaced-")
        })
        .map(|e| e.path())
        .collect();
    assert_eq!(displaced.len(), 1);
    let aside = &displaced[0];
    assert_eq!(
        std::fs::read(aside.join("mailserver.cfg")).unwrap(),
        b"<config>default</config>\n"
    );
    assert_eq!(
        std::fs::read_link(aside.join("license")).unwrap(),
        Path::new("/etc")
    );
    assert_eq!(std::fs::read(to.join(own)).unwrap(), before[own]);
    assert_eq!(
        std::fs::read(to.join("bin/mailserver")).unwrap(),
        b"#!/bin/sh\n"
    );
    // What the backup holds is in place, through no link.
    assert!(
        !std::fs::symlink_metadata(to.join("license"))
            .unwrap()
            .is_symlink()
    );
    let got = tree(&to);
    for (rel, content) in backed_up(tree(&t.install())) {
        assert_eq!(got.get(&rel), Some(&content), "{rel}");
    }
    let moved: Vec<&str> = v["displaced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert!(moved.contains(&"mailserver.cfg") && moved.contains(&"license"));
    assert!(!to.join(".mailvault-migrate-staging").exists());
    assert!(!to.join(".kmsrecover.lock").exists());
}

/// Real mail nobody here wrote (the SpamAssassin corpus laid out as a Kerio
/// store, 5,545 messages): both ways verified equal, file for file.
#[test]
fn a_real_corpus_store_both_ways() {
    let Some(corpus) = corpus("MAILVAULT_TEST_SPAM_STORE") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let install = tmp.path().join("install");
    copy_tree(&corpus, &install);
    let backups = tmp.path().join("backups");
    ok(&[
        "backup",
        "full",
        "--install-dir",
        s(&install),
        "--backup-dir",
        s(&backups),
        "-q",
    ]);
    let want = tree(&install);
    for (name, from) in [
        ("from-backups", vec!["--from", s(&backups)]),
        ("from-install", vec!["--from-install", s(&install)]),
    ] {
        let to = tmp.path().join(name);
        let out = migrate(&[&from[..], &["--to", s(&to), "--json"]].concat());
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let v = json_of(&out);
        assert_all_equal(&v, &[]);
        let items: u64 = v["mailboxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["items_target"].as_u64().unwrap())
            .sum();
        assert!(items >= 5_000, "{name}: {items} items");
        assert!(
            tree(&to) == want,
            "{name}: the tree differs from the source"
        );
    }
}

/// The sample's one disabled user is listed as not migrated (backups leave
/// disabled mailboxes out), and nothing else is.
fn assert_only_the_disabled_user_is_missing(v: &serde_json::Value) {
    let missing = v["not_migrated"]
        .as_array()
        .or_else(|| v["plan"]["not_migrated"].as_array())
        .unwrap_or_else(|| panic!("no not_migrated list: {v}"));
    let paths: Vec<&str> = missing
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["store/mail/example.com/olduser"], "{v}");
    assert!(
        missing[0]["reason"]
            .as_str()
            .unwrap()
            .contains("--from-install")
    );
}
