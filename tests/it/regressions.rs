//! Regression tests of issue #6 ("Restores that never lose mail"), one per
//! defect found by adversarial trials, each named after it. Sections refer
//! to the issue's.

use std::path::{Path, PathBuf};

use crate::util::*;

fn kms_in(t: &TestInstall, args: &[&str], source: &Path) -> std::process::Output {
    let install = t.install();
    let mut a = vec!["--install-dir", install.to_str().unwrap()];
    a.extend_from_slice(args);
    a.push(source.to_str().unwrap());
    kms(&a)
}

fn first_volume(t: &TestInstall, letter: char) -> PathBuf {
    t.archives()
        .into_iter()
        .find(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(letter) && n.len() == 21
        })
        .unwrap()
}

// ---- section 2: no restore may lose data ----

/// (name, entries dropped, entries replaced with new content).
type Variant<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

#[test]
fn issue6_an_unfinished_or_catalogless_volume_is_refused_and_nothing_live_changes() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let good = first_volume(&t, 'F');
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000300.eml"),
        b"mail that arrived after the backup",
    )
    .unwrap();
    let status =
        entry_text(&good, ".summary.txt").replace("status: complete", "status: incomplete");
    let variants: [Variant<'_>; 3] = [
        ("no summary", vec![".summary.txt"], vec![]),
        ("no catalog", vec![".catalog.tsv"], vec![]),
        (
            "status incomplete",
            vec![],
            vec![(".summary.txt", status.as_str())],
        ),
    ];
    for (what, drop, replace) in variants {
        let dir = t.tmp.path().join(what.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join(good.file_name().unwrap());
        std::fs::copy(&good, &copy).unwrap();
        rewrite_zip(&copy, &drop, &replace);
        let before = snapshot(&t.install());
        for source in [&dir, &copy] {
            let out = kms_in(&t, &["--no-safety-copy"], source);
            assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
            assert!(
                stderr(&out).contains("unfinished") || stderr(&out).contains("no catalog"),
                "{what}: {}",
                stderr(&out)
            );
            assert!(
                snapshot(&t.install()) == before,
                "{what}: the live install changed"
            );
        }
        // The disabled user's mailbox, which no backup holds, is still there.
        assert!(t.path("store/mail/example.com/olduser").is_dir());
        let v = run(&["verify", dir.to_str().unwrap()]);
        assert_eq!(v.status.code(), Some(5), "{what}: verify agrees");
    }
}

#[test]
fn issue6_salvage_with_the_last_volume_missing_removes_nothing_and_exits_3() {
    let t = TestInstall::sample();
    t.backup_ok("full", &["--split-size", "64K"]);
    let source = snapshot(&t.install());
    let vols = t.archives();
    let last = last_volume(&vols);
    std::fs::remove_file(&last).unwrap();
    // Live changes after the backup: one new message, one edited.
    let new = "store/mail/example.com/john/INBOX/#msgs/00000301.eml";
    std::fs::write(t.path(new), b"arrived today").unwrap();
    std::fs::write(
        t.path("store/mail/firma.cz/petr/INBOX/#msgs/00000001.eml"),
        b"edited",
    )
    .unwrap();
    let before = snapshot(&t.install());
    let out = kms_in(&t, &["--salvage", "--no-safety-copy"], &t.backups());
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("catalog") && stdout(&out).contains("is lost"),
        "{}",
        stdout(&out)
    );
    let after = snapshot(&t.install());
    for k in before.keys() {
        assert!(after.contains_key(k), "salvage removed live file {k}");
    }
    assert_eq!(after[new].0, b"arrived today");
    // What it wrote is what the backup held, byte for byte.
    for (k, v) in &after {
        if before.get(k) != Some(v) {
            assert_eq!(
                source.get(k).map(|s| &s.0),
                Some(&v.0),
                "{k} is not the backed-up content"
            );
        }
    }
    assert_eq!(
        after["store/mail/firma.cz/petr/INBOX/#msgs/00000001.eml"].0,
        source["store/mail/firma.cz/petr/INBOX/#msgs/00000001.eml"].0,
        "an intact file of a present volume is restored"
    );
}

#[test]
fn issue6_items_the_backup_skipped_stay_in_place() {
    let t = TestInstall::sample();
    let inbox = t.path("store/mail/example.com/john/INBOX");
    let fifo = inbox.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("/etc/passwd", inbox.join("#msgs/link.eml")).unwrap();
    let bad = {
        use std::os::unix::ffi::OsStrExt;
        inbox
            .join("#msgs")
            .join(std::ffi::OsStr::from_bytes(b"bad\xffname.eml"))
    };
    std::fs::write(&bad, b"not utf-8 name").unwrap();
    std::fs::write(inbox.join("#msgs/back\\slash.eml"), b"backslash").unwrap();
    std::fs::write(inbox.join("#msgs/line\nbreak.eml"), b"newline").unwrap();
    let out = t.backup("full", &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "names a backup cannot store are problems: {}",
        stderr(&out)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons: Vec<&str> = s["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"special-file")
            && reasons.contains(&"not-utf8")
            && reasons.contains(&"unsafe-name")
    );
    let out = kms_in(
        &t,
        &["-d", "example.com", "-u", "john", "--json"],
        &t.backups(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kept"].as_array().unwrap().len(), 5, "{v}");
    for p in [
        &fifo,
        &inbox.join("#msgs/link.eml"),
        &bad,
        &inbox.join("#msgs/back\\slash.eml"),
        &inbox.join("#msgs/line\nbreak.eml"),
    ] {
        assert!(
            std::fs::symlink_metadata(p).is_ok(),
            "{} was removed",
            p.display()
        );
    }
    // The same for a whole-install restore from the directory.
    let out = kms_in(&t, &["-q", "--no-safety-copy"], &t.backups());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(&bad).is_ok() && std::fs::symlink_metadata(&fifo).is_ok());
}

#[test]
fn issue6_a_foreign_zip_is_refused_and_a_directory_restore_uses_the_good_chain() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let good = first_volume(&t, 'F');
    // A plain ZIP named like a backup a minute newer than the good one.
    let stem = &good.file_name().unwrap().to_str().unwrap()[1..16];
    let t0 = chrono::NaiveDateTime::parse_from_str(stem, "%Y%m%dT%H%M%S").unwrap();
    let foreign = t.backups().join(format!(
        "F{}Z.zip",
        (t0 + chrono::Duration::minutes(1)).format("%Y%m%dT%H%M%S")
    ));
    let st = std::process::Command::new("python3")
        .args(["-c", "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w')\nz.writestr('hello.txt','hi')\nz.close()", foreign.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = kms_in(&t, &["--no-safety-copy"], &foreign);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("not a backup"), "{}", stderr(&out));
    let l = kms(&["-l", foreign.to_str().unwrap()]);
    assert_eq!(
        l.status.code(),
        Some(1),
        "-l on a foreign zip: {}",
        stdout(&l)
    );
    // The directory: the good chain, with the foreign file named.
    let into = t.tmp.path().join("into");
    let out = kms(&[
        "--into",
        into.to_str().unwrap(),
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(good.file_name().unwrap().to_str().unwrap()),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("not a backup"),
        "the foreign file is named: {}",
        stdout(&out)
    );
    assert!(into.join("users.cfg").is_file());
    let l = kms(&["-l", t.backups().to_str().unwrap()]);
    assert_eq!(l.status.code(), Some(0), "{}", stderr(&l));
    assert!(stdout(&l).contains("example.com"));
    let list = ok(&["list", t.backups().to_str().unwrap()]);
    assert!(stdout(&list).contains("not a backup"), "{}", stdout(&list));
    let v = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5));
    assert!(
        stderr(&v).contains(foreign.to_str().unwrap()),
        "{}",
        stderr(&v)
    );
}

#[test]
fn issue6_a_future_dated_set_does_not_shape_new_names_and_list_warns() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.backups().join("F20990101T000000Z.zip"),
        vec![0x55u8; 4096],
    )
    .unwrap();
    let s = t.backup_ok("full", &[]);
    let name = s["archive"].as_str().unwrap();
    let year: i32 = name[1..5].parse().unwrap();
    assert!(
        year < 2099,
        "the new backup is named by the real clock: {name}"
    );
    let list = ok(&["list", t.backups().to_str().unwrap()]);
    assert!(
        stderr(&list).contains("F20990101T000000Z.zip is dated in the future"),
        "{}",
        stderr(&list)
    );
    let d = t.backup_ok("differential", &[]);
    assert_eq!(
        d["type"], "differential",
        "the real newest full is the base: {d}"
    );
    assert_eq!(d["base"].as_str().unwrap(), &name[..17]);
}

