//! Salvage that salvages (issue #6, section 3): from a volume whose central
//! directory is gone (compared with what bsdtar, an independent reader,
//! recovers), from the volumes left when the first, a middle or the last is
//! missing, and without the catalog. Every restored file is compared with
//! the source byte for byte; nothing live is ever removed; exit code 3.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::*;

fn content(m: &BTreeMap<String, (Vec<u8>, std::time::SystemTime)>) -> BTreeMap<String, Vec<u8>> {
    m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

/// Salvages `source` into a new directory; returns (exit code, stdout, what was written).
fn salvage_into(
    t: &TestInstall,
    source: &Path,
    name: &str,
) -> (i32, String, BTreeMap<String, Vec<u8>>) {
    let into = t.tmp.path().join(name);
    let out = kms(&[
        "--into",
        into.to_str().unwrap(),
        "--salvage",
        source.to_str().unwrap(),
    ]);
    let got = if into.exists() {
        tree(&into)
    } else {
        BTreeMap::new()
    };
    (
        out.status.code().unwrap_or(-1),
        stdout(&out) + &stderr(&out),
        got,
    )
}

/// Every file written must be the backed-up one (index.bad stands for index.fld).
fn all_intact(got: &BTreeMap<String, Vec<u8>>, source: &BTreeMap<String, Vec<u8>>, what: &str) {
    for (k, v) in got {
        let orig = k.replace("/index.bad", "/index.fld");
        assert_eq!(
            source.get(&orig),
            Some(v),
            "{what}: {k} is not the backed-up content"
        );
    }
}

#[test]
fn a_half_truncated_volume_gives_back_what_bsdtar_gives_back() {
    let t = TestInstall::generated(2000, 21);
    t.backup_ok("full", &[]);
    let source = content(&backed_up(snapshot(&t.install())));
    let zip = t.archives()[0].clone();
    let len = std::fs::metadata(&zip).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&zip)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // bsdtar walks the local headers too; it stops with an error at the cut.
    let by_bsdtar = t.tmp.path().join("bsdtar");
    std::fs::create_dir(&by_bsdtar).unwrap();
    let _ = std::process::Command::new("bsdtar")
        .args([
            "-xf",
            zip.to_str().unwrap(),
            "-C",
            by_bsdtar.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let bsdtar_intact: Vec<String> = tree(&by_bsdtar.join("@backup"))
        .into_iter()
        .filter(|(k, v)| source.get(k) == Some(v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        bsdtar_intact.len() > 500,
        "bsdtar recovers {} files",
        bsdtar_intact.len()
    );
    let (code, out, got) = salvage_into(&t, &zip, "salvaged");
    assert_eq!(code, 3, "{out}");
    all_intact(&got, &source, "truncated");
    for k in &bsdtar_intact {
        assert!(got.contains_key(k), "bsdtar recovers {k}, salvage does not");
    }
    // Without --salvage: refused, with a hint towards it.
    let into = t.tmp.path().join("plain");
    let o = kms(&["--into", into.to_str().unwrap(), zip.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--salvage"), "{}", stderr(&o));
}

fn split_backup(seed: u64) -> (TestInstall, BTreeMap<String, Vec<u8>>, Vec<PathBuf>) {
    let t = TestInstall::generated(600, seed);
    t.backup_ok("full", &["--split-size", "256K"]);
    let source = content(&backed_up(snapshot(&t.install())));
    let vols = t.archives();
    assert!(vols.len() >= 4, "{} volumes", vols.len());
    (t, source, vols)
}

fn entries_of(zip: &Path) -> Vec<String> {
    entry_names(zip)
        .into_iter()
        .filter_map(|n| n.strip_prefix("@backup/").map(str::to_string))
        .collect()
}

#[test]
fn a_missing_first_middle_or_last_volume_loses_only_its_files() {
    for which in ["first", "middle", "last"] {
        let (t, source, vols) = split_backup(31);
        let gone = match which {
            "first" => vols[0].clone(),
            "middle" => vols[vols.len() / 2].clone(),
            _ => last_volume(&vols),
        };
        let lost = entries_of(&gone);
        std::fs::remove_file(&gone).unwrap();
        let any = vols.iter().find(|v| **v != gone).unwrap().clone();
        let (code, out, got) = salvage_into(&t, &any, which);
        assert_eq!(code, 3, "{which}: {out}");
        all_intact(&got, &source, which);
        // Everything the other volumes hold is back.
        for k in source.keys() {
            if !lost.contains(k) {
                assert!(
                    got.contains_key(k) || got.contains_key(&k.replace("/index.fld", "/index.bad")),
                    "{which}: {k} not restored"
                );
            }
        }
        for k in &lost {
            assert!(
                !got.contains_key(k),
                "{which}: {k} of the missing volume appeared"
            );
            if which != "last" {
                // With the catalog at hand, each lost file is named.
                assert!(
                    out.contains(&format!("NOT restored: {k}")),
                    "{which}: {k} not listed"
                );
            }
        }
        if which == "last" {
            assert!(
                out.contains("is lost"),
                "{which}: the lost catalog is said: {out}"
            );
        }

        // In place: nothing live is removed.
        let extra = "store/mail/d1.example.com/user1/INBOX/#msgs/ffffffff.eml";
        if let Some(p) = t.path(extra).parent() {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(t.path(extra), b"today").unwrap();
        let before = snapshot(&t.install());
        let o = kms(&[
            "--install-dir",
            t.install().to_str().unwrap(),
            "--salvage",
            "--no-safety-copy",
            "-q",
            any.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(3), "{which}: {}", stderr(&o));
        let after = snapshot(&t.install());
        for k in before.keys() {
            assert!(after.contains_key(k), "{which}: salvage removed live {k}");
        }
        assert_eq!(after[extra].0, b"today");
    }
}

#[test]
fn a_damaged_catalog_is_salvaged_from_the_entries_and_nothing_is_removed() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let source = content(&backed_up(snapshot(&t.install())));
    let zip = t.archives()[0].clone();
    flip_byte_in_entry(&zip, ".catalog.tsv");
    let v = run(&["verify", zip.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5));
    let (code, out, got) = salvage_into(&t, &zip, "salvaged");
    assert_eq!(code, 3, "{out}");
    all_intact(&got, &source, "damaged catalog");
    assert_eq!(got.len(), source.len(), "every file is in an intact entry");
    // In place, a file the archive does not hold stays.
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000777.eml"),
        b"today",
    )
    .unwrap();
    let o = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        "--salvage",
        "--no-safety-copy",
        "-q",
        zip.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000777.eml")
            .is_file()
    );
}

#[test]
fn hints_never_send_a_salvage_to_salvage_and_an_orphan_differential_gets_a_working_hint() {
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
    std::fs::rename(&full, t.tmp.path().join("moved-away.zip")).unwrap();
    let v = run(&["verify", t.backups().to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5));
    let hint = stderr(&v);
    assert!(
        !hint.contains("--salvage") && hint.contains("copy"),
        "{hint}"
    );
    let into = t.tmp.path().join("x");
    let o = kms(&[
        "--into",
        into.to_str().unwrap(),
        "--salvage",
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("use --salvage"), "{}", stderr(&o));
    assert!(stderr(&o).contains("base full"), "{}", stderr(&o));
    // Following the hint works.
    std::fs::rename(t.tmp.path().join("moved-away.zip"), &full).unwrap();
    ok(&["verify", t.backups().to_str().unwrap()]);
}
