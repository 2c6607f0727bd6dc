//! kmsrecover: exact restores at every scope, chains from a directory, a
//! file, split volumes and a point in time, hostile and damaged archives,
//! the safety copy, crash convergence.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::*;

/// An install with a full and a differential; returns the expected state at the differential.
fn chain(t: &TestInstall, extra: &[&str]) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    t.backup_ok("full", extra);
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
    t.backup_ok("differential", extra);
    snapshot(&t.install())
}

/// Damage after the backup: edits, additions, deletions, touched mtimes.
fn wreck(t: &TestInstall) {
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000001.eml"),
        b"overwritten",
    )
    .unwrap();
    std::fs::write(
        t.path("store/mail/example.com/john/Sent Items/#msgs/00000777.eml"),
        b"new after backup",
    )
    .unwrap();
    std::fs::remove_dir_all(t.path("store/mail/example.com/jane")).unwrap();
    std::fs::remove_file(t.path("store/mail/firma.cz/petr/INBOX/index.fld")).unwrap();
    set_mtime(
        &t.path("store/mail/firma.cz/jana/INBOX/#msgs/00000001.eml"),
        1_900_000_000,
    );
    std::fs::write(t.path("mailserver.cfg"), b"<config/>").unwrap();
    std::fs::remove_dir_all(t.path("sslcert")).unwrap();
    std::fs::write(
        t.path("store/logs/mail.log"),
        b"log written after the backup: a restore must keep it",
    )
    .unwrap();
}

fn restore(t: &TestInstall, args: &[&str]) -> std::process::Output {
    let install = t.install();
    let backups = t.backups();
    let mut a = vec!["--install-dir", install.to_str().unwrap()];
    a.extend_from_slice(args);
    a.push(backups.to_str().unwrap());
    kms(&a)
}

fn restore_ok(t: &TestInstall, args: &[&str]) {
    let out = restore(t, args);
    assert!(
        out.status.success(),
        "kmsrecover {args:?}: {}",
        stderr(&out)
    );
}

fn under<'a>(
    m: &'a BTreeMap<String, (Vec<u8>, std::time::SystemTime)>,
    prefix: &str,
) -> BTreeMap<&'a String, &'a (Vec<u8>, std::time::SystemTime)> {
    m.iter().filter(|(k, _)| k.starts_with(prefix)).collect()
}

