//! `mailvault reindex` end to end on the sample install: every folder's
//! index.fld deleted and rebuilt gives back the original lines for every
//! token that can be derived; `--check` finds planted orphans, missing
//! items and bad names, changes nothing, and says so in its exit code.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{TestInstall, ok, run, snapshot, stdout};

fn index_files(install: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(install.join("store/mail"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "index.fld")
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// Tokens of an index.fld line by tag letter.
fn tokens(line: &str) -> BTreeMap<char, String> {
    line.split_whitespace()
        .map(|t| (t.chars().next().unwrap(), t[1..].to_string()))
        .collect()
}

#[test]
fn rebuilt_indexes_give_back_every_derivable_token() {
    // Generated, not the committed copy: git does not keep the files'
    // times, which D and M are derived from (as in a real store).
    let t = tempfile::tempdir().unwrap();
    let install = t.path().join("install");
    ok(&["sample-install", install.to_str().unwrap()]);
    let files = index_files(&install);
    assert!(files.len() >= 15, "{files:?}");
    let originals: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|f| (f.clone(), fs::read_to_string(f).unwrap()))
        .collect();
    for f in &files {
        fs::remove_file(f).unwrap();
    }
    let o = run(&[
        "reindex",
        "--check",
        "--install-dir",
        install.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(stdout(&o).contains("no index.fld"));
    ok(&[
        "reindex",
        "--install-dir",
        install.to_str().unwrap(),
        "--running-check",
        "false",
    ]);
    let mut compared = 0;
    for (f, orig) in &originals {
        let now = fs::read_to_string(f).unwrap();
        let (a, b): (Vec<&str>, Vec<&str>) = (orig.lines().collect(), now.lines().collect());
        assert_eq!(a.len(), b.len(), "{}", f.display());
        for (x, y) in a.iter().zip(&b) {
            let (tx, ty) = (tokens(x), tokens(y));
            // F (flags) is state the items do not carry; everything else is derived.
            for tag in ['U', 'S', 'D', 'M', 'I', 'C'] {
                assert_eq!(
                    tx.get(&tag),
                    ty.get(&tag),
                    "{}: {tag} of `{x}` vs `{y}`",
                    f.display()
                );
            }
            compared += 1;
        }
    }
    assert!(compared > 60, "{compared}");
    ok(&[
        "reindex",
        "--check",
        "--install-dir",
        install.to_str().unwrap(),
    ]);
}

#[test]
fn check_finds_planted_problems_and_changes_nothing_then_rebuild_fixes_them() {
    let t = TestInstall::sample();
    let install = t.install();
    let inbox = install.join("store/mail/example.com/john/INBOX");
    let sent = install.join("store/mail/example.com/john/Sent Items");
    // An orphan (an item without a record), a missing item (a record
    // without an item), a bad name, a wrong size.
    fs::copy(
        inbox.join("#msgs/00000001.eml"),
        inbox.join("#msgs/00000063.eml"),
    )
    .unwrap();
    fs::remove_file(sent.join("#msgs/00000002.eml")).unwrap();
    fs::write(
        inbox.join("#msgs/0000002A.eml"),
        "upper-case hex is not Kerio's",
    )
    .unwrap();
    fs::write(inbox.join("#msgs/notes.txt"), "x").unwrap();
    let mut grown = fs::read(inbox.join("#msgs/00000003.eml")).unwrap();
    grown.extend_from_slice(b"X");
    fs::write(inbox.join("#msgs/00000003.eml"), grown).unwrap();
    let before = snapshot(&install);
    let o = run(&[
        "reindex",
        "--check",
        "--json",
        "--install-dir",
        install.to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
    ]);
    assert_eq!(o.status.code(), Some(5));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let by_folder = |name: &str| {
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["folder"].as_str().unwrap().ends_with(name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} not reported: {r}"))
    };
    let i = by_folder("/INBOX");
    assert_eq!(i["items_without_records"], serde_json::json!([0x63]));
    assert_eq!(
        i["bad_names"],
        serde_json::json!(["0000002A.eml", "notes.txt"])
    );
    assert_eq!(i["wrong_sizes"], serde_json::json!([3]));
    assert!(i["status_behind"].as_bool().unwrap());
    let s = by_folder("/Sent Items");
    assert_eq!(s["records_without_items"], serde_json::json!([2]));
    assert_eq!(r["with_problems"], 2);
    assert_eq!(snapshot(&install), before, "--check changes nothing");
    // A server that runs: rebuild refused.
    let o = run(&[
        "reindex",
        "--install-dir",
        install.to_str().unwrap(),
        "--running-check",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(6));
    assert_eq!(snapshot(&install), before);
    // Rebuild: exit 3 (bad names remain, untouched), then the check is clean
    // but for them.
    let o = run(&[
        "reindex",
        "--install-dir",
        install.to_str().unwrap(),
        "--running-check",
        "false",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(inbox.join("#msgs/0000002A.eml").exists() && inbox.join("#msgs/notes.txt").exists());
    let index = fs::read_to_string(inbox.join("index.fld")).unwrap();
    assert!(index.lines().any(|l| l.starts_with("U00000063 ")));
    assert!(
        !fs::read_to_string(sent.join("index.fld"))
            .unwrap()
            .contains("U00000002 ")
    );
    let status = fs::read_to_string(inbox.join("status.fld")).unwrap();
    assert!(status.contains("U00000064"), "{status}");
    fs::remove_file(inbox.join("#msgs/0000002A.eml")).unwrap();
    fs::remove_file(inbox.join("#msgs/notes.txt")).unwrap();
    ok(&[
        "reindex",
        "--check",
        "--install-dir",
        install.to_str().unwrap(),
    ]);
    // Usage.
    let o = run(&[
        "reindex",
        "--check",
        "--install-dir",
        install.to_str().unwrap(),
        "-u",
        "john",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["reindex", "--check", "--install-dir", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn an_item_numbered_ffffffff_is_reported_as_leaving_no_number() {
    let t = TestInstall::sample();
    let install = t.install();
    let jane = install.join("store/mail/example.com/jane/INBOX");
    fs::copy(
        jane.join("#msgs/00000001.eml"),
        jane.join("#msgs/ffffffff.eml"),
    )
    .unwrap();
    let args = [
        "--install-dir",
        install.to_str().unwrap(),
        "-u",
        "jane@example.com",
    ];
    let o = run(&[&["reindex", "--check", "--json"][..], &args].concat());
    assert_eq!(o.status.code(), Some(5));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["problems"][0]["no_number_left"], true, "{r}");
    // A rebuild indexes it but cannot give the folder numbers back: exit 3.
    let o = run(&[&["reindex", "--running-check", "false"][..], &args].concat());
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(stdout(&o).contains("no number is left"), "{}", stdout(&o));
}

#[test]
fn a_temporary_left_beside_index_fld_is_reported_and_removed_by_a_rebuild() {
    let t = TestInstall::sample();
    let install = t.install();
    let inbox = install.join("store/mail/example.com/jane/INBOX");
    // A run killed between writing the new index.fld and renaming it.
    fs::write(inbox.join(".mailvault-tmp-index.fld"), "U00000001 half").unwrap();
    let args = [
        "--install-dir",
        install.to_str().unwrap(),
        "-u",
        "jane@example.com",
    ];
    let o = run(&[&["reindex", "--check"][..], &args].concat());
    assert_eq!(o.status.code(), Some(5));
    assert!(
        stdout(&o).contains(".mailvault-tmp-index.fld"),
        "{}",
        stdout(&o)
    );
    ok(&[&["reindex", "--running-check", "false"][..], &args].concat());
    assert!(!inbox.join(".mailvault-tmp-index.fld").exists());
    ok(&[&["reindex", "--check"][..], &args].concat());
}