#[test]
fn issue6_a_restore_removes_folders_made_after_the_backup_and_leaves_no_empty_msgs() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let john = t.path("store/mail/example.com/john");
    std::fs::create_dir_all(john.join("New Folder/#msgs")).unwrap();
    std::fs::write(john.join("New Folder/#msgs/00000001.eml"), b"x").unwrap();
    std::fs::write(john.join("New Folder/index.fld"), b"").unwrap();
    std::fs::create_dir_all(john.join("Empty/#msgs")).unwrap();
    std::fs::create_dir_all(t.path("store/mail/example.com/newbie/INBOX/#msgs")).unwrap();
    for m in std::fs::read_dir(john.join("Deleted Items/#msgs"))
        .unwrap()
        .flatten()
    {
        std::fs::remove_file(m.path()).unwrap();
    }
    let before_dirs = dirs(&john);
    kms_ok(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-q",
        "--no-safety-copy",
        "-d",
        "example.com",
        t.backups().to_str().unwrap(),
    ]);
    assert!(!john.join("New Folder").exists() && !john.join("Empty").exists());
    assert!(
        !t.path("store/mail/example.com/newbie").exists(),
        "a mailbox made after the backup is gone"
    );
    assert!(
        john.join("Deleted Items/#msgs")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "emptied folder restored"
    );
    for d in dirs(&john) {
        assert!(
            std::fs::read_dir(&d).unwrap().next().is_some(),
            "empty directory left: {}",
            d.display()
        );
    }
    assert!(before_dirs.len() > dirs(&john).len());
}

fn dirs(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn issue6_a_wrong_install_dir_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("does/not/exist");
    let out = run(&["backup", "full", "--install-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a Kerio Connect install"),
        "{}",
        stderr(&out)
    );
    assert!(
        !missing.exists() && !tmp.path().join("does").exists(),
        "nothing created"
    );
    // An explicit, new backup directory is not left behind either.
    let backups = tmp.path().join("new/backups");
    let out = run(&[
        "backup",
        "full",
        "--install-dir",
        missing.to_str().unwrap(),
        "--backup-dir",
        backups.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!tmp.path().join("new").exists());
    // A directory holding only an empty store/backup (what the old bug made) is no install.
    std::fs::create_dir_all(tmp.path().join("fake/store/backup")).unwrap();
    let out = run(&[
        "backup",
        "full",
        "--install-dir",
        tmp.path().join("fake").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

// ---- section 4: bounded resources on hostile input ----

#[test]
fn issue6_metadata_bombs_are_refused_within_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    let st = std::process::Command::new("python3")
        .arg(repo_root().join("tests/data/crafted/make.py"))
        .arg(&cases)
        .args([
            "--case",
            "version-bomb",
            "--case",
            "summary-bomb",
            "--case",
            "catalog-bomb",
            "--case",
            "catalog-comments",
            "--case",
            "good-full",
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mv = Path::new(env!("CARGO_BIN_EXE_mailvault"));
    let km = Path::new(env!("CARGO_BIN_EXE_kmsrecover"));
    for case in [
        "version-bomb",
        "summary-bomb",
        "catalog-bomb",
        "catalog-comments",
    ] {
        let dir = cases.join(case);
        let d = dir.to_str().unwrap();
        for (prog, args, want) in [
            (mv, vec!["list", d], 0),
            (mv, vec!["verify", d], 5),
            (km, vec!["-l", d], 1),
        ] {
            let (code, kib) = peak_rss_kib(prog, &args);
            assert_eq!(code, want, "{case}: {args:?}");
            assert!(kib < 200 * 1024, "{case}: {args:?} peaked at {kib} KiB");
        }
    }
}

// ---- section 5: crashes and concurrency ----

#[test]
fn issue6_an_interrupted_commit_reads_as_leftovers_and_every_lock_holder_removes_them() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    t.backup_ok("full", &["--split-size", "64K"]);
    let vols: Vec<PathBuf> = t.archives().into_iter().skip(1).collect();
    let first = vols[0].clone();
    let stem = first.file_name().unwrap().to_str().unwrap()[..17].to_string();
    // As a kill during the final renames leaves it: the journal, the
    // continuation volumes renamed, the first volume still a temporary.
    std::fs::rename(
        &first,
        t.backups().join(format!(".mailvault-tmp-{stem}.zip")),
    )
    .unwrap();
    std::fs::write(
        t.backups().join(format!(".mailvault-journal-{stem}")),
        "commit\n",
    )
    .unwrap();
    let list = ok(&["list", t.backups().to_str().unwrap()]);
    assert!(
        stdout(&list).contains("leftovers of interrupted runs"),
        "{}",
        stdout(&list)
    );
    assert!(
        !stdout(&list).contains("missing volume"),
        "{}",
        stdout(&list)
    );
    let v = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "leftovers are not damage: {}{}",
        stdout(&v),
        stderr(&v)
    );
    assert!(stdout(&v).contains("leftover"));
    assert!(!stderr(&v).contains("--salvage"));
    // A restore ignores them: it uses the complete older full.
    let into = t.tmp.path().join("into");
    kms_ok(&[
        "--into",
        into.to_str().unwrap(),
        "-q",
        t.backups().to_str().unwrap(),
    ]);
    // rotate holds the lock: it removes them (not only backup does).
    let out = ok(&["rotate", t.backups().to_str().unwrap(), "--keep-full", "5"]);
    assert!(stdout(&out).contains("removed"), "{}", stdout(&out));
    assert!(
        t.archives()
            .iter()
            .all(|p| !p.to_str().unwrap().contains(&stem))
    );
    assert_eq!(
        count_prefixed(&t.backups(), ".mailvault-"),
        0,
        "no temporary and no journal left"
    );
    // Continuation volumes without a journal are damage, and are kept for salvage.
    t.backup_ok("full", &["--split-size", "64K"]);
    let newest = t
        .archives()
        .into_iter()
        .rev()
        .find(|p| p.to_str().unwrap().ends_with("Z.zip"))
        .unwrap();
    std::fs::remove_file(&newest).unwrap();
    let v = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5));
    assert!(stderr(&v).contains("missing volume 0"), "{}", stderr(&v));
    let n = t.archives().len();
    ok(&["rotate", t.backups().to_str().unwrap(), "--keep-full", "5"]);
    assert_eq!(t.archives().len(), n, "damage is never cleaned away");
}

#[test]
fn issue6_a_killed_user_restore_leaves_no_staging_where_the_server_looks() {
    let t = TestInstall::generated(3000, 11);
    t.backup_ok("full", &[]);
    let user_dir = std::fs::read_dir(t.path("store/mail/d1.example.com"))
        .unwrap()
        .flatten()
        .find(|e| e.file_type().unwrap().is_dir())
        .unwrap();
    let user = user_dir.file_name().to_string_lossy().into_owned();
    for delay in [5u64, 30, 80, 200] {
        for e in walkdir::WalkDir::new(user_dir.path())
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .step_by(3)
        {
            std::fs::write(e.path(), b"wrecked").unwrap();
        }
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kmsrecover"))
            .args([
                "--install-dir",
                t.install().to_str().unwrap(),
                "-d",
                "d1.example.com",
                "-u",
                &user,
                "--no-safety-copy",
                "-q",
                t.backups().to_str().unwrap(),
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        let stray: Vec<PathBuf> = walkdir::WalkDir::new(t.path("store/mail"))
            .into_iter()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".kmsrecover"))
            .map(|e| e.path().to_path_buf())
            .collect();
        assert!(
            stray.is_empty(),
            "staging where the server looks for mailboxes: {stray:?}"
        );
        kms_ok(&[
            "--install-dir",
            t.install().to_str().unwrap(),
            "-d",
            "d1.example.com",
            "-u",
            &user,
            "--no-safety-copy",
            "-q",
            t.backups().to_str().unwrap(),
        ]);
        let leftovers: Vec<PathBuf> = walkdir::WalkDir::new(t.install())
            .into_iter()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".kmsrecover"))
            .map(|e| e.path().to_path_buf())
            .collect();
        assert!(
            leftovers.is_empty(),
            "the next run removes the staging: {leftovers:?}"
        );
    }
}

#[test]
fn issue6_a_refused_writer_names_the_reader_holding_the_lock() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    // A stale record of a finished backup, and a reader (like kmsrecover) holding the lock shared.
    let lock = t.backups().join(".mailvault.lock");
    std::fs::write(
        &lock,
        "pid 4242\nstarted 2026-11-23T01:00:00Z\ncommand backup full\n",
    )
    .unwrap();
    let mut reader = std::process::Command::new("flock")
        .args(["-F", "-s", lock.to_str().unwrap(), "sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = run(&["rotate", t.backups().to_str().unwrap(), "--keep-full", "1"]);
    let b = t.backup("full", &[]);
    reader.kill().unwrap();
    reader.wait().unwrap();
    for o in [&out, &b] {
        assert_eq!(o.status.code(), Some(4), "{}", stderr(o));
        let err = stderr(o);
        assert!(
            err.contains(&format!("pid {}", reader.id())) && err.contains("sleep 30"),
            "{err}"
        );
        assert!(
            !err.contains("backup full") && !err.contains("4242"),
            "not the stale record: {err}"
        );
    }
}

#[test]
fn issue6_two_backups_started_at_once_name_each_other() {
    let t = TestInstall::sample();
    for _ in 0..8 {
        let a = t.spawn_backup("copy", &["-q"], true);
        let b = t.spawn_backup("copy", &["-q"], true);
        for o in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            if o.status.code() == Some(4) {
                let err = stderr(&o);
                assert!(
                    !err.contains("holder unknown") && err.contains("pid "),
                    "{err}"
                );
            } else {
                assert!(o.status.success(), "{}", stderr(&o));
            }
        }
    }
}

