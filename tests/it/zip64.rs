//! ZIP64: more than 65,535 entries, and an entry over 4 GiB.

use crate::util::*;

#[test]
fn more_than_65535_entries_use_zip64_and_every_reader_opens_them() {
    let t = TestInstall::sample();
    let dir = t.path("store/mail/example.com/jane/Bulk/#msgs");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..66_000u32 {
        std::fs::write(
            dir.join(format!("{i:08x}.eml")),
            format!("Subject: {i}\r\n\r\n{i}\r\n"),
        )
        .unwrap();
    }
    let s = t.backup_ok("full", &[]);
    assert!(s["files"].as_u64().unwrap() > 66_000);
    let zip = &t.archives()[0];
    assert_valid_zip(zip);
    assert_eq!(
        entry_names(zip).len() as u64,
        s["files"].as_u64().unwrap() + 3
    );
}

#[test]
fn an_entry_over_4_gib_uses_zip64_and_every_reader_opens_it() {
    let t = TestInstall::sample();
    // A sparse file: 4 GiB + 1 MiB of zeros with a marker at the end, cheap to read and to deflate.
    let big = t.path("store/mail/example.com/john/INBOX/#msgs/00000fff.eml");
    let f = std::fs::File::create(&big).unwrap();
    let size = (4u64 << 30) + (1 << 20);
    f.set_len(size).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"end-of-big-file", size - 15).unwrap();
    drop(f);
    let s = t.backup_ok("full", &[]);
    assert!(s["bytes_in"].as_u64().unwrap() > size);
    for v in t.archives() {
        for (tool, args) in [("unzip", vec!["-tqq"]), ("7z", vec!["t", "-bso0", "-bsp0"])] {
            let out = std::process::Command::new(tool)
                .args(&args)
                .arg(&v)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{tool}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    let zip = &last_volume(&t.archives());
    let cat = catalog(zip);
    assert_eq!(
        cat["store/mail/example.com/john/INBOX/#msgs/00000fff.eml"].1,
        size
    );
    ok(&["verify", zip.to_str().unwrap()]);
}
