//! `mailvault key`, `encrypt` and `decrypt` (issue 7): key files are private
//! and never replaced, no key material is ever printed, a real backup volume
//! survives the round trip byte for byte, and every kind of damage fails
//! with a message that names it and leaves nothing under `--out`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// Header and chunk geometry of the format (docs/formats/encryption.md).
const HEADER: usize = 32;
const STRIDE: usize = 64 * 1024 + 16;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn key_file(dir: &Path, name: &str) -> (PathBuf, String) {
    let k = dir.join(name);
    let out = ok(&["key", "generate", "--out", s(&k), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (k, v["key_id"].as_str().unwrap().to_string())
}

fn key_hex(k: &Path) -> String {
    std::fs::read_to_string(k)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string()
}

/// A full backup of the sample install and that volume encrypted.
struct Encrypted {
    t: TestInstall,
    key: PathBuf,
    key_id: String,
    zip: PathBuf,
    enc: PathBuf,
}

fn encrypted_backup() -> Encrypted {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let zip = t.archives()[0].clone();
    let (key, key_id) = key_file(t.tmp.path(), "backup.key");
    let enc = t.tmp.path().join(format!(
        "{}.enc",
        zip.file_name().unwrap().to_str().unwrap()
    ));
    let out = ok(&["encrypt", "--key", s(&key), s(&zip), "--out", s(&enc)]);
    assert!(stdout(&out).contains(&key_id), "{}", stdout(&out));
    Encrypted {
        t,
        key,
        key_id,
        zip,
        enc,
    }
}

impl Encrypted {
    /// Decrypts `input` to a fresh `--out`, expecting failure: exit code 1,
    /// stderr containing every one of `words`, nothing under `--out` nor any
    /// temporary beside it.
    fn decrypt_fails(&self, input: &Path, key: &Path, words: &[&str]) -> String {
        let dir = self.t.tmp.path().join("out");
        std::fs::create_dir_all(&dir).unwrap();
        let out_path = dir.join("restored.zip");
        let out = run(&["decrypt", "--key", s(key), s(input), "--out", s(&out_path)]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        for w in words {
            assert!(err.contains(w), "`{w}` not in: {err}");
        }
        assert!(err.contains("hint:"), "{err}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing left under --out: {err}"
        );
        assert!(!err.contains(&key_hex(&self.key)), "no key material: {err}");
        err
    }

    fn damaged(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut b = std::fs::read(&self.enc).unwrap();
        f(&mut b);
        let p = self.t.tmp.path().join(name);
        std::fs::write(&p, b).unwrap();
        p
    }
}

#[test]
fn key_generate_writes_mode_0600_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let k = tmp.path().join("mailvault.key");
    let out = ok(&["key", "generate", "--out", s(&k)]);
    let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = stdout(&out);
    let hex = key_hex(&k);
    assert_eq!(hex.len(), 64);
    assert!(text.contains("key id: ") && !text.contains(&hex), "{text}");
    let before = std::fs::read(&k).unwrap();
    let again = run(&["key", "generate", "--out", s(&k)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(&k).unwrap(),
        before,
        "the key file is unchanged"
    );
}

#[test]
fn key_show_prints_the_id_and_no_key_material() {
    let tmp = tempfile::tempdir().unwrap();
    let (k, id) = key_file(tmp.path(), "k");
    let hex = key_hex(&k);
    for args in [
        vec!["key", "show", s(&k)],
        vec!["key", "show", s(&k), "--json"],
    ] {
        let out = ok(&args);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(all.contains(&id), "{all}");
        assert!(!all.contains(&hex) && !all.contains(&hex[..16]), "{all}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&ok(&["key", "show", s(&k), "--json"]).stdout).unwrap();
    assert_eq!(v["key_id"], id.as_str());
    // A key file others may read is refused, naming the file and its mode.
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["key", "show", s(&k)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(s(&k)) && err.contains("0644") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn a_backup_volume_round_trips_and_unzip_accepts_it() {
    let e = encrypted_backup();
    let plain = std::fs::read(&e.zip).unwrap();
    let enc = std::fs::read(&e.enc).unwrap();
    assert_eq!(&enc[..8], b"MVENC\0\r\n");
    assert!(enc.len() > plain.len());
    // Nothing of the archive shows through: no ZIP signatures, no entry names.
    assert!(!enc.windows(4).any(|w| w == b"PK\x03\x04"));
    assert!(!enc.windows(12).any(|w| w == b".version.txt"));

    // --key from MAILVAULT_KEY_FILE.
    let out_path = e.t.tmp.path().join("restored.zip");
    let out = bin()
        .args(["decrypt", s(&e.enc), "--out", s(&out_path), "--json"])
        .env("MAILVAULT_KEY_FILE", &e.key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["key_id"], e.key_id.as_str());
    assert_eq!(v["plain_bytes"], plain.len());
    assert!(!stdout(&out).contains(&key_hex(&e.key)));
    assert_eq!(std::fs::read(&out_path).unwrap(), plain, "byte for byte");
    let t = Command::new("unzip")
        .args(["-tqq", s(&out_path)])
        .output()
        .unwrap();
    assert!(
        t.status.success(),
        "unzip -t: {}",
        String::from_utf8_lossy(&t.stdout)
    );

    // An existing --out is never replaced.
    let again = run(&[
        "decrypt",
        "--key",
        s(&e.key),
        s(&e.enc),
        "--out",
        s(&out_path),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists already"));
    assert_eq!(std::fs::read(&out_path).unwrap(), plain);
    // Nor is an existing encrypt output, and an encrypted file is not encrypted twice.
    let again = run(&["encrypt", "--key", s(&e.key), s(&e.zip), "--out", s(&e.enc)]);
    assert_eq!(again.status.code(), Some(1));
    let twice = e.t.tmp.path().join("twice.enc");
    let again = run(&["encrypt", "--key", s(&e.key), s(&e.enc), "--out", s(&twice)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already encrypted"),
        "{}",
        stderr(&again)
    );
    assert!(!twice.exists());
}

#[test]
fn a_wrong_key_names_both_key_ids() {
    let e = encrypted_backup();
    let (other, other_id) = key_file(e.t.tmp.path(), "other.key");
    e.decrypt_fails(&e.enc, &other, &[s(&e.enc), &e.key_id, &other_id, "key"]);
}

#[test]
fn a_missing_or_open_key_file_is_refused() {
    let e = encrypted_backup();
    e.decrypt_fails(
        &e.enc,
        &e.t.tmp.path().join("nope.key"),
        &["nope.key", "does not exist"],
    );
    let out = bin()
        .args([
            "decrypt",
            s(&e.enc),
            "--out",
            s(&e.t.tmp.path().join("x.zip")),
        ])
        .env_remove("MAILVAULT_KEY_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("MAILVAULT_KEY_FILE"),
        "{}",
        stderr(&out)
    );
    assert!(!e.t.tmp.path().join("x.zip").exists());
}

#[test]
fn each_kind_of_damage_fails_and_leaves_nothing() {
    let e = encrypted_backup();
    let len = std::fs::metadata(&e.enc).unwrap().len() as usize;
    let chunks = (len - HEADER).div_ceil(STRIDE);
    assert!(chunks >= 3, "the sample volume spans {chunks} chunks");
    let last = chunks - 1;

    let header = e.damaged("header.enc", |b| b[26] ^= 1);
    e.decrypt_fails(
        &header,
        &e.key,
        &["header.enc", "chunk 0", "failed authentication"],
    );

    let body = e.damaged("body.enc", |b| b[HEADER + STRIDE + 1000] ^= 0x20);
    e.decrypt_fails(
        &body,
        &e.key,
        &["body.enc", "chunk 1 of", "failed authentication"],
    );

    let tag = e.damaged("tag.enc", |b| {
        let n = b.len();
        b[n - 3] ^= 0x01;
    });
    e.decrypt_fails(
        &tag,
        &e.key,
        &["tag.enc", &format!("chunk {last} of {chunks}")],
    );

    let mid = e.damaged("mid.enc", |b| b.truncate(HEADER + STRIDE + 500));
    e.decrypt_fails(&mid, &e.key, &["mid.enc", "truncated"]);

    let boundary = e.damaged("boundary.enc", |b| b.truncate(HEADER + 2 * STRIDE));
    e.decrypt_fails(
        &boundary,
        &e.key,
        &["boundary.enc", "chunk 1 of 2", "failed authentication"],
    );

    let swapped = e.damaged("swapped.enc", |b| {
        let (c0, c1) = (HEADER, HEADER + STRIDE);
        let first: Vec<u8> = b[c0..c1].to_vec();
        let second: Vec<u8> = b[c1..c1 + STRIDE].to_vec();
        b[c0..c1].copy_from_slice(&second);
        b[c1..c1 + STRIDE].copy_from_slice(&first);
    });
    e.decrypt_fails(
        &swapped,
        &e.key,
        &["swapped.enc", "chunk 0 of", "failed authentication"],
    );

    let appended = e.damaged("appended.enc", |b| b.extend_from_slice(b"trailing garbage"));
    e.decrypt_fails(&appended, &e.key, &["appended.enc"]);

    // A plain ZIP given to decrypt is named as not encrypted.
    e.decrypt_fails(
        &e.zip,
        &e.key,
        &[s(&e.zip), "not an encrypted mailvault file"],
    );
}

#[test]
fn every_command_has_help_with_examples() {
    for args in [
        vec!["key", "generate", "--help"],
        vec!["key", "show", "--help"],
        vec!["encrypt", "--help"],
        vec!["decrypt", "--help"],
    ] {
        let h = stdout(&ok(&args));
        assert!(
            h.contains("Example") && h.contains("mailvault "),
            "{args:?}: {h}"
        );
    }
}

/// The repository layer over an encrypted directory: the one reader lists and
/// verifies the encrypted backup as it would the plain one, and names a
/// damaged chunk and a plain archive among the encrypted ones.
#[test]
fn verify_reads_an_encrypted_repository_and_names_damage() {
    use mailvault_repo::crypt::{Encrypted as EncryptedStorage, Key};
    use mailvault_repo::storage::{LocalDir, Storage};
    use mailvault_repo::{NoProgress, Repository, check};
    use std::io::Write as _;
    use std::sync::Arc;

    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    t.backup_ok("differential", &[]);
    let (key, _) = key_file(t.tmp.path(), "repo.key");
    let dir = t.tmp.path().join("encrypted");
    let storage = || {
        EncryptedStorage::new(
            Arc::new(LocalDir::new(&dir)),
            Key::load(&key).unwrap(),
            t.tmp.path().join("spool"),
        )
    };
    let s = storage();
    s.create_root().unwrap();
    for zip in t.archives() {
        let name = zip.file_name().unwrap().to_str().unwrap();
        let mut p = s.create(name).unwrap();
        p.write_all(&std::fs::read(&zip).unwrap()).unwrap();
        p.commit().unwrap();
    }
    let on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        on_disk.iter().all(|n| n.ends_with(".zip.enc")),
        "{on_disk:?}"
    );

    let repo = Repository::new(storage());
    let listing = repo.listing().unwrap();
    assert_eq!(listing.sets.len(), 2);
    let report = check::verify(&repo, None, &NoProgress).unwrap();
    assert!(
        report.is_ok(),
        "{:?}",
        report.problems().collect::<Vec<_>>()
    );

    // A flipped byte in the full's ciphertext: verify names the volume and the chunk.
    let full = dir.join(format!(
        "{}.enc",
        t.archives()[0].file_name().unwrap().to_str().unwrap()
    ));
    let mut b = std::fs::read(&full).unwrap();
    b[HEADER + 10] ^= 1;
    std::fs::write(&full, b).unwrap();
    let report = check::verify(&Repository::new(storage()), None, &NoProgress).unwrap();
    let first = report.problems().next().expect("damage found").to_string();
    assert!(
        first.contains(".zip.enc") && first.contains("chunk 0 of"),
        "{first}"
    );

    // A plain archive among the encrypted ones is flagged, not read.
    let plain_dir = t.tmp.path().join("mixed");
    let s2 = EncryptedStorage::new(
        Arc::new(LocalDir::new(&plain_dir)),
        Key::load(&key).unwrap(),
        t.tmp.path().join("spool"),
    );
    s2.create_root().unwrap();
    std::fs::copy(
        &t.archives()[0],
        plain_dir.join(t.archives()[0].file_name().unwrap()),
    )
    .unwrap();
    let report = check::verify(&Repository::new(s2), None, &NoProgress).unwrap();
    let all: Vec<String> = report.problems().map(ToString::to_string).collect();
    assert!(
        all.iter()
            .any(|p| p.contains("not encrypted") && p.contains("key was given")),
        "{all:?}"
    );
}