#[test]
fn issue6_a_failed_into_leaves_the_directory_as_it_found_it() {
    let t = TestInstall::generated(400, 5);
    t.backup_ok("full", &[]);
    let disk = SmallDisk::new(t.tmp.path().join("small"), "256k");
    let mnt = disk.path.clone();
    let into = mnt.join("restore");
    let out = kms(&[
        "--into",
        into.to_str().unwrap(),
        "-q",
        t.backups().to_str().unwrap(),
    ]);
    let left = into.exists();
    let empty_mnt = std::fs::read_dir(&mnt).unwrap().next().is_none();
    drop(disk);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    assert!(!left && empty_mnt, "a failed --into leaves nothing behind");
    // An existing empty directory stays, empty: the re-run its hint suggests is not refused.
    let into = t.tmp.path().join("existing");
    std::fs::create_dir(&into).unwrap();
    kms_ok(&[
        "--into",
        into.to_str().unwrap(),
        "-q",
        t.backups().to_str().unwrap(),
    ]);
}

// ---- section 6: what a user meets first ----

#[test]
fn issue6_usage_errors_exit_2() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let b = t.backups();
    for args in [
        vec!["-f", "INBOX", b.to_str().unwrap()],
        vec!["-d", "example.com", "-f", "INBOX", b.to_str().unwrap()],
        vec!["-m", "everything", b.to_str().unwrap()],
        vec!["-u", "john", b.to_str().unwrap()],
        vec!["-u", "john", "-l", b.to_str().unwrap()],
    ] {
        let out = kms(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn issue6_a_missing_backup_dir_and_unknown_names_are_errors() {
    let t = TestInstall::sample();
    let nope = t.tmp.path().join("nope");
    let out = run(&["list", nope.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = kms(&["-l", nope.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    t.backup_ok("full", &[]);
    let b = t.backups();
    let out = kms(&["-l", "-d", "nowhere.org", b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("domain `nowhere.org` is not in the backup"),
        "{}",
        stderr(&out)
    );
    let out = kms(&[
        "-l",
        "-d",
        "example.com",
        "-u",
        "nobody",
        b.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`nobody@example.com` is not in the backup"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn issue6_as_folder_reports_where_the_folder_went() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let out = kms_in(
        &t,
        &[
            "-d",
            "example.com",
            "-u",
            "john",
            "-f",
            "INBOX",
            "--as-folder",
            "Restored INBOX",
        ],
        &t.backups(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let want = t.path("store/mail/example.com/john/Restored INBOX");
    assert!(
        stdout(&out).contains(&format!("-> {}", want.display())),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("replaced"), "{}", stdout(&out));
    assert!(want.join("#msgs").is_dir());
}

#[test]
fn issue6_undo_from_a_safety_copy_does_not_nest_safety_copies() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000500.eml"),
        b"new",
    )
    .unwrap();
    let out = kms_in(
        &t,
        &["-d", "example.com", "-u", "john", "--json"],
        &t.backups(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copy = PathBuf::from(v["safety_copy"].as_str().unwrap());
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000501.eml"),
        b"newer",
    )
    .unwrap();
    // The undo (with its own safety copy) goes beside, not into safety-copies/safety-copies.
    let out = kms_in(&t, &["-d", "example.com", "-u", "john", "--json"], &copy);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = PathBuf::from(v["safety_copy"].as_str().unwrap());
    assert_eq!(second.parent(), copy.parent(), "{}", second.display());
    assert!(!t.backups().join("safety-copies/safety-copies").exists());
    assert_eq!(
        std::fs::read(t.path("store/mail/example.com/john/INBOX/#msgs/00000500.eml")).unwrap(),
        b"new"
    );
}

#[test]
fn issue6_schedule_systemd_writes_absolute_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(tmp.path())
        .args(["schedule", "systemd", "--config", "conf/mailvault.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    let want = tmp.path().join("conf/mailvault.toml");
    assert!(
        exec.contains(&format!("--config {}", want.display())),
        "{exec}"
    );
    assert!(exec["ExecStart=".len()..].starts_with('/'), "{exec}");
}

#[test]
fn issue6_quiet_silences_verify_ok_lines_and_plans() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let b = t.backups();
    let out = ok(&["verify", "-q", b.to_str().unwrap()]);
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    let out = t.backup("differential", &["--dry-run", "-q"]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        stdout(&out)
    );
    let out = kms_in(&t, &["--dry-run", "-q"], &b);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        stdout(&out)
    );
    let out = ok(&[
        "rotate",
        b.to_str().unwrap(),
        "--keep-full",
        "3",
        "--dry-run",
        "-q",
    ]);
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
}

#[test]
fn issue6_every_subcommand_help_has_examples() {
    for args in [
        vec!["backup"],
        vec!["list"],
        vec!["verify"],
        vec!["rotate"],
        vec!["schedule"],
        vec!["schedule", "list"],
        vec!["schedule", "run-due"],
        vec!["schedule", "systemd"],
        vec!["schedule", "example"],
        vec!["daemon"],
        vec!["sample-install"],
        vec!["sample-store"],
    ] {
        let mut a = args.clone();
        a.push("--help");
        let out = ok(&a);
        assert!(
            stdout(&out).contains("Example"),
            "mailvault {args:?} --help has no examples"
        );
    }
    let out = kms(&["--help"]);
    assert!(stdout(&out).contains("Examples:"));
}

#[test]
fn issue6_ratios_print_sensibly() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000600.eml"),
        b"x",
    )
    .unwrap();
    let out = t.backup("differential", &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    let stored = text.lines().find(|l| l.contains("stored:")).unwrap();
    for word in stored.split_whitespace() {
        if let Some(p) = word.strip_suffix('%') {
            let pct: f64 = p.parse().unwrap();
            assert!(pct <= 100.0, "{stored}");
        }
    }
}

// ---- found by the adversarial review of this issue's work ----

fn strace_kill(nth: u32, syscall: &str, args: &[&str], bin: &str) {
    let out = std::process::Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", &format!("trace={syscall}")])
        .args(["-e", &format!("inject={syscall}:signal=KILL:when={nth}")])
        .arg(bin)
        .args(args)
        .output()
        .expect("strace (scripts/test.sh installs it)");
    assert!(
        !out.status.success(),
        "the run was to be killed at its {nth}th {syscall}"
    );
}

#[test]
fn review_a_symlinked_folder_is_never_written_through() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let m = t.path("store/mail/example.com");
    std::fs::remove_dir_all(m.join("john/Projects")).unwrap();
    std::os::unix::fs::symlink(m.join("jane/INBOX"), m.join("john/Projects")).unwrap();
    let jane = snapshot(&m.join("jane"));
    kms_ok(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "-q",
        t.backups().to_str().unwrap(),
    ]);
    assert!(
        snapshot(&m.join("jane")) == jane,
        "jane's mailbox changed through john's symlinked folder"
    );
    assert!(
        std::fs::symlink_metadata(m.join("john/Projects"))
            .unwrap()
            .is_dir(),
        "john's folder is back as a folder"
    );
    // A symlinked mailbox root is replaced, not followed.
    let elsewhere = t.tmp.path().join("elsewhere");
    std::fs::rename(m.join("john"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, m.join("john")).unwrap();
    std::fs::write(elsewhere.join("INBOX/#msgs/000000ff.eml"), b"only here").unwrap();
    kms_ok(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "-q",
        t.backups().to_str().unwrap(),
    ]);
    assert!(std::fs::symlink_metadata(m.join("john")).unwrap().is_dir());
    assert_eq!(
        std::fs::read(elsewhere.join("INBOX/#msgs/000000ff.eml")).unwrap(),
        b"only here",
        "the link's target is untouched"
    );
}

#[test]
fn review_the_backup_and_safety_directories_inside_a_restored_root_survive() {
    let t = TestInstall::sample();
    let inside = t.path("store/mail/backup");
    ok(&[
        "backup",
        "full",
        "-q",
        "--install-dir",
        t.install().to_str().unwrap(),
        "--backup-dir",
        inside.to_str().unwrap(),
    ]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/000000ff.eml"),
        b"new",
    )
    .unwrap();
    // The default safety copy would land inside what is replaced: refused, nothing changed.
    let before = snapshot(&t.install());
    let out = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        inside.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("--safety-dir"), "{}", stderr(&out));
    assert!(snapshot(&t.install()) == before);
    // With the copy elsewhere, the restore runs and the backups survive it.
    let safety = t.tmp.path().join("safety");
    let out = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "--safety-dir",
        safety.to_str().unwrap(),
        "-q",
        inside.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(&inside)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".zip"))
            .count(),
        1
    );
    assert!(
        std::fs::read_dir(&safety)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with('C'))
    );
    ok(&["verify", inside.to_str().unwrap()]);
}

#[test]
fn review_kmsrecover_like_user_folder_names_are_data() {
    let t = TestInstall::sample();
    let j = t.path("store/mail/example.com/john");
    std::fs::create_dir_all(j.join(".kmsrecover notes/#msgs")).unwrap();
    std::fs::write(j.join(".kmsrecover notes/#msgs/00000001.eml"), b"user mail").unwrap();
    t.backup_ok("full", &[]);
    assert!(
        entry_names(&t.archives()[0])
            .iter()
            .any(|n| n.contains(".kmsrecover notes")),
        "backed up"
    );
    std::fs::write(j.join("INBOX/#msgs/000000ff.eml"), b"new").unwrap();
    kms_ok(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "-q",
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(j.join(".kmsrecover notes/#msgs/00000001.eml")).unwrap(),
        b"user mail"
    );
}

