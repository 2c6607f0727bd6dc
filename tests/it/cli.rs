//! Command-line behaviour: help with examples, dry runs, JSON output, exit codes.

use crate::util::*;

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = ok(&["backup", "--help"]);
    let s = stdout(&out);
    assert!(
        s.contains("Examples:") && s.contains("mailvault backup differential"),
        "{s}"
    );
    assert!(
        s.contains("--split-size") && s.contains("--keep-full"),
        "{s}"
    );
    let top = stdout(&ok(&["--help"]));
    assert!(
        top.contains("Exit codes:") && top.contains("4  the backup directory is in use"),
        "{top}"
    );
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000500.eml"),
        b"new",
    )
    .unwrap();
    std::fs::remove_file(t.path("store/mail/example.com/jane/INBOX/#msgs/00000001.eml")).unwrap();
    let before: Vec<_> = std::fs::read_dir(t.backups())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let out = t.backup("differential", &["--dry-run"]);
    assert!(out.status.success());
    let s = stdout(&out);
    assert!(
        s.contains("dry run: would write D")
            && s.contains("store:     1 files")
            && s.contains("deleted:   1 files"),
        "{s}"
    );
    assert!(
        s.contains("store/mail/example.com/jane/INBOX/#msgs/00000001.eml"),
        "{s}"
    );
    let json = t.backup("differential", &["--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["store_files"], 1);
    assert_eq!(v["type"], "differential");
    let after: Vec<_> = std::fs::read_dir(t.backups())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn list_groups_chains_and_prints_json() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000600.eml"),
        b"new",
    )
    .unwrap();
    t.backup_ok("differential", &[]);
    let out = ok(&["list", t.backups().to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chains"].as_array().unwrap().len(), 1);
    assert_eq!(v["chains"][0]["differentials"][0]["files"], 1);
    assert_eq!(v["chains"][0]["full"]["status"], "ok");
    let human = stdout(&ok(&["list", t.backups().to_str().unwrap()]));
    assert!(
        human.contains("full") && human.contains("differential") && human.contains("ok"),
        "{human}"
    );
}

#[test]
fn plain_progress_lines_when_not_a_terminal() {
    let t = TestInstall::sample();
    let out = t.backup("full", &[]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("writing:") && err.contains("files"), "{err}");
    let quiet = t.backup("full", &["-q"]);
    assert!(quiet.status.success());
    assert!(stderr(&quiet).is_empty() && stdout(&quiet).is_empty());
}

#[test]
fn a_progress_bar_on_a_terminal() {
    // `script` gives the command a pseudo-terminal, as an admin's shell would.
    let t = TestInstall::generated(1500, 11);
    let cmd = format!(
        "{} backup full --install-dir {} --backup-dir {}",
        env!("CARGO_BIN_EXE_mailvault"),
        t.install().display(),
        t.backups().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("writing") && screen.contains("files") && screen.contains('\r'),
        "no bar drawn: {screen:?}"
    );
    assert!(
        !screen.contains("writing: done"),
        "plain lines are for non-terminals only"
    );
}
