//! Full and differential backups: layout, contents, exclusions, what a
//! differential stores and how it records deletions.

use std::collections::BTreeSet;

use crate::util::*;

#[test]
fn full_of_samples_is_valid_complete_and_leaves_out_what_kerio_leaves_out() {
    let t = TestInstall::sample();
    let s = t.backup_ok("full", &[]);
    assert_eq!(s["type"], "full");
    let archives = t.archives();
    assert_eq!(archives.len(), 1);
    let zip = &archives[0];
    assert!(zip.file_name().unwrap().to_str().unwrap().starts_with('F'));
    assert_valid_zip(zip);

    let names = entry_names(zip);
    assert_eq!(names.first().map(String::as_str), Some(".version.txt"));
    assert_eq!(names.last().map(String::as_str), Some(".summary.txt"));
    assert_eq!(names[names.len() - 2], ".catalog.tsv");
    for n in &names[1..names.len() - 2] {
        assert!(n.starts_with("@backup/"), "{n}");
    }
    let has = |p: &str| names.iter().any(|n| n.starts_with(p));
    for wanted in [
        "@backup/mailserver.cfg",
        "@backup/users.cfg",
        "@backup/license/license.key",
        "@backup/sslca/",
        "@backup/sslcert/",
        "@backup/store/spamassassin/",
        "@backup/store/mail/example.com/#public/",
        "@backup/store/mail/example.com/#lists/announce/",
        "@backup/store/mail/example.com/john/Projects/2026/Q4 Migration/#msgs/",
        "@backup/store/mail/firma.cz/jana/Účtenky 2026/#msgs/",
        "@backup/store/mail/example.com/john/Calendar/#msgs/00000001.eml",
    ] {
        assert!(has(wanted), "{wanted} missing");
    }
    for unwanted in [
        "@backup/store/logs",
        "@backup/store/queue",
        "@backup/store/tmp",
        "@backup/store/mail/example.com/olduser",
    ] {
        assert!(!has(unwanted), "{unwanted} must not be backed up");
    }
    let summary = entry_text(zip, ".summary.txt");
    assert!(
        summary.contains("skipped: disabled-user store/mail/example.com/olduser\n"),
        "{summary}"
    );
    let version = entry_text(zip, ".version.txt");
    assert!(
        version.contains("type: full\n") && version.contains("format-version: 1\n"),
        "{version}"
    );

    // Byte-exact: what unzip extracts equals the install minus the exclusions.
    let out = t.tmp.path().join("x");
    let st = std::process::Command::new("unzip")
        .args(["-qq", zip.to_str().unwrap(), "-d", out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let expected = backed_up(tree(&t.install()));
    assert_eq!(tree(&out.join("@backup")), expected);
    // The catalog lists exactly the backed-up files, all in volume 0.
    let cat = catalog(zip);
    assert_eq!(
        cat.keys().cloned().collect::<BTreeSet<_>>(),
        expected.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert!(cat.values().all(|(w, _, _)| w == "0"));
}

#[test]
fn differential_stores_exactly_the_changes_and_records_deletions() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let changed = "store/mail/example.com/john/INBOX/#msgs/00000002.eml";
    let added = "store/mail/example.com/john/INBOX/#msgs/00000100.eml";
    let deleted = "store/mail/example.com/jane/INBOX/#msgs/00000003.eml";
    let touched_same = "store/mail/firma.cz/petr/INBOX/#msgs/00000001.eml";
    std::fs::write(t.path(changed), b"Subject: edited\r\n\r\nnew body\r\n").unwrap();
    std::fs::write(t.path(added), b"Subject: new\r\n\r\nhello\r\n").unwrap();
    std::fs::remove_file(t.path(deleted)).unwrap();
    // Same content, new mtime: stored again (size + mtime decide).
    set_mtime(&t.path(touched_same), 1_800_000_000);

    let s = t.backup_ok("differential", &[]);
    assert_eq!(s["type"], "differential");
    assert_eq!(s["deleted"], 1);
    let archives = t.archives();
    let d = archives
        .iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with('D'))
        .unwrap();
    let f = archives
        .iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with('F'))
        .unwrap();
    assert_valid_zip(d);
    let stored: BTreeSet<String> = entry_names(d)
        .into_iter()
        .filter_map(|n| n.strip_prefix("@backup/").map(str::to_string))
        .collect();
    let want: BTreeSet<String> = [changed, added, touched_same]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(stored, want);

    let version = entry_text(d, ".version.txt");
    let base_stem = f
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".zip");
    assert!(
        version.contains(&format!("base: {base_stem}\n")),
        "{version}"
    );
    let cat = catalog(d);
    assert_eq!(cat[deleted].0, "deleted");
    assert_eq!(cat[changed].0, "0");
    assert_eq!(cat["users.cfg"].0, "base");
    // The catalog's state (all but deleted rows) is exactly the install now.
    let now = backed_up(tree(&t.install()));
    let state: BTreeSet<&String> = cat
        .iter()
        .filter(|(_, v)| v.0 != "deleted")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(state, now.keys().collect::<BTreeSet<_>>());
    // The differential is cumulative: a second one still holds the first one's changes.
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000101.eml"),
        b"x",
    )
    .unwrap();
    let s2 = t.backup_ok("differential", &[]);
    assert_eq!(s2["files"], 4);
    assert_eq!(s2["base"], base_stem);
}

