//! Crash safety and the directory lock: kill -9 at several moments never
//! leaves an incomplete file under a final name; the next run cleans up and
//! succeeds; a second concurrent run fails naming the holder.

use std::time::{Duration, Instant};

use crate::util::*;

fn final_names_are_complete(t: &TestInstall) {
    for z in t.archives() {
        assert_valid_zip(&z);
    }
    if !t.archives().is_empty() {
        ok(&["verify", t.backups().to_str().unwrap()]);
    }
}

#[test]
fn kill_9_at_any_moment_leaves_nothing_partial_and_the_next_run_succeeds() {
    let t = TestInstall::generated(4000, 3);
    // A small split size gives many volumes, so kills land between volumes and renames too.
    for delay_ms in [30, 120, 300, 600, 1000, 1500] {
        let mut child = t.spawn_backup(
            "full",
            &["--split-size", "5M", "--threads", "1", "-q"],
            false,
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        final_names_are_complete(&t);
    }
    let before = t.archives().len();
    let s = t.backup_ok("full", &["--split-size", "5M"]);
    assert!(t.archives().len() > before);
    assert_eq!(
        count_prefixed(&t.backups(), ".mailvault-tmp"),
        0,
        "the next run removes stale temporaries"
    );
    assert!(s["volumes"].as_array().unwrap().len() > 1);
    final_names_are_complete(&t);
}

#[test]
fn a_second_run_at_once_fails_naming_the_holder() {
    let t = TestInstall::generated(3000, 4);
    let mut first = t.spawn_backup("full", &["--threads", "1", "-q"], false);
    let lock = t.backups().join(".mailvault.lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("pid")) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = t.backup("full", &[]);
    let still_running = first.try_wait().unwrap().is_none();
    assert!(
        still_running,
        "the first run finished too early for this test"
    );
    assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains("in use by another mailvault run")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    assert!(err.contains("no manual unlock"), "{err}");
    // Killing the holder releases the lock: no manual unlock is needed.
    first.kill().unwrap();
    first.wait().unwrap();
    t.backup_ok("full", &[]);
}