#[test]
fn review_a_mailbox_disabled_since_the_full_is_named() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let users = std::fs::read_to_string(t.path("users.cfg")).unwrap();
    let at = users.find(">jane<").unwrap();
    let k = at + users[at..].find("Account_enabled\">1<").unwrap();
    std::fs::write(
        t.path("users.cfg"),
        format!("{}Account_enabled\">0<{}", &users[..k], &users[k + 19..]),
    )
    .unwrap();
    t.backup_ok("differential", &[]);
    let into = t.tmp.path().join("into");
    let out = kms_ok(&[
        "--into",
        into.to_str().unwrap(),
        t.backups().to_str().unwrap(),
    ]);
    assert!(
        stdout(&out).contains("store/mail/example.com/jane` was disabled"),
        "{}",
        stdout(&out)
    );
    let out = kms(&[
        "--into",
        t.tmp.path().join("x").to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "jane",
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("was disabled when this backup was taken"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn review_verify_and_restore_agree_on_a_differential_over_a_damaged_base() {
    let t = TestInstall::sample();
    t.backup_ok("full", &["--split-size", "64K"]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000001.eml"),
        b"changed",
    )
    .unwrap();
    t.backup_ok("differential", &[]);
    let d = first_volume(&t, 'D');
    let f = first_volume(&t, 'F');
    let v1 = t
        .archives()
        .into_iter()
        .find(|p| {
            p.to_str().unwrap().ends_with("Z.1.zip")
                && p.file_name().unwrap().to_str().unwrap().starts_with('F')
        })
        .unwrap();
    std::fs::rename(&v1, t.tmp.path().join("lost.zip")).unwrap();
    let v = run(&["verify", d.to_str().unwrap()]);
    let r = kms(&[
        "--into",
        t.tmp.path().join("a").to_str().unwrap(),
        d.to_str().unwrap(),
    ]);
    assert_eq!(
        (v.status.code(), r.status.code()),
        (Some(5), Some(1)),
        "{}{}",
        stderr(&v),
        stderr(&r)
    );
    std::fs::rename(t.tmp.path().join("lost.zip"), &v1).unwrap();
    flip_byte_in_entry(&f, "@backup/users.cfg");
    let v = run(&["verify", d.to_str().unwrap()]);
    let r = kms(&[
        "--into",
        t.tmp.path().join("b").to_str().unwrap(),
        d.to_str().unwrap(),
    ]);
    assert_eq!(
        (v.status.code(), r.status.code()),
        (Some(5), Some(1)),
        "{}{}",
        stderr(&v),
        stderr(&r)
    );
}

#[test]
fn review_long_catalog_rows_are_bounded_by_the_entry_names() {
    // 20,000 one-byte entries with short names, a catalog whose rows carry
    // 8 KB paths: refused within the memory the honest archive needs.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fat");
    std::fs::create_dir(&dir).unwrap();
    let script = r#"
import zipfile,sys,zlib
out=sys.argv[1]
n=20000
ver='format-version: 1\ntool: t\ntype: full\nstarted: 2026-11-01T00:00:00Z\nhost: h\nsource: /x\nvolume: 0\n'
with zipfile.ZipFile(out,'w',zipfile.ZIP_DEFLATED) as z:
    z.writestr('.version.txt',ver)
    rows=['# mailvault catalog 1']
    for i in range(n):
        p='store/mail/a/b/INBOX/#msgs/%08x.eml'%i
        z.writestr('@backup/'+p,'x')
        rows.append('%08x\t1\t1.0\t0\t%s' % (zlib.crc32(b'x'), p + '/' + 'y'*8000))
    z.writestr('.catalog.tsv','\n'.join(rows)+'\n')
    z.writestr('.summary.txt','type: full\nstatus: complete\nstarted: 2026-11-01T00:00:00Z\nended: 2026-11-01T00:00:00Z\nvolume: 0\nlast-volume: yes\nvolume-files: %d\nvolume-bytes: %d\nvolumes: 1\nfiles: %d\nbytes: %d\nstate-files: %d\nstate-bytes: %d\n'%(n,n,n,n,n,n))
"#;
    let st = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            dir.join("F20261101T000000Z.zip").to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let mv = Path::new(env!("CARGO_BIN_EXE_mailvault"));
    let (code, kib) = peak_rss_kib(mv, &["verify", "-q", dir.to_str().unwrap()]);
    assert_eq!(code, 5);
    assert!(kib < 100 * 1024, "verify peaked at {kib} KiB");
}

#[test]
fn review_an_interrupted_rotation_never_orphans_a_differential() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/000000ee.eml"),
        b"x",
    )
    .unwrap();
    t.backup_ok("differential", &[]);
    t.backup_ok("full", &[]);
    // Killed at its second unlink (after the journal): the old chain is half gone.
    strace_kill(
        2,
        "unlink",
        &["rotate", t.backups().to_str().unwrap(), "--keep-full", "1"],
        env!("CARGO_BIN_EXE_mailvault"),
    );
    let v = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}{}", stdout(&v), stderr(&v));
    ok(&[
        "rotate",
        t.backups().to_str().unwrap(),
        "--keep-full",
        "1",
        "-q",
    ]);
    assert_eq!(t.archives().len(), 1);
}