#[test]
fn differential_with_verify_content_catches_same_size_and_mtime_changes() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let p = t.path("store/mail/example.com/john/INBOX/#msgs/00000001.eml");
    let meta = std::fs::metadata(&p).unwrap();
    let mut content = std::fs::read(&p).unwrap();
    content[10] ^= 0x20;
    std::fs::write(&p, &content).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
    assert_eq!(
        t.backup_ok("differential", &[])["files"],
        0,
        "size+mtime alone cannot see it"
    );
    let s = t.backup_ok("differential", &["--verify-content"]);
    assert_eq!(s["files"], 1);
}

#[test]
fn differential_without_a_full_is_written_as_a_full_and_says_so() {
    let t = TestInstall::sample();
    let s = t.backup_ok("differential", &[]);
    assert_eq!(s["type"], "full");
    assert_eq!(s["requested"], "differential");
    let zip = &t.archives()[0];
    assert!(zip.file_name().unwrap().to_str().unwrap().starts_with('F'));
    assert!(entry_text(zip, ".version.txt").contains("requested: differential\n"));
    assert!(entry_text(zip, ".summary.txt").contains("note: differential requested but"));
}

#[test]
fn copy_backup_is_complete_and_named_c() {
    let t = TestInstall::sample();
    let s = t.backup_ok("copy", &[]);
    assert_eq!(s["type"], "copy");
    let zip = &t.archives()[0];
    assert!(zip.file_name().unwrap().to_str().unwrap().starts_with('C'));
    assert_valid_zip(zip);
}

#[test]
fn default_backup_dir_inside_the_store_is_left_out() {
    let t = TestInstall::sample();
    let install = t.install();
    ok(&[
        "backup",
        "full",
        "--install-dir",
        install.to_str().unwrap(),
        "-q",
    ]);
    ok(&[
        "backup",
        "full",
        "--install-dir",
        install.to_str().unwrap(),
        "-q",
    ]);
    let dir = install.join("store/backup");
    let mut zips: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "zip"))
        .collect();
    zips.sort();
    assert_eq!(zips.len(), 2);
    assert!(
        entry_names(&zips[1])
            .iter()
            .all(|n| !n.starts_with("@backup/store/backup"))
    );
}

