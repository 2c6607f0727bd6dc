//! Schedules: Kerio's default, run-due runs a slot once, systemd units.

use crate::util::*;

#[test]
fn list_shows_kerios_default_when_there_is_no_config() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("none.toml");
    let out = ok(&[
        "schedule",
        "list",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[0]["type"], "full");
    assert_eq!(a[0]["cron"], "0 1 * * 0");
    assert_eq!(a[1]["cron"], "0 1 * * 1-6");
    assert!(a[0]["next_run"].as_str().unwrap().contains("T01:00:00"));
}

#[test]
fn run_due_runs_each_slot_once() {
    let t = TestInstall::sample();
    let cfg = t.tmp.path().join("mailvault.toml");
    std::fs::write(
        &cfg,
        format!(
            "install_dir = \"{}\"\nbackup_dir = \"{}\"\n[[schedule]]\nname = \"every-minute\"\ntype = \"full\"\ncron = \"* * * * *\"\n",
            t.install().display(),
            t.backups().display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let first = ok(&["schedule", "run-due", "--config", c, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let ran = v.as_array().unwrap().len();
    // The minute may turn between the two calls; then the second one runs the new slot once.
    let second = ok(&["schedule", "run-due", "--config", c, "--json"]);
    let v2: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(ran, 1);
    assert_eq!(t.archives().len(), 1 + v2.as_array().unwrap().len());
    if v2.as_array().unwrap().len() == 1 {
        assert_ne!(v[0]["slot"], v2[0]["slot"]);
    }
    let list = ok(&["schedule", "list", "--config", c]);
    assert!(!stdout(&list).contains("never"), "{}", stdout(&list));
}

#[test]
fn bad_config_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("m.toml");
    std::fs::write(
        &cfg,
        "[[schedule]]\ntype = \"full\"\ncron = \"0 25 * * *\"\n",
    )
    .unwrap();
    let out = run(&["schedule", "list", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("m.toml") && stderr(&out).contains("bad cron"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn systemd_units_call_run_due() {
    let out = ok(&[
        "schedule",
        "systemd",
        "--config",
        "/etc/mailvault/mailvault.toml",
    ]);
    let s = stdout(&out);
    assert!(
        s.contains("schedule run-due --config /etc/mailvault/mailvault.toml"),
        "{s}"
    );
    assert!(
        s.contains("[Timer]") && s.contains("Persistent=true"),
        "{s}"
    );
}

#[test]
fn daemon_runs_due_schedules_in_the_foreground() {
    let t = TestInstall::sample();
    let cfg = t.tmp.path().join("mailvault.toml");
    std::fs::write(
        &cfg,
        format!(
            "install_dir = \"{}\"\nbackup_dir = \"{}\"\n[[schedule]]\ntype = \"full\"\ncron = \"* * * * *\"\n",
            t.install().display(),
            t.backups().display()
        ),
    )
    .unwrap();
    let mut child = bin()
        .args(["daemon", "-q", "--config", cfg.to_str().unwrap()])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while t.archives().is_empty() && start.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(still_running, "the daemon keeps running between slots");
    assert_eq!(t.archives().len(), 1, "the current slot ran once");
    assert_valid_zip(&t.archives()[0]);
}

#[test]
fn a_schedule_with_a_target_and_a_key_writes_encrypted_archives_there() {
    let t = TestInstall::sample();
    let key = t.tmp.path().join("k.key");
    ok(&["key", "generate", "--out", key.to_str().unwrap()]);
    let target = t.tmp.path().join("offsite");
    let cfg = t.tmp.path().join("mailvault.toml");
    std::fs::write(
        &cfg,
        format!(
            "install_dir = \"{}\"\nbackup_dir = \"{}\"\ntarget = \"file://{}\"\nkey = \"{}\"\n[[schedule]]\nname = \"every-minute\"\ntype = \"full\"\ncron = \"* * * * *\"\n",
            t.install().display(),
            t.backups().display(),
            target.display(),
            key.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let out = ok(&["schedule", "run-due", "--config", c, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["error"].is_null(), "{v}");
    let names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".zip.enc"), "{names:?}");
    assert!(t.archives().is_empty(), "nothing plain in the backup dir");
    let list = ok(&["schedule", "list", "--config", c, "--json"]);
    assert!(stdout(&list).contains("file://") || stdout(&list).contains("offsite"));
    // A target that does not parse is named when the config is read.
    std::fs::write(
        &cfg,
        "target = \"gopher://u:secret@x/\"\n[[schedule]]\ntype = \"full\"\ncron = \"0 1 * * *\"\n",
    )
    .unwrap();
    let out = run(&["schedule", "list", "--config", c]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("gopher") && !stderr(&out).contains("secret"),
        "{}",
        stderr(&out)
    );
}
