//! The table of crafted archives (tests/data/crafted/make.py: an
//! independent writer, Python's standard library only): for every case,
//! `verify` and a restore agree; nothing is ever written outside the target;
//! a refused restore leaves the target byte-identical; a valid archive
//! restores to exactly its expected content; salvage never takes a hostile
//! archive and only writes what it can prove intact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// install-relative path -> sha256, as make.py and `tree_hashes` write them.
type Hashes = BTreeMap<String, String>;

fn tree_hashes(root: &Path) -> Hashes {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,json,os,sys\nr=sys.argv[1];o={}\nfor d,_,fs in os.walk(r):\n for f in fs:\n  p=os.path.join(d,f);o[os.path.relpath(p,r)]=hashlib.sha256(open(p,'rb').read()).hexdigest()\nprint(json.dumps(o))",
            root.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Archives to try in a case directory: each set's first volume, or its
/// lowest present volume when the first is gone.
fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut by_stem: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".zip") {
            continue;
        }
        let stem = name[..17].to_string();
        let better = by_stem.get(&stem).is_none_or(|p| {
            p.file_name().unwrap().len() > name.len() || *p.file_name().unwrap() > *name
        });
        if better {
            by_stem.insert(stem, e.path());
        }
    }
    by_stem.into_values().collect()
}

/// Files whose name contains `evil` anywhere under `root`.
fn evil_files(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("evil"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn crafted_archives_verify_and_restore_agree_and_never_write_outside_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let cases_dir = tmp.path().join("cases");
    let st = Command::new("python3")
        .arg(repo_root().join("tests/data/crafted/make.py"))
        .arg(&cases_dir)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "make.py: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let cases: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(cases_dir.join("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 30, "make.py wrote {} cases", cases.len());
    let tmp_evil = Path::new("/tmp/evil.txt").exists();
    let mut checked = 0;
    for case in &cases {
        let name = case["case"].as_str().unwrap();
        let dir = cases_dir.join(name);
        let expected: Option<Hashes> = std::fs::read(dir.join("expected.json"))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap());
        for archive in archives(&dir) {
            let what = format!("{name}/{}", archive.file_name().unwrap().to_string_lossy());
            let a = archive.to_str().unwrap();
            let verify = run(&["verify", "-q", a]);
            assert!(
                matches!(code(&verify), 0 | 5),
                "{what}: verify exit {}: {}",
                code(&verify),
                stderr(&verify)
            );
            let verified = code(&verify) == 0;

            // A restore into a live install: accepted exactly when verify passes.
            let target = tmp.path().join(format!("target-{checked}"));
            copy_tree(&repo_root().join("samples/install"), &target);
            let before = snapshot(&target);
            let live = kms(&[
                "--install-dir",
                target.to_str().unwrap(),
                "--no-safety-copy",
                "-q",
                a,
            ]);
            assert_eq!(
                code(&live) == 0,
                verified,
                "{what}: verify says {}, an in-place restore exits {}: {}{}",
                code(&verify),
                code(&live),
                stderr(&verify),
                stderr(&live)
            );
            if !verified {
                assert_eq!(code(&live), 1, "{what}: {}", stderr(&live));
                assert!(
                    snapshot(&target) == before,
                    "{what}: a refused restore changed the target"
                );
            }

            // The same into an empty directory, compared with what it must hold.
            let into = tmp.path().join(format!("into-{checked}"));
            let out = kms(&["--into", into.to_str().unwrap(), "-q", a]);
            assert_eq!(
                code(&out) == 0,
                verified,
                "{what}: --into exits {}: {}",
                code(&out),
                stderr(&out)
            );
            if !verified {
                assert!(
                    !into.exists(),
                    "{what}: a refused --into leaves the directory as it found it (absent)"
                );
            } else if let Some(want) = expected.as_ref().filter(|_| {
                archive
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(want_prefix(name))
            }) {
                assert_eq!(&tree_hashes(&into), want, "{what}: restored content");
            }

            // Salvage: never a hostile archive; only what it can prove intact.
            let salvaged = tmp.path().join(format!("salvage-{checked}"));
            let out = kms(&["--into", salvaged.to_str().unwrap(), "--salvage", "-q", a]);
            let hostile = stderr(&verify).contains("refused")
                || stderr(&verify).contains("unsafe archive path")
                || stderr(&verify).contains("symbolic link")
                || stderr(&verify).contains("duplicate entry")
                || stderr(&verify).contains("encrypted entries");
            if hostile {
                assert_eq!(
                    code(&out),
                    1,
                    "{what}: salvage must refuse a hostile archive: {}",
                    stdout(&out)
                );
            } else if code(&out) != 1 {
                assert!(
                    matches!(code(&out), 0 | 3),
                    "{what}: salvage exit {}",
                    code(&out)
                );
                // Every file salvage wrote is a file of the good backup, byte for byte.
                let good: Hashes = std::fs::read(cases_dir.join("good-full/expected.json"))
                    .ok()
                    .map(|b| serde_json::from_slice(&b).unwrap())
                    .unwrap_or_default();
                if name.starts_with("truncated") || name.starts_with("missing") || name == "bad-crc"
                {
                    for (k, v) in tree_hashes(&salvaged) {
                        // A folder not restored whole keeps its index as index.bad (Kerio rebuilds it).
                        let orig = k.replace("/index.bad", "/index.fld");
                        assert_eq!(
                            good.get(&orig),
                            Some(&v),
                            "{what}: salvage wrote {k} that is not intact"
                        );
                    }
                }
            }

            for d in [&target, &into, &salvaged] {
                let _ = std::fs::remove_dir_all(d);
            }
            assert!(
                evil_files(tmp.path()).is_empty(),
                "{what}: wrote outside the target"
            );
            assert_eq!(
                Path::new("/tmp/evil.txt").exists(),
                tmp_evil,
                "{what}: wrote /tmp/evil.txt"
            );
            checked += 1;
        }
    }
    assert!(checked >= 35, "only {checked} archives checked");

    // A directory with a good backup and a future-dated garbage file: the
    // restore uses the good one, names what it passed over, and warns
    // (exit 3: an older state than the newest file was restored).
    let into = tmp.path().join("future");
    let out = kms(&[
        "--into",
        into.to_str().unwrap(),
        cases_dir.join("future-garbage").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("F20990101T000000Z"),
        "{}",
        stderr(&out)
    );
    let want: Hashes = serde_json::from_slice(
        &std::fs::read(cases_dir.join("future-garbage/expected.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tree_hashes(&into), want);
}

/// Which archive of a valid case `expected.json` describes (the newest set).
fn want_prefix(case: &str) -> &'static str {
    match case {
        "good-chain" => "D",
        _ => "F2026",
    }
}