#[test]
fn generated_store_full_and_differential_pass_every_validator() {
    let t = TestInstall::generated(1500, 7);
    let full = t.backup_ok("full", &[]);
    assert!(full["files"].as_u64().unwrap() > 1500);
    // Change 1 % of the messages.
    let mut n = 0;
    for e in walkdir::WalkDir::new(t.install().join("store")).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "eml") {
            n += 1;
            if n % 100 == 0 {
                std::fs::write(e.path(), b"Subject: replaced\r\n\r\nreplaced\r\n").unwrap();
            }
        }
    }
    let d = t.backup_ok("differential", &[]);
    assert_eq!(d["files"], n / 100);
    for z in t.archives() {
        assert_valid_zip(&z);
    }
}

#[test]
fn not_an_install_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "backup",
        "full",
        "--install-dir",
        tmp.path().to_str().unwrap(),
        "--backup-dir",
        tmp.path().join("b").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("is not a Kerio Connect install")
            && err.contains(tmp.path().to_str().unwrap()),
        "{err}"
    );
    assert!(
        err.contains("hint: pass the Kerio Connect install directory"),
        "{err}"
    );
}

#[test]
fn special_files_and_malformed_users_cfg_are_reported_not_fatal() {
    let t = TestInstall::sample();
    std::os::unix::fs::symlink(
        "/etc/passwd",
        t.path("store/mail/example.com/john/INBOX/#msgs/0000abcd.eml"),
    )
    .unwrap();
    std::fs::write(
        t.path("users.cfg"),
        b"<config><list name=\"User\"><listitem>",
    )
    .unwrap();
    let out = t.backup("full", &["--json"]);
    // A malformed users.cfg is a problem: exit 3, and disabled users are then backed up.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped = s["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|k| k["reason"] == "special-file"
            && k["path"].as_str().unwrap().ends_with("0000abcd.eml"))
    );
    assert!(
        s["notes"][0]
            .as_str()
            .unwrap()
            .contains("users.cfg could not be read")
    );
    let names = entry_names(&t.archives()[0]);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("@backup/store/mail/example.com/olduser/"))
    );
    assert!(!names.iter().any(|n| n.ends_with("0000abcd.eml")));
}

#[test]
fn unreadable_file_is_named_or_skipped_on_request() {
    // Root reads everything: run the backup as nobody.
    let t = TestInstall::sample();
    let st = std::process::Command::new("chmod")
        .args(["-R", "a+rwX", t.tmp.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let secret = t.path("store/mail/example.com/jane/INBOX/#msgs/00000002.eml");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let as_nobody = |extra: &[&str]| {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_mailvault"),
            "backup",
            "full",
        ]);
        c.args([
            "--install-dir",
            t.install().to_str().unwrap(),
            "--backup-dir",
            t.backups().to_str().unwrap(),
        ]);
        c.args(extra).output().unwrap()
    };
    let out = as_nobody(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot read")
            && err.contains("00000002.eml")
            && err.contains("--skip-unreadable"),
        "{err}"
    );
    assert!(
        t.archives().is_empty(),
        "nothing under a final name after a failed backup"
    );
    assert!(
        !t.backups().exists(),
        "a failed first run leaves no backup directory (nor temporaries) behind"
    );

    let out = as_nobody(&["--skip-unreadable", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        s["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["reason"] == "unreadable"
                && k["path"].as_str().unwrap().ends_with("00000002.eml"))
    );
    assert_valid_zip(&t.archives()[0]);
}

#[test]
fn full_disk_is_a_clear_error_and_leaves_nothing_behind() {
    // A 96 KiB tmpfs cannot hold the sample's 160 KiB archive. The tests run as root (CI too).
    let t = TestInstall::sample();
    let disk = SmallDisk::new(t.tmp.path().join("small"), "96k");
    let dir = disk.path.join("backups");
    let out = run(&[
        "backup",
        "full",
        "--install-dir",
        t.install().to_str().unwrap(),
        "--backup-dir",
        dir.to_str().unwrap(),
    ]);
    let left = dir.exists();
    drop(disk);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("No space left on device") && err.contains("hint: the disk is full"),
        "{err}"
    );
    assert!(!err.contains("ZipWriter"), "no library noise: {err}");
    assert!(
        !left,
        "no archive, no temporary and no backup directory left by a failed first run"
    );
}

