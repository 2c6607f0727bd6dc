//! `verify` finds and names a flipped byte, a truncated volume, a missing volume.

use std::io::{Read, Seek, SeekFrom, Write};

use crate::util::*;

/// Offset of an entry's compressed data, as Python's zipfile computes it.
fn data_offset(zip: &std::path::Path, name: &str) -> (u64, u64) {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import zipfile,sys,struct\nz=zipfile.ZipFile(sys.argv[1]);i=z.getinfo(sys.argv[2]);f=open(sys.argv[1],'rb');f.seek(i.header_offset);h=f.read(30);n,e=struct.unpack('<HH',h[26:30]);print(i.header_offset+30+n+e, i.compress_size)",
            zip.to_str().unwrap(),
            name,
        ])
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn flipped_byte_is_named_with_its_entry() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let zip = t.archives()[0].clone();
    let entry = "@backup/store/mail/example.com/john/INBOX/#msgs/00000003.eml";
    let (off, len) = data_offset(&zip, entry);
    let mut f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&zip)
        .unwrap();
    f.seek(SeekFrom::Start(off + len / 2)).unwrap();
    let mut b = [0u8];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(off + len / 2)).unwrap();
    f.write_all(&[b[0] ^ 0x55]).unwrap();
    drop(f);
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
        err.contains("volume 1 is missing") && err.contains(one.to_str().unwrap()),
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
        stderr(&out).contains("is not in the directory"),
        "{}",
        stderr(&out)
    );
    let list = ok(&["list", t.backups().to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["orphans"].as_array().unwrap().len(), 1);
}