#[test]
fn restoring_everything_reproduces_the_chain_state_exactly() {
    let t = TestInstall::sample();
    let expected = chain(&t, &[]);
    wreck(&t);
    let out = restore(&t, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let now = snapshot(&t.install());
    // Everything backed up is as it was at the differential: content and mtime.
    for (k, v) in &expected {
        if k.starts_with("store/logs/")
            || k.starts_with("store/queue/")
            || k.starts_with("store/tmp/")
        {
            continue;
        }
        assert_eq!(now.get(k), Some(v), "{k}");
    }
    // Files that did not exist at backup time are gone; what a backup leaves out is untouched.
    assert!(!now.contains_key("store/mail/example.com/john/Sent Items/#msgs/00000777.eml"));
    assert!(
        !now.contains_key("store/mail/example.com/jane/INBOX/#msgs/00000001.eml"),
        "deleted before the differential"
    );
    assert_eq!(
        now["store/logs/mail.log"].0,
        b"log written after the backup: a restore must keep it"
    );
    assert_eq!(
        under(&now, "store/mail/example.com/olduser/"),
        under(&expected, "store/mail/example.com/olduser/"),
        "disabled user untouched"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["safety_copy"]
            .as_str()
            .unwrap()
            .contains("safety-copies/C")
    );
}

#[test]
fn restoring_a_folder_touches_nothing_else() {
    let t = TestInstall::sample();
    let expected = chain(&t, &[]);
    wreck(&t);
    let before = snapshot(&t.install());
    restore_ok(
        &t,
        &["-d", "example.com", "-u", "john", "-f", "INBOX", "-q"],
    );
    let after = snapshot(&t.install());
    let folder = "store/mail/example.com/john/INBOX/";
    assert_eq!(under(&after, folder), under(&expected, folder));
    let outside = |m: &BTreeMap<String, (Vec<u8>, std::time::SystemTime)>| {
        m.iter()
            .filter(|(k, _)| !k.starts_with(folder))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        outside(&after),
        outside(&before),
        "nothing outside the folder changed"
    );
}

#[test]
fn restoring_a_user_a_domain_and_a_mask() {
    let t = TestInstall::sample();
    let expected = chain(&t, &[]);
    wreck(&t);
    // A user deleted after the backup comes back whole.
    restore_ok(&t, &["-d", "example.com", "-u", "jane", "-q"]);
    let now = snapshot(&t.install());
    assert_eq!(
        under(&now, "store/mail/example.com/jane/"),
        under(&expected, "store/mail/example.com/jane/")
    );
    assert!(
        now.contains_key("store/mail/example.com/john/Sent Items/#msgs/00000777.eml"),
        "john untouched"
    );
    // The whole domain firma.cz.
    restore_ok(&t, &["-d", "firma.cz", "-q"]);
    let now = snapshot(&t.install());
    assert_eq!(
        under(&now, "store/mail/firma.cz/"),
        under(&expected, "store/mail/firma.cz/")
    );
    // Configuration, licence and certificates only.
    restore_ok(&t, &["-m", "cfg,license,sslca,sslcert", "-q"]);
    let now = snapshot(&t.install());
    for k in [
        "mailserver.cfg",
        "users.cfg",
        "sslcert/server.crt",
        "sslcert/server.key",
        "license/license.key",
    ] {
        assert_eq!(now.get(k), expected.get(k), "{k}");
    }
    assert!(
        now.contains_key("store/mail/example.com/john/Sent Items/#msgs/00000777.eml"),
        "mail untouched by -m cfg"
    );
}

#[test]
fn list_reads_the_catalog_without_extracting() {
    let t = TestInstall::sample();
    chain(&t, &[]);
    let out = kms_ok(&[
        "-d",
        "example.com",
        "-u",
        "john",
        "-l",
        "--json",
        t.backups().to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inbox = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "INBOX")
        .unwrap();
    assert_eq!(
        inbox["items"], 13,
        "12 messages + the one added before the differential"
    );
    let out = kms_ok(&["-l", t.backups().to_str().unwrap()]);
    assert!(stdout(&out).contains("example.com") && stdout(&out).contains("firma.cz"));
}

#[test]
fn chains_from_a_file_a_differential_split_volumes_and_a_point_in_time() {
    let t = TestInstall::sample();
    let expected = chain(&t, &["--split-size", "64K"]);
    let archives = t.archives();
    let first_full = archives
        .iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with('F'))
        .unwrap()
        .clone();
    let diff = archives
        .iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with('D'))
        .unwrap()
        .clone();
    let into = |name: &str| t.tmp.path().join(name);
    // A differential given by file: its base is found beside it.
    kms_ok(&[
        "--into",
        into("d").to_str().unwrap(),
        "-q",
        diff.to_str().unwrap(),
    ]);
    let got = snapshot(&into("d"));
    let want = backed_up(expected.clone());
    assert_eq!(got, want);
    // The full given by file (a split backup: any volume names it): the state before the changes.
    kms_ok(&[
        "--into",
        into("f").to_str().unwrap(),
        "-q",
        first_full.to_str().unwrap(),
    ]);
    let f = snapshot(&into("f"));
    assert!(f.contains_key("store/mail/example.com/jane/INBOX/#msgs/00000001.eml"));
    assert!(!f.contains_key("store/mail/example.com/john/INBOX/#msgs/00000100.eml"));
    // --at the full's time from the directory picks the full.
    let stem = &first_full.file_name().unwrap().to_str().unwrap()[1..17];
    let at = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stem[0..4],
        &stem[4..6],
        &stem[6..8],
        &stem[9..11],
        &stem[11..13],
        &stem[13..15]
    );
    kms_ok(&[
        "--into",
        into("at").to_str().unwrap(),
        "--at",
        &at,
        "-q",
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(snapshot(&into("at")), f);
    // A missing volume is named; a missing base is named.
    let vol = archives
        .iter()
        .find(|p| {
            p.to_str().unwrap().ends_with(".1.zip")
                && p.file_name().unwrap().to_str().unwrap().starts_with('F')
        })
        .unwrap();
    std::fs::rename(vol, t.tmp.path().join("aside.zip")).unwrap();
    let out = kms(&[
        "--into",
        into("x").to_str().unwrap(),
        diff.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing volume 1") && stderr(&out).contains(".1.zip"),
        "{}",
        stderr(&out)
    );
    std::fs::rename(t.tmp.path().join("aside.zip"), vol).unwrap();
    for v in archives
        .iter()
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with('F'))
    {
        std::fs::remove_file(v).unwrap();
    }
    let out = kms(&[
        "--into",
        into("y").to_str().unwrap(),
        diff.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("needs its base full F"),
        "{}",
        stderr(&out)
    );
    assert!(!into("y").exists() || std::fs::read_dir(into("y")).unwrap().next().is_none());
}

#[test]
fn the_safety_copy_undoes_a_wrong_restore() {
    let t = TestInstall::sample();
    chain(&t, &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000200.eml"),
        b"precious mail that arrived today",
    )
    .unwrap();
    let before = snapshot(&t.install());
    let out = restore(&t, &["-d", "example.com", "-u", "john", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !t.path("store/mail/example.com/john/INBOX/#msgs/00000200.eml")
            .exists(),
        "the restore replaced the mailbox"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copy = v["safety_copy"].as_str().unwrap().to_string();
    assert_valid_zip(Path::new(&copy));
    kms_ok(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "--no-safety-copy",
        "-q",
        &copy,
    ]);
    assert_eq!(
        snapshot(&t.install()),
        before,
        "undo brings back the state before the restore"
    );
    // The safety copy is outside the chain: the directory's newest backup is still the differential.
    let l = kms_ok(&["-l", t.backups().to_str().unwrap()]);
    assert!(stdout(&l).contains("+ D"), "{}", stdout(&l));
}

#[test]
fn refuses_while_the_server_runs_unless_forced() {
    let t = TestInstall::sample();
    chain(&t, &[]);
    let out = restore(&t, &["--running-check", "true"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        stderr(&out).contains("mail server is running") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    // A pid file naming a live process (this test's own) means running; a dead one does not.
    let pid = t.tmp.path().join("mailserver.pid");
    std::fs::write(&pid, std::process::id().to_string()).unwrap();
    let out = restore(&t, &["--pid-file", pid.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("names live process"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&pid, "999999999").unwrap();
    let out = restore(&t, &["--pid-file", pid.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = restore(&t, &["--running-check", "true", "--force", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn dry_run_changes_nothing_and_as_folder_restores_beside() {
    let t = TestInstall::sample();
    let expected = chain(&t, &[]);
    wreck(&t);
    let before = snapshot(&t.install());
    let out = restore(&t, &["--dry-run"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("dry run") && stdout(&out).contains("00000777.eml"),
        "{}",
        stdout(&out)
    );
    assert_eq!(snapshot(&t.install()), before);
    let out = restore(
        &t,
        &[
            "-d",
            "example.com",
            "-u",
            "john",
            "-f",
            "INBOX",
            "--as-folder",
            "Restored 2026-11-20",
            "-q",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after = snapshot(&t.install());
    let restored: BTreeMap<String, _> = after
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("store/mail/example.com/john/Restored 2026-11-20/")
                .map(|r| (r.to_string(), v.clone()))
        })
        .collect();
    let want: BTreeMap<String, _> = expected
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("store/mail/example.com/john/INBOX/")
                .map(|r| (r.to_string(), v.clone()))
        })
        .collect();
    assert_eq!(restored, want);
    let old: BTreeMap<_, _> = after
        .iter()
        .filter(|(k, _)| !k.contains("Restored 2026-11-20"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(old, before, "live folders untouched");
    let again = restore(
        &t,
        &[
            "-d",
            "example.com",
            "-u",
            "john",
            "-f",
            "INBOX",
            "--as-folder",
            "Restored 2026-11-20",
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"));
}

#[test]
fn kill_9_mid_restore_leaves_each_root_old_or_new_and_a_rerun_converges() {
    let t = TestInstall::generated(3000, 9);
    t.backup_ok("full", &[]);
    let domain = "store/mail/d1.example.com/";
    let expected = under(&snapshot(&t.install()), domain)
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<BTreeMap<_, _>>();
    for delay in [20u64, 80, 200, 400] {
        // Wreck the domain, then kill a restore of it partway.
        for e in walkdir::WalkDir::new(t.path(domain))
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .step_by(7)
        {
            std::fs::write(e.path(), b"wrecked").unwrap();
        }
        let wrecked = under(&snapshot(&t.install()), domain)
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kmsrecover"))
            .args([
                "--install-dir",
                t.install().to_str().unwrap(),
                "-d",
                "d1.example.com",
                "--no-safety-copy",
                "-q",
                t.backups().to_str().unwrap(),
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        let mid = under(&snapshot(&t.install()), domain)
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>();
        assert!(
            mid == wrecked || mid == expected,
            "after kill at {delay} ms the domain is neither old nor new"
        );
        restore_ok(&t, &["-d", "d1.example.com", "--no-safety-copy", "-q"]);
        let now = under(&snapshot(&t.install()), domain)
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>();
        assert_eq!(now, expected, "a re-run converges");
        assert_eq!(count_prefixed(&t.path("store/mail"), ".kmsrecover"), 0);
    }
}

#[test]
fn refuses_while_a_backup_holds_the_directory() {
    let t = TestInstall::sample();
    chain(&t, &[]);
    // `flock` (util-linux) holds the backup directory's lock as a running backup would.
    let lock = t.backups().join(".mailvault.lock");
    std::fs::write(
        &lock,
        "pid 4242\nstarted 2026-11-23T01:00:00Z\ncommand backup full\n",
    )
    .unwrap();
    let mut holder = std::process::Command::new("flock")
        .args(["-F", "-x", lock.to_str().unwrap(), "sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let into = t.tmp.path().join("into");
    let out = kms(&[
        "--into",
        into.to_str().unwrap(),
        t.backups().to_str().unwrap(),
    ]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(out.status.code(), Some(4));
    // The refusal names the process really holding the lock (found in
    // /proc/locks), not the stale record in the lock file.
    assert!(
        stderr(&out).contains("in use by another mailvault run")
            && stderr(&out).contains(&format!("pid {}", holder.id()))
            && stderr(&out).contains("sleep 30")
            && !stderr(&out).contains("pid 4242"),
        "{}",
        stderr(&out)
    );
    assert!(!into.exists());
    kms_ok(&[
        "--into",
        into.to_str().unwrap(),
        "-q",
        t.backups().to_str().unwrap(),
    ]);
}

#[test]
fn store_and_cfgdir_send_each_part_where_kerio_would() {
    let t = TestInstall::sample();
    let expected = chain(&t, &[]);
    // Restore into a fresh layout: store data to -s, configuration, licences and certificates to -c.
    let store = t.tmp.path().join("other-store");
    let cfg = t.tmp.path().join("other-cfg");
    let (s, c, b) = (store.to_str().unwrap(), cfg.to_str().unwrap(), t.backups());
    kms_ok(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-s",
        s,
        "-c",
        c,
        "-q",
        b.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(cfg.join("users.cfg")).unwrap(),
        expected["users.cfg"].0
    );
    assert!(cfg.join("license/license.key").is_file() && cfg.join("sslcert/server.crt").is_file());
    assert!(!cfg.join("store").exists(), "store data goes to -s, not -c");
    let want = under(&expected, "store/mail/example.com/john/");
    let got = snapshot(&store);
    for (k, v) in want {
        assert_eq!(got.get(k.strip_prefix("store/").unwrap()), Some(v), "{k}");
    }
    // The live install was not touched.
    assert_eq!(snapshot(&t.install()), expected);
    // A second run with a change in the -s store: replace semantics there too, with a safety copy of it.
    std::fs::write(
        store.join("mail/example.com/john/INBOX/#msgs/00000fff.eml"),
        b"stray",
    )
    .unwrap();
    let out = kms_ok(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-s",
        s,
        "-c",
        c,
        "-d",
        "example.com",
        "-u",
        "john",
        "--json",
        b.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["deleted"], 1);
    assert!(
        !store
            .join("mail/example.com/john/INBOX/#msgs/00000fff.eml")
            .exists()
    );
    let copy = v["safety_copy"].as_str().unwrap();
    assert!(
        entry_names(Path::new(copy))
            .iter()
            .any(|n| n.ends_with("INBOX/#msgs/00000fff.eml")),
        "the safety copy holds what was removed"
    );
}

#[test]
fn a_safety_copy_restored_without_a_selection_touches_only_its_scope() {
    let t = TestInstall::sample();
    chain(&t, &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000200.eml"),
        b"today's mail",
    )
    .unwrap();
    let out = restore(&t, &["-d", "example.com", "-u", "john", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copy = v["safety_copy"].as_str().unwrap().to_string();
    assert!(
        entry_text(Path::new(&copy), ".version.txt")
            .contains("scope: store/mail/example.com/john\n")
    );
    let before = snapshot(&t.install());
    // No selection: "everything" in a partial archive is its scope, nothing more.
    kms_ok(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "--no-safety-copy",
        "-q",
        &copy,
    ]);
    let after = snapshot(&t.install());
    assert_eq!(
        after["store/mail/example.com/john/INBOX/#msgs/00000200.eml"].0,
        b"today's mail"
    );
    let outside = |m: &BTreeMap<String, (Vec<u8>, std::time::SystemTime)>| {
        m.iter()
            .filter(|(k, _)| !k.starts_with("store/mail/example.com/john/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        outside(&after),
        outside(&before),
        "nothing outside the safety copy's scope changed"
    );
    // A selection outside the scope is refused, naming the scope.
    let out = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "-d",
        "firma.cz",
        &copy,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not in the backup") || stderr(&out).contains("holds only"),
        "{}",
        stderr(&out)
    );
}