#[test]
fn a_file_that_vanishes_during_the_backup_is_listed_and_the_archive_stays_valid() {
    let t = TestInstall::generated(3000, 5);
    // The last mailbox in archive order; its files are read last.
    let last = t.install().join("store/mail/d2.example.com/user003");
    let mut victims: Vec<std::path::PathBuf> = walkdir::WalkDir::new(&last)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    victims.sort();
    let child = t.spawn_backup("full", &["--threads", "1", "--json"], true);
    let lock = t.backups().join(".mailvault.lock");
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("pid")) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Past the scan (metadata only, milliseconds), long before the writer reaches the last mailbox.
    std::thread::sleep(std::time::Duration::from_millis(150));
    for v in &victims {
        std::fs::remove_file(v).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vanished: Vec<&str> = s["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["reason"] == "vanished")
        .map(|k| k["path"].as_str().unwrap())
        .collect();
    assert!(!vanished.is_empty());
    assert!(
        vanished
            .iter()
            .all(|p| p.starts_with("store/mail/d2.example.com/user003/")),
        "{vanished:?}"
    );
    let zip = &t.archives()[0];
    assert_valid_zip(zip);
    let cat = catalog(zip);
    assert!(
        vanished.iter().all(|p| !cat.contains_key(*p)),
        "a vanished file is not in the catalog"
    );
    ok(&["verify", zip.to_str().unwrap()]);
}

#[test]
fn names_that_cannot_be_archive_paths_are_skipped_and_reported() {
    use std::os::unix::ffi::OsStrExt;
    let t = TestInstall::sample();
    let msgs = t.path("store/mail/example.com/john/INBOX/#msgs");
    std::fs::write(
        msgs.join(std::ffi::OsStr::from_bytes(b"bad-\xff-name.eml")),
        b"x",
    )
    .unwrap();
    std::fs::write(msgs.join("back\\slash.eml"), b"x").unwrap();
    let out = t.backup("full", &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons: Vec<&str> = s["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"not-utf8") && reasons.contains(&"unsafe-name"),
        "{reasons:?}"
    );
    assert_valid_zip(&t.archives()[0]);
}

#[test]
fn zstd_and_store_compression_round_trip() {
    for (method, zip_method) in [("zstd", 93), ("store", 0)] {
        let t = TestInstall::sample();
        t.backup_ok("full", &["--compression", method]);
        let zip = &t.archives()[0];
        // Info-ZIP unzip 6.0 cannot read zstd; 7-Zip can (documented).
        let out = std::process::Command::new("7z")
            .args(["t", "-bso0", "-bsp0"])
            .arg(zip)
            .output()
            .unwrap();
        assert!(out.status.success(), "7z rejects the {method} archive");
        if method == "store" {
            assert_valid_zip(zip);
        }
        let methods = std::process::Command::new("python3")
            .args(["-c", "import zipfile,sys\nprint(sorted({i.compress_type for i in zipfile.ZipFile(sys.argv[1]).infolist() if i.filename.startswith('@backup/')}))"])
            .arg(zip)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&methods.stdout).trim(),
            format!("[{zip_method}]"),
            "{method}"
        );
        ok(&["verify", zip.to_str().unwrap()]);
        let into = t.tmp.path().join("into");
        kms_ok(&[
            "--into",
            into.to_str().unwrap(),
            "-q",
            zip.to_str().unwrap(),
        ]);
        assert_eq!(
            tree(&into.join("store/mail/example.com/john")),
            tree(&t.path("store/mail/example.com/john"))
        );
    }
}