#[test]
fn review_an_into_killed_midway_runs_again() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let into = t.tmp.path().join("into");
    strace_kill(
        2,
        "rename",
        &[
            "--into",
            into.to_str().unwrap(),
            "-q",
            t.backups().to_str().unwrap(),
        ],
        env!("CARGO_BIN_EXE_kmsrecover"),
    );
    assert!(into.exists(), "the kill left a partial restore");
    kms_ok(&[
        "--into",
        into.to_str().unwrap(),
        "-q",
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(tree(&into), backed_up(tree(&t.install())));
}

#[test]
fn review_options_that_cannot_work_are_refused() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let f = first_volume(&t, 'F');
    let out = kms(&[
        "--at",
        "2000-01-01T00:00:00Z",
        "--into",
        t.tmp.path().join("a").to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let typo = t.tmp.path().join("Typo");
    let out = kms(&[
        "--install-dir",
        typo.to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a Kerio Connect install") && !typo.exists(),
        "{}",
        stderr(&out)
    );
    let out = run(&["rotate", t.backups().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn review_into_never_clears_a_live_install_left_by_a_killed_restore() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/000000ff.eml"),
        b"new",
    )
    .unwrap();
    // An in-place restore killed midway leaves its lock file in the install.
    strace_kill(
        1,
        "linkat",
        &[
            "--install-dir",
            t.install().to_str().unwrap(),
            "--no-safety-copy",
            "-q",
            t.backups().to_str().unwrap(),
        ],
        env!("CARGO_BIN_EXE_kmsrecover"),
    );
    assert!(t.path(".kmsrecover.lock").exists());
    let before = snapshot(&t.install());
    let out = kms(&[
        "--into",
        t.install().to_str().unwrap(),
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    assert!(
        snapshot(&t.install()) == before,
        "the live install was not touched"
    );
}

// ---- found by the second adversarial review ----

#[test]
fn review2_a_link_above_the_selected_root_is_refused() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let m = t.path("store/mail/example.com");
    std::fs::remove_dir_all(m.join("john")).unwrap();
    std::os::unix::fs::symlink("jane", m.join("john")).unwrap();
    let before = snapshot(&m.join("jane"));
    let install = t.install();
    for extra in [&[][..], &["--as-folder", "Restored"][..]] {
        let mut args = vec![
            "--install-dir",
            install.to_str().unwrap(),
            "--no-safety-copy",
            "-d",
            "example.com",
            "-u",
            "john",
            "-f",
            "INBOX",
        ];
        args.extend_from_slice(extra);
        let b = t.backups();
        args.push(b.to_str().unwrap());
        let out = kms(&args);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", stdout(&out));
        assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
        assert!(
            snapshot(&m.join("jane")) == before,
            "{extra:?}: jane's mailbox changed"
        );
    }
}

#[test]
fn review2_a_safety_dir_reaching_the_root_through_a_link_is_refused() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000099.eml"),
        b"only here",
    )
    .unwrap();
    let link = t.tmp.path().join("SL");
    std::os::unix::fs::symlink(t.path("store/mail/example.com/john/INBOX"), &link).unwrap();
    for safety in [link.join("sc"), link.clone(), link.join("../sx")] {
        let out = kms(&[
            "--install-dir",
            t.install().to_str().unwrap(),
            "-d",
            "example.com",
            "-u",
            "john",
            "--safety-dir",
            safety.to_str().unwrap(),
            t.backups().to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            safety.display(),
            stdout(&out)
        );
        assert!(
            stderr(&out).contains("--safety-dir outside"),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            std::fs::read(t.path("store/mail/example.com/john/INBOX/#msgs/00000099.eml")).unwrap(),
            b"only here"
        );
    }
}

#[test]
fn review2_a_planted_into_marker_clears_nothing() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let data = t.tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("thesis.txt"), b"important").unwrap();
    for marker in ["", "kmsrecover --into 1\ncreated thesis.txt\n"] {
        std::fs::write(data.join(".kmsrecover-into"), marker).unwrap();
        let out = kms(&[
            "--into",
            data.to_str().unwrap(),
            t.backups().to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{marker:?}: {}", stdout(&out));
        assert_eq!(
            std::fs::read(data.join("thesis.txt")).unwrap(),
            b"important"
        );
    }
    // A live install with a planted marker listing what a restore creates.
    std::fs::write(
        t.path(".kmsrecover-into"),
        "kmsrecover --into 1\ncreated store\ncreated users.cfg\n",
    )
    .unwrap();
    let before = snapshot(&t.install());
    let out = kms(&[
        "--into",
        t.install().to_str().unwrap(),
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(snapshot(&t.install()) == before);
}

#[test]
fn review2_a_padded_central_directory_is_refused_before_it_is_read() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let zip = t.archives()[0].clone();
    // Every central record of the real backup gets 60,000 bytes of an unknown extra field.
    let script = r"
import zipfile,sys,shutil
src=sys.argv[1];tmp=src+'.pad'
with zipfile.ZipFile(src) as a, zipfile.ZipFile(tmp,'w') as b:
  for i in a.infolist():
    data=a.read(i)
    i.extra=i.extra+b'\xfe\xca'+(60000).to_bytes(2,'little')+b'\0'*60000
    b.writestr(i,data)
shutil.move(tmp,src)
";
    let st = std::process::Command::new("python3")
        .args(["-c", script, zip.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let v = run(&["verify", zip.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5));
    assert!(
        stderr(&v).contains("central directory takes"),
        "{}",
        stderr(&v)
    );
    let r = kms(&[
        "--into",
        t.tmp.path().join("x").to_str().unwrap(),
        zip.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1), "verify and restore agree");
}

// ---- found by the third adversarial review ----

#[test]
fn review3_mail_that_arrives_during_a_restore_is_never_lost() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::remove_file(t.path("store/mail/example.com/john/INBOX/#msgs/00000003.eml")).unwrap();
    // The swap is held back two seconds; mail is delivered meanwhile.
    let child = std::process::Command::new("strace")
        .args([
            "-f",
            "-o",
            "/dev/null",
            "-e",
            "trace=renameat2",
            "-e",
            "inject=renameat2:delay_enter=2000000:when=1",
        ])
        .arg(env!("CARGO_BIN_EXE_kmsrecover"))
        .args([
            "--install-dir",
            t.install().to_str().unwrap(),
            "--no-safety-copy",
            "--json",
            "-d",
            "example.com",
            "-u",
            "john",
            t.backups().to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let staging = t.path("store/.kmsrecover-staging");
    let start = std::time::Instant::now();
    while !staging.exists() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    let arrived = t.path("store/mail/example.com/john/INBOX/#msgs/00000777.eml");
    std::fs::write(&arrived, b"delivered while restoring").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert_eq!(
        std::fs::read(&arrived).unwrap(),
        b"delivered while restoring",
        "put back in its folder"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["arrived"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        t.path("store/mail/example.com/john/INBOX/index.bad")
            .is_file(),
        "its index is rebuilt"
    );
    assert!(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000003.eml")
            .is_file(),
        "and the restore did its job"
    );
}

#[test]
fn review3_a_differential_that_drops_base_rows_is_refused() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000600.eml"),
        b"x",
    )
    .unwrap();
    t.backup_ok("differential", &[]);
    let d = first_volume(&t, 'D');
    let cat = entry_text(&d, ".catalog.tsv");
    let kept: String = cat
        .lines()
        .filter(|l| !(l.contains("\tbase\tstore/mail/example.com/jane/")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(kept.len() < cat.len());
    rewrite_zip(&d, &[], &[(".catalog.tsv", &kept)]);
    let v = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5));
    assert!(
        stderr(&v).contains("does not account for"),
        "{}",
        stderr(&v)
    );
    let before = snapshot(&t.path("store/mail/example.com/jane"));
    let out = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "--no-safety-copy",
        "-q",
        d.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(snapshot(&t.path("store/mail/example.com/jane")) == before);
}

#[test]
fn review3_a_partial_archive_is_never_a_directory_restore_nor_a_base() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000600.eml"),
        b"x",
    )
    .unwrap();
    let b = t.backups();
    // The safety directory may not be the backup directory.
    let out = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "--safety-dir",
        b.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A partial archive put there by hand is passed over by directory restores and backups.
    let out = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "--json",
        b.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copy = PathBuf::from(v["safety_copy"].as_str().unwrap());
    std::fs::copy(&copy, b.join(copy.file_name().unwrap())).unwrap();
    let into = t.tmp.path().join("into");
    let out = kms_ok(&["--into", into.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("a partial archive"),
        "{}",
        stdout(&out)
    );
    assert!(
        into.join("store/mail/firma.cz").is_dir(),
        "the whole install, not the copy's scope"
    );
    let d = t.backup_ok("differential", &[]);
    assert!(d["base"].as_str().unwrap().starts_with('F'), "{d}");
}

/// Writes a Kerio-style archive (`.version.txt` not mailvault's, `.summary.txt`, no catalog).
fn kerio_zip(path: &Path, entries: &[(&str, &str)]) {
    let mut script = String::from(
        "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED)\nz.writestr('.version.txt','Kerio Connect 9.4.1\\n')\n",
    );
    for (n, c) in entries {
        script.push_str(&format!("z.writestr({n:?},{c:?})\n"));
    }
    script.push_str("z.writestr('.summary.txt','Backup finished\\n')\nz.close()\n");
    let st = std::process::Command::new("python3")
        .args(["-c", &script, path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn review3_a_kerio_chain_restores_what_its_full_holds_and_one_users_cfg() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("kerio");
    std::fs::create_dir(&b).unwrap();
    kerio_zip(
        &b.join("F20260101T000000Z.zip"),
        &[
            ("users.cfg", "<config>root copy, older</config>\n"),
            ("@backup/users.cfg", "<config>the backup's</config>\n"),
            ("@backup/license/license.key", "KEY"),
            (
                "@backup/store/mail/a.cz/jan/INBOX/#msgs/00000001.eml",
                "one",
            ),
        ],
    );
    kerio_zip(
        &b.join("D20260102T000000Z.zip"),
        &[(
            "@backup/store/mail/a.cz/jan/INBOX/#msgs/00000002.eml",
            "two",
        )],
    );
    ok(&["verify", b.to_str().unwrap()]);
    let into = tmp.path().join("into");
    kms_ok(&["--into", into.to_str().unwrap(), "-q", b.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(into.join("license/license.key")).unwrap(),
        "KEY",
        "a part only the full holds"
    );
    assert_eq!(
        std::fs::read_to_string(into.join("users.cfg")).unwrap(),
        "<config>the backup's</config>\n"
    );
    assert!(
        into.join("store/mail/a.cz/jan/INBOX/#msgs/00000001.eml")
            .is_file()
    );
    assert!(
        into.join("store/mail/a.cz/jan/INBOX/#msgs/00000002.eml")
            .is_file()
    );
    let out = kms(&[
        "--into",
        tmp.path().join("lic").to_str().unwrap(),
        "-m",
        "license",
        "-q",
        b.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

// ---- found by the fourth adversarial review ----

/// Runs kmsrecover with its `syncfs` (just before the swap) held back 3 s,
/// while `meanwhile` runs 1.5 s in: mail delivered at the worst moment.
fn restore_while(
    t: &TestInstall,
    args: &[&str],
    meanwhile: impl FnOnce() + Send,
) -> std::process::Output {
    let mut cmd = std::process::Command::new("strace");
    cmd.args([
        "-f",
        "-o",
        "/dev/null",
        "-e",
        "trace=syncfs",
        "-e",
        "inject=syncfs:delay_enter=3000000",
    ])
    .arg(env!("CARGO_BIN_EXE_kmsrecover"))
    .args(["--install-dir", t.install().to_str().unwrap(), "--force"])
    .args(args)
    .arg(t.backups());
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            meanwhile();
        });
        cmd.output().unwrap()
    })
}

#[test]
fn review4_a_file_rewritten_after_the_safety_copy_is_kept() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let j = t.path("store/mail/example.com/john");
    std::fs::create_dir_all(j.join("NewFolder/#msgs")).unwrap();
    std::fs::write(j.join("NewFolder/#msgs/00000001.eml"), b"old").unwrap();
    std::fs::write(j.join("INBOX/#msgs/00000001.eml"), b"changed after backup").unwrap();
    let out = restore_while(&t, &["-d", "example.com", "-u", "john", "-q"], || {
        std::fs::write(j.join("NewFolder/#msgs/00000001.eml"), b"NEW LIVE MAIL A").unwrap();
        std::fs::write(j.join("INBOX/#msgs/00000001.eml"), b"NEW LIVE MAIL B").unwrap();
    });
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let everywhere = tree(&t.install());
    for want in [&b"NEW LIVE MAIL A"[..], b"NEW LIVE MAIL B"] {
        assert!(
            everywhere.values().any(|v| v == want),
            "{} was lost",
            String::from_utf8_lossy(want)
        );
    }
}

#[test]
fn review4_arrivals_survive_a_disk_that_fills_during_the_restore() {
    let t = TestInstall::sample();
    let disk = SmallDisk::new(t.tmp.path().join("disk"), "50m,nr_inodes=400");
    let install = disk.path.join("I");
    copy_tree(&t.install(), &install);
    let backups = t.tmp.path().join("b");
    ok(&[
        "backup",
        "full",
        "-q",
        "--install-dir",
        install.to_str().unwrap(),
        "--backup-dir",
        backups.to_str().unwrap(),
    ]);
    let j = install.join("store/mail/example.com/john");
    std::fs::create_dir_all(j.join("NewFolder/#msgs")).unwrap();
    std::fs::write(j.join("NewFolder/index.fld"), b"idx").unwrap();
    let delivered = std::sync::Mutex::new(Vec::new());
    let mut cmd = std::process::Command::new("strace");
    cmd.args([
        "-f",
        "-o",
        "/dev/null",
        "-e",
        "trace=syncfs",
        "-e",
        "inject=syncfs:delay_enter=3000000",
    ])
    .arg(env!("CARGO_BIN_EXE_kmsrecover"))
    .args([
        "--install-dir",
        install.to_str().unwrap(),
        "--force",
        "--no-safety-copy",
        "-q",
        "-d",
        "example.com",
        "-u",
        "john",
    ])
    .arg(&backups);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            let mut d = delivered.lock().unwrap();
            for i in 0..3 {
                let p = j.join(format!("NewFolder/#msgs/nf-{i}.eml"));
                if std::fs::write(&p, format!("mail {i}")).is_ok() {
                    d.push(format!("mail {i}"));
                }
            }
            for i in 0.. {
                if std::fs::write(
                    j.join(format!("INBOX/#msgs/fill-{i}.eml")),
                    format!("fill {i}"),
                )
                .is_err()
                {
                    break;
                }
                d.push(format!("fill {i}"));
            }
        });
        cmd.output().unwrap()
    });
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let everywhere: std::collections::BTreeSet<Vec<u8>> = tree(&disk.path).into_values().collect();
    let d = delivered.lock().unwrap();
    assert!(d.len() > 3, "the disk filled up ({} delivered)", d.len());
    for m in d.iter() {
        assert!(everywhere.contains(m.as_bytes()), "{m} was lost");
    }
}

// ---- found by the fifth adversarial review ----

#[test]
fn review5_files_written_into_the_old_folder_after_the_swap_are_kept() {
    // A writer holding the folder open keeps writing into the old tree after
    // the swap, faster than the restore can go through it.
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let inbox = t.path("store/mail/example.com/john/INBOX/#msgs");
    std::fs::write(
        t.path("store/mail/example.com/john/Projects/#msgs/00000001.eml"),
        b"modified",
    )
    .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let written = std::sync::Mutex::new(Vec::new());
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            let dir = std::fs::File::open(&inbox).unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Through the directory handle: after the swap, into the old tree.
                let p = format!("/proc/self/fd/{fd}/late-{i}.eml");
                if std::fs::write(&p, format!("late {i}")).is_ok() {
                    written.lock().unwrap().push(format!("late {i}"));
                }
                i += 1;
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        let out = kms(&[
            "--install-dir",
            t.install().to_str().unwrap(),
            "--force",
            "-d",
            "example.com",
            "-u",
            "john",
            t.backups().to_str().unwrap(),
        ]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    });
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let mut everywhere: std::collections::BTreeSet<Vec<u8>> =
        tree(&t.install()).into_values().collect();
    for c in t
        .backups()
        .join("safety-copies")
        .read_dir()
        .unwrap()
        .flatten()
    {
        let listing = std::process::Command::new("python3")
            .args(["-c", "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1])\nfor n in z.namelist():\n  sys.stdout.buffer.write(z.read(n)+b'\\n')", c.path().to_str().unwrap()])
            .output()
            .unwrap();
        for l in listing.stdout.split(|&b| b == b'\n') {
            everywhere.insert(l.to_vec());
        }
    }
    let w = written.lock().unwrap();
    assert!(w.len() > 10, "the writer ran ({} files)", w.len());
    // Once the old folder is removed, further writes into it fail: every
    // write that succeeded must be somewhere.
    let lost: Vec<&String> = w
        .iter()
        .filter(|m| !everywhere.contains(m.as_bytes()))
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} of {}: {:?}",
        lost.len(),
        w.len(),
        &lost[..lost.len().min(5)]
    );
}

