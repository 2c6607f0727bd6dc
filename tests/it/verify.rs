//! `verify` finds and names a flipped byte, a truncated volume, a missing volume.

use crate::util::*;

#[test]
fn flipped_byte_is_named_with_its_entry() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let zip = t.archives()[0].clone();
    let entry = "@backup/store/mail/example.com/john/INBOX/#msgs/00000003.eml";
    flip_byte_in_entry(&zip, entry);
    let out = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    assert!(
        err.contains(entry) && err.contains(zip.to_str().unwrap()),
        "{err}"
    );
    let json = run(&["verify", zip.to_str().unwrap(), "--json"]);
    assert_eq!(json.status.code(), Some(5));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["sets"][0]["problems"][0]["entry"], entry);
}

#[test]
fn truncated_volume_is_named() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let zip = t.archives()[0].clone();
    let len = std::fs::metadata(&zip).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&zip)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let out = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr(&out).contains(zip.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("DAMAGED"), "{}", stdout(&out));
}

#[test]
fn missing_volume_is_named_and_other_volumes_stay_readable() {
    let t = TestInstall::sample();
    t.backup_ok("full", &["--split-size", "64K"]);
    let vols = t.archives();
    let one = vols
        .iter()
        .find(|p| p.to_str().unwrap().ends_with(".1.zip"))
        .unwrap()
        .clone();
    std::fs::remove_file(&one).unwrap();
    let out = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    assert!(
        err.contains("missing volume 1") && err.contains(one.to_str().unwrap()),
        "{err}"
    );
    // Losing one volume loses only its files: the others still open anywhere.
    for v in t.archives() {
        assert_valid_zip(&v);
    }
    let list = ok(&["list", t.backups().to_str().unwrap()]);
    assert!(
        stdout(&list).contains("missing volume 1"),
        "{}",
        stdout(&list)
    );
}

#[test]
fn differential_whose_base_is_gone_is_reported() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000400.eml"),
        b"x",
    )
    .unwrap();
    t.backup_ok("differential", &[]);
    let full = t
        .archives()
        .into_iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with('F'))
        .unwrap();
    std::fs::remove_file(&full).unwrap();
    let out = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr(&out).contains("base full F") && stderr(&out).contains("is not in"),
        "{}",
        stderr(&out)
    );
    let list = ok(&["list", t.backups().to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["orphans"].as_array().unwrap().len(), 1);
}