#[test]
fn review5_a_configuration_file_changed_during_the_restore_is_kept() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let cfg = t.path("mailserver.cfg");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap() + "<!-- after the backup -->\n",
    )
    .unwrap();
    let out = restore_while(&t, &["-m", "cfg", "-q"], || {
        let mut f = std::fs::OpenOptions::new().append(true).open(&cfg).unwrap();
        std::io::Write::write_all(&mut f, b"<!-- IMPORTANT -->\n").unwrap();
    });
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let kept = tree(&t.install()).into_iter().any(|(k, v)| {
        k.contains("kmsrecover-rescued") && String::from_utf8_lossy(&v).contains("IMPORTANT")
    });
    assert!(kept, "the changed mailserver.cfg is kept aside");
}

#[test]
fn review5_a_domain_mount_point_is_refused_and_dry_runs_tell_the_truth() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let dom = t.path("store/mail/firma.cz");
    let saved = t.tmp.path().join("firma");
    std::fs::rename(&dom, &saved).unwrap();
    let disk = SmallDisk::new(dom.clone(), "10m");
    copy_tree(&saved.join("."), &disk.path);
    let out = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "--no-safety-copy",
        "-d",
        "firma.cz",
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("is a mount point"),
        "{}",
        stderr(&out)
    );
    drop(disk);
    // --json errors are JSON on stdout too.
    let out = kms(&["--json", "-l", t.tmp.path().join("nope").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
    assert_eq!(v["exit_code"], 1, "{v}");
    assert!(v["hint"].is_string() && v["causes"].is_array(), "{v}");
    // A usage error says 2 in the document as in the exit status.
    let out = kms(&["--json", "-f", "INBOX", t.backups().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 2, "{v}");
}

// ---- review 8: merge-eml, kmsrecover --message, reindex ----

/// `merge-eml` with "--running-check false", returning the output.
fn merge8(install: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec![
        "merge-eml",
        "--running-check",
        "false",
        "--install-dir",
        install.to_str().unwrap(),
    ];
    a.extend_from_slice(args);
    run(&a)
}

/// Names of the temporaries left in a folder's `#msgs`.
fn temporaries(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder.join("#msgs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".mailvault-tmp"))
        .collect()
}

#[test]
fn review8_merge_eml_never_puts_messages_of_another_folder_into_the_first() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let john = "store/mail/example.com/john/INBOX/#msgs/00000001.eml";
    let petr = "store/mail/firma.cz/petr/INBOX/#msgs/00000001.eml";
    std::fs::remove_file(t.path(john)).unwrap();
    std::fs::remove_file(t.path(petr)).unwrap();
    let before = snapshot(&t.install());
    let backups = t.backups();
    let b = backups.to_str().unwrap();
    for args in [
        // Without -d/-u/-f: the first message's folder would get petr's too.
        vec!["--from", b, "--message", john, "--message", petr],
        // Only the folder named: the mailbox still comes from the first.
        vec![
            "-f",
            "Restored",
            "--from",
            b,
            "--message",
            john,
            "--message",
            petr,
        ],
        // Two domains named at once.
        vec![
            "-d",
            "firma.cz",
            "-u",
            "john@example.com",
            "-f",
            "X",
            "--from",
            b,
            "--message",
            john,
        ],
    ] {
        let out = merge8(&t.install(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(snapshot(&t.install()), before, "{args:?}: nothing written");
    }
    // Messages of one folder still go back into it without -d/-u/-f.
    let out = merge8(&t.install(), &["--from", b, "--message", petr]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let petr_inbox = tree(&t.path("store/mail/firma.cz/petr/INBOX/#msgs"));
    let john_inbox = tree(&t.path("store/mail/example.com/john/INBOX/#msgs"));
    assert_eq!(
        john_inbox.len(),
        before
            .keys()
            .filter(|k| k.starts_with("store/mail/example.com/john/INBOX/#msgs/"))
            .count()
    );
    assert_eq!(
        petr_inbox.len(),
        before
            .keys()
            .filter(|k| k.starts_with("store/mail/firma.cz/petr/INBOX/#msgs/"))
            .count()
            + 1
    );
}

#[test]
fn review8_merge_eml_reports_a_fifo_instead_of_waiting_for_it() {
    let t = TestInstall::sample();
    let dir = t.tmp.path().join("inputs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("a.eml"),
        "From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n",
    )
    .unwrap();
    let fifo = dir.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for input in [&fifo, &dir] {
        let mut child = bin()
            .args([
                "merge-eml",
                "--running-check",
                "false",
                "--install-dir",
                t.install().to_str().unwrap(),
                "-u",
                "john@example.com",
                "-f",
                "Piped",
                input.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(30) {
                let _ = child.kill();
                panic!("merge-eml {} hangs on a FIFO", input.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("pipe: not a regular file"),
            "{}",
            stderr(&out)
        );
    }
    let piped = tree(&t.path("store/mail/example.com/john/Piped/#msgs"));
    assert_eq!(piped.len(), 1, "the message beside the FIFO is added");
}

#[test]
fn review8_merge_eml_on_a_full_disk_leaves_no_temporaries_in_the_live_folder() {
    let t = TestInstall::sample();
    let disk = SmallDisk::new(t.tmp.path().join("small"), "3m");
    copy_tree(&t.install().join("."), &disk.path);
    let inputs = t.tmp.path().join("fat");
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..40 {
        let mut m = format!("From: a@example.com\r\nSubject: fat {i}\r\n\r\n").into_bytes();
        m.extend(std::iter::repeat_n(b'x', 100_000));
        std::fs::write(inputs.join(format!("{i:02}.eml")), m).unwrap();
    }
    let inbox = disk.path.join("store/mail/example.com/john/INBOX");
    let before = tree(&inbox);
    let out = merge8(
        &disk.path,
        &[
            "-u",
            "john@example.com",
            "-f",
            "INBOX",
            inputs.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    assert_eq!(temporaries(&inbox), Vec::<String>::new());
    assert_eq!(tree(&inbox), before, "nothing added, nothing changed");
    ok(&[
        "reindex",
        "--check",
        "--install-dir",
        disk.path.to_str().unwrap(),
    ]);
}

#[test]
fn review8_an_mbox_of_one_endless_line_does_not_fill_memory() {
    let t = TestInstall::sample();
    // A sparse file: a `From ` line, then 2 GiB of NUL bytes, no line end.
    let mbox = t.tmp.path().join("endless.mbox");
    let f = std::fs::File::create(&mbox).unwrap();
    std::io::Write::write_all(
        &mut &f,
        b"From a@b Thu Jan  1 00:00:00 2026\nSubject: s\n\n",
    )
    .unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    let install = t.install();
    let (code, peak_kib) = peak_rss_kib(
        &PathBuf::from(env!("CARGO_BIN_EXE_mailvault")),
        &[
            "merge-eml",
            "--running-check",
            "false",
            "--install-dir",
            install.to_str().unwrap(),
            "-u",
            "john@example.com",
            "-f",
            "Endless",
            mbox.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 3, "the message is reported as too large");
    // The bound is a message's (1 GiB); the line is never read whole.
    assert!(peak_kib < 1_600_000, "peak {peak_kib} KiB");
}

#[test]
fn review8_reindex_reads_no_more_of_status_fld_than_its_bound() {
    let t = TestInstall::sample();
    let status = t.path("store/mail/example.com/john/INBOX/status.fld");
    std::fs::remove_file(&status).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &status).unwrap();
    let install = t.install();
    let (code, peak_kib) = peak_rss_kib(
        &PathBuf::from(env!("CARGO_BIN_EXE_mailvault")),
        &[
            "reindex",
            "--check",
            "--install-dir",
            install.to_str().unwrap(),
            "-u",
            "john@example.com",
            "-f",
            "INBOX",
        ],
    );
    assert_eq!(code, 5, "reported as a folder not checked");
    assert!(peak_kib < 200_000, "peak {peak_kib} KiB");
}

#[test]
fn review8_a_dry_run_give_back_says_what_the_real_run_does_with_twin_items() {
    let t = TestInstall::sample();
    // The same message twice in the backed-up folder.
    let msgs = t.path("store/mail/example.com/john/Projects/#msgs");
    let first = std::fs::read(msgs.join("00000001.eml")).unwrap();
    std::fs::write(msgs.join("00000040.eml"), &first).unwrap();
    t.backup_ok("full", &[]);
    let backups = t.backups();
    let args = |dry: bool| {
        let mut a = vec![
            "-u",
            "john@example.com",
            "-f",
            "Twins",
            "--from",
            backups.to_str().unwrap(),
            "--source-folder",
            "Projects",
            "--json",
        ];
        if dry {
            a.push("--dry-run");
        }
        a
    };
    let count = |o: &std::process::Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (
            v["added"].as_u64().unwrap(),
            v["duplicates"].as_u64().unwrap(),
        )
    };
    let dry = merge8(&t.install(), &args(true));
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let real = merge8(&t.install(), &args(false));
    assert_eq!(real.status.code(), Some(0), "{}", stderr(&real));
    assert_eq!(count(&dry), count(&real), "the dry run tells the truth");
    let added = tree(&t.path("store/mail/example.com/john/Twins/#msgs"));
    assert_eq!(added.len() as u64, count(&real).0);
    assert_eq!(added.values().filter(|v| **v == first).count(), 1);
}

#[test]
fn review8_a_message_path_with_a_hash_folder_is_a_usage_error() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let before = snapshot(&t.install());
    for path in [
        "store/mail/example.com/john/INBOX/#msgs/#msgs/00000001.eml",
        "store/mail/example.com/john/INBOX/#assoc/#msgs/00000001.eml",
    ] {
        let out = kms_in(&t, &["--message", path], &t.backups());
        assert_eq!(out.status.code(), Some(2), "{path}: {}", stderr(&out));
    }
    assert_eq!(snapshot(&t.install()), before);
}

#[test]
fn review8_kmsrecover_message_refusing_one_folder_changes_no_other() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let john = "store/mail/example.com/john/INBOX/#msgs/00000001.eml";
    let petr = "store/mail/firma.cz/petr/INBOX/#msgs/00000001.eml";
    std::fs::remove_file(t.path(john)).unwrap();
    // petr's INBOX lives elsewhere, behind a link: refused.
    let elsewhere = t.tmp.path().join("petr-inbox");
    std::fs::rename(t.path("store/mail/firma.cz/petr/INBOX"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, t.path("store/mail/firma.cz/petr/INBOX")).unwrap();
    let before = snapshot(&t.install());
    let out = kms_in(
        &t,
        &[
            "--running-check",
            "false",
            "--message",
            john,
            "--message",
            petr,
        ],
        &t.backups(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    let after: Vec<_> = snapshot(&t.install())
        .into_keys()
        .filter(|k| !k.ends_with(".kmsrecover.lock"))
        .collect();
    let before: Vec<_> = before.into_keys().collect();
    assert_eq!(
        after, before,
        "exit 1: nothing changed, john's INBOX neither"
    );
}

#[test]
fn review8_reindex_reports_and_removes_the_temporaries_of_a_killed_merge() {
    let t = TestInstall::sample();
    let inbox = t.path("store/mail/example.com/john/INBOX");
    let items_before = tree(&inbox.join("#msgs"));
    // What a merge killed before publishing leaves in a folder it did not create.
    std::fs::write(
        inbox.join("#msgs/.mailvault-tmp-4242-0000000d"),
        "From: a@example.com\r\nSubject: half\r\n\r\n",
    )
    .unwrap();
    let install = t.install();
    let i = install.to_str().unwrap();
    let out = run(&["reindex", "--check", "--install-dir", i, "--json"]);
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
    assert!(stdout(&out).contains(".mailvault-tmp-4242-0000000d"));
    let out = run(&["reindex", "--running-check", "false", "--install-dir", i]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(temporaries(&inbox), Vec::<String>::new());
    assert_eq!(tree(&inbox.join("#msgs")), items_before, "items untouched");
    ok(&["reindex", "--check", "--install-dir", i]);
}

#[test]
fn review8_a_planted_link_at_a_temporary_name_is_never_written_through() {
    let t = TestInstall::sample();
    let inbox = t.path("store/mail/example.com/john/INBOX");
    let outside = t.tmp.path().join("outside.txt");
    std::fs::write(&outside, "precious").unwrap();
    std::os::unix::fs::symlink(&outside, inbox.join(".mailvault-tmp-index.fld")).unwrap();
    std::os::unix::fs::symlink(&outside, inbox.join(".mailvault-tmp-status.fld")).unwrap();
    let msg = t.tmp.path().join("m.eml");
    std::fs::write(&msg, "From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n").unwrap();
    let out = merge8(
        &t.install(),
        &[
            "-u",
            "john@example.com",
            "-f",
            "INBOX",
            msg.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
    let index = std::fs::read_to_string(inbox.join("index.fld")).unwrap();
    assert!(index.lines().count() > 1, "{index}");
    // reindex writes through the same function.
    std::os::unix::fs::symlink(&outside, inbox.join(".mailvault-tmp-index.fld")).unwrap();
    std::fs::remove_file(inbox.join("index.fld")).unwrap();
    let install = t.install();
    ok(&[
        "reindex",
        "--running-check",
        "false",
        "--install-dir",
        install.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
}

#[test]
fn review8_reindex_check_goes_on_past_a_folder_it_cannot_read() {
    let t = TestInstall::sample();
    // An index.fld past its bound (sparse: 300 MB of nothing) in jane's INBOX,
    // and a real problem in john's.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(t.path("store/mail/example.com/jane/INBOX/index.fld"))
        .unwrap();
    f.set_len(300 << 20).unwrap();
    std::fs::remove_file(t.path("store/mail/firma.cz/petr/INBOX/index.fld")).unwrap();
    let install = t.install();
    let out = run(&[
        "reindex",
        "--check",
        "--json",
        "--install-dir",
        install.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    let of = |f: &str| {
        problems
            .iter()
            .find(|p| p["folder"] == f)
            .unwrap_or_else(|| panic!("{f} not reported: {v}"))
            .clone()
    };
    assert!(
        of("store/mail/example.com/jane/INBOX")["unreadable"]
            .as_str()
            .unwrap()
            .contains("larger than")
    );
    assert_eq!(of("store/mail/firma.cz/petr/INBOX")["no_index"], true);
}

#[test]
fn review8_a_fifo_as_status_fld_is_an_error_not_a_hang() {
    let t = TestInstall::sample();
    let status = t.path("store/mail/example.com/john/INBOX/status.fld");
    std::fs::remove_file(&status).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&status)
            .status()
            .unwrap()
            .success()
    );
    let msg = t.tmp.path().join("m.eml");
    std::fs::write(&msg, "From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n").unwrap();
    let install = t.install();
    let i = install.to_str().unwrap();
    let m = msg.to_str().unwrap();
    let runs: [(&[&str], i32); 3] = [
        (&["reindex", "--check", "--install-dir", i], 5),
        (
            &["reindex", "--running-check", "false", "--install-dir", i],
            1,
        ),
        (
            &[
                "merge-eml",
                "--running-check",
                "false",
                "--install-dir",
                i,
                "-u",
                "john@example.com",
                "-f",
                "INBOX",
                m,
            ],
            1,
        ),
    ];
    for (args, want) in runs {
        let mut child = bin()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(30) {
                let _ = child.kill();
                panic!("{args:?} hangs on a FIFO status.fld");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(want), "{args:?}: {}", stderr(&out));
        assert!(
            (stdout(&out) + &stderr(&out)).contains("not a regular file"),
            "{args:?}"
        );
    }
}

// ---- review 9: mailvault export ----

fn export9(args: &[&str]) -> std::process::Output {
    let mut a = vec!["export"];
    a.extend_from_slice(args);
    run(&a)
}

fn json9(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(out)))
}

fn not_exported_paths(v: &serde_json::Value) -> Vec<String> {
    v["not_exported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap().to_string())
        .collect()
}

/// Mail the store holds but cannot give as items (a folder whose name is
/// not UTF-8, an item that is a FIFO) was left out with exit 0, both from
/// the live store and from a backup that skipped it; the backup's summary
/// also named a not-UTF-8 path with the install directory in front.
#[test]
fn review9_export_reports_mail_the_store_or_the_backup_could_not_give() {
    use std::os::unix::ffi::OsStrExt;
    let t = TestInstall::sample();
    let john = t.path("store/mail/example.com/john");
    let bad = john.join(std::ffi::OsStr::from_bytes(b"Star\xffs"));
    std::fs::create_dir_all(bad.join("#msgs")).unwrap();
    std::fs::write(
        bad.join("#msgs/00000001.eml"),
        b"Subject: lost\r\n\r\nx\r\n",
    )
    .unwrap();
    let fifo = john.join("INBOX/#msgs/00000100.eml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = t.backup("full", &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let b = json9(&out);
    let skipped: Vec<&str> = b["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["path"].as_str().unwrap())
        .collect();
    assert!(
        skipped.contains(&"store/mail/example.com/john/Star\u{fffd}s"),
        "install-relative: {skipped:?}"
    );
    let want = [
        "store/mail/example.com/john/INBOX/#msgs/00000100.eml".to_string(),
        "store/mail/example.com/john/Star\u{fffd}s".to_string(),
    ];
    let install = t.install();
    let backups = t.backups();
    for (n, source) in [
        ["--install-dir", install.to_str().unwrap()],
        ["--from", backups.to_str().unwrap()],
    ]
    .iter()
    .enumerate()
    {
        let out_dir = t.tmp.path().join(format!("out{n}"));
        let o = out_dir.to_str().unwrap();
        let out = export9(&[source[0], source[1], "--out", o, "--json"]);
        assert_eq!(out.status.code(), Some(3), "{source:?}: {}", stderr(&out));
        let v = json9(&out);
        assert_eq!(not_exported_paths(&v), want, "{source:?}");
        assert_eq!(v["complete"], false);
        // The plan says so too.
        let dry = export9(&[
            source[0],
            source[1],
            "--out",
            &format!("{o}-dry"),
            "--dry-run",
        ]);
        assert!(
            stdout(&dry).contains(
                "cannot be exported: store/mail/example.com/john/INBOX/#msgs/00000100.eml"
            ),
            "{}",
            stdout(&dry)
        );
        // A folder selected that holds none of it: complete.
        let out = export9(&[
            source[0],
            source[1],
            "--user",
            "john@example.com",
            "--folder",
            "Projects",
            "--out",
            &format!("{o}-projects"),
            "-q",
        ]);
        assert_eq!(out.status.code(), Some(0), "{source:?}: {}", stderr(&out));
    }
}

/// A folder whose name holds a control character made the whole export of
/// the live store fail (exit 1, nothing exported); it is reported and the
/// rest exported.
#[test]
fn review9_export_reports_a_folder_with_a_control_character_and_exports_the_rest() {
    let t = TestInstall::sample();
    let odd = t.path("store/mail/example.com/john/Bell\x07");
    std::fs::create_dir_all(odd.join("#msgs")).unwrap();
    std::fs::write(odd.join("#msgs/00000001.eml"), b"Subject: x\r\n\r\nx\r\n").unwrap();
    let out_dir = t.tmp.path().join("out");
    let install = t.install();
    let out = export9(&[
        "--install-dir",
        install.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json9(&out);
    assert_eq!(
        not_exported_paths(&v),
        ["store/mail/example.com/john/Bell\x07"],
        "{v}"
    );
    assert!(!stderr(&out).contains('\x07'), "no raw control characters");
    assert!(out_dir.join("firma.cz/petr/cur").is_dir());
    assert!(out_dir.join("example.com/john/.Sent Items/cur").is_dir());
}

/// Folder names are decoded from modified UTF-7 and can hold any character:
/// one holding terminal escape sequences reached the admin's terminal raw
/// in the plan and in the list of what was not exported.
#[test]
fn review9_export_prints_no_terminal_escapes_from_folder_names() {
    let t = TestInstall::sample();
    let evil = t.path("store/mail/example.com/john/&ABs-[2J&ABs-]0;pwned&AAc-");
    std::fs::create_dir_all(evil.join("#msgs")).unwrap();
    std::fs::write(evil.join("#msgs/00000001.eml"), b"Subject: x\r\n\r\nx\r\n").unwrap();
    std::fs::write(evil.join("#msgs/00000002.eml"), b"not a calendar").unwrap();
    std::fs::write(
        evil.join("index.fld"),
        "U00000002 F00000000 S14 D6ae84300 M6ae84300 I0001 CIPM.Appointment\n",
    )
    .unwrap();
    let install = t.install();
    let out_dir = t.tmp.path().join("out");
    let o = out_dir.to_str().unwrap();
    let dry = export9(&[
        "--install-dir",
        install.to_str().unwrap(),
        "--out",
        o,
        "--dry-run",
    ]);
    assert!(stdout(&dry).contains("?[2J?]0;pwned?"), "{}", stdout(&dry));
    let out = export9(&["--install-dir", install.to_str().unwrap(), "--out", o]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("?[2J?]0;pwned?"), "{}", stderr(&out));
    for text in [stdout(&dry), stdout(&out), stderr(&out)] {
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    }
}

/// Two calendar folders `Cal` and `Cal.ics/x` (names any user may give)
/// need `Cal.ics` as a file and as a directory: the second stopped the
/// whole export (exit 1, later mailboxes never exported). Only its items
/// are left out now, reported.
#[test]
fn review9_export_of_clashing_calendar_names_stops_only_that_folder() {
    let t = TestInstall::sample();
    let john = t.path("store/mail/example.com/john");
    copy_tree(&john.join("Calendar"), &john.join("Cal"));
    std::fs::create_dir(john.join("Cal.ics")).unwrap();
    copy_tree(&john.join("Calendar"), &john.join("Cal.ics/x"));
    let install = t.install();
    let out_dir = t.tmp.path().join("out");
    let out = export9(&[
        "--install-dir",
        install.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--threads",
        "1",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json9(&out);
    let lost = not_exported_paths(&v);
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert!(
        lost.iter().all(|p| p.contains("/Cal.ics/x/#msgs/")),
        "{lost:?}"
    );
    let cal = std::fs::read_to_string(out_dir.join("example.com/john/Cal.ics")).unwrap();
    assert_eq!(cal.matches("BEGIN:VEVENT").count(), 2);
    // The mailboxes after john's were exported.
    assert!(out_dir.join("firma.cz/petr/cur").is_dir());
    assert!(out_dir.join("example.com/olduser/cur").is_dir());
}

/// A mailbox directory named `.jane.mailvault-export` (a crafted backup or
/// store) is jane's staging area: the export failed with exit 1 and left a
/// directory that blocked every later run. A leading `.` becomes `_`.
#[test]
fn review9_export_of_a_mailbox_named_like_a_staging_area() {
    let t = TestInstall::sample();
    copy_tree(
        &t.path("store/mail/example.com/jane"),
        &t.path("store/mail/example.com/.jane.mailvault-export"),
    );
    let install = t.install();
    for threads in ["1", "2"] {
        let out_dir = t.tmp.path().join(format!("out{threads}"));
        let out = export9(&[
            "--install-dir",
            install.to_str().unwrap(),
            "--domain",
            "example.com",
            "--out",
            out_dir.to_str().unwrap(),
            "--threads",
            threads,
            "-q",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let d = out_dir.join("example.com");
        let a = tree(&d.join("jane"));
        assert!(!a.is_empty());
        assert_eq!(tree(&d.join("_jane.mailvault-export")), a);
        let hidden: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.file_name())
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
    }
}

/// Mailbox directories were created 0755 with 0644 files: mail of everyone
/// (decrypted, from an encrypted backup) readable by every local user.
#[test]
fn review9_exported_mailboxes_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestInstall::sample();
    let install = t.install();
    let out_dir = t.tmp.path().join("out");
    let out = export9(&[
        "--install-dir",
        install.to_str().unwrap(),
        "--user",
        "john@example.com",
        "--format",
        "mbox",
        "--out",
        out_dir.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mode = std::fs::metadata(out_dir.join("example.com/john"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    // Another user cannot read the mail (root can: run as nobody), though
    // every directory above the mailbox lets them through.
    std::fs::set_permissions(t.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let domain = std::fs::metadata(out_dir.join("example.com")).unwrap();
    assert_ne!(domain.permissions().mode() & 0o005, 0);
    let st = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(out_dir.join("example.com/john/INBOX.mbox"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success());
}
