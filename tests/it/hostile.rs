//! Hostile and broken archives, made at test time with Python's zipfile (an
//! independent writer): refused with a clear error and the live install
//! untouched, or salvaged with `--salvage`.

use std::path::Path;

use crate::util::*;

/// A `.version.txt` in Kerio's own (unspecified) form: not mailvault's, so
/// the archive is read as a Kerio backup without a catalog.
const VERSION: &str = "Kerio Connect 9.4.1 backup\n";

/// (entry name, content, is a symlink).
type Entry<'a> = (&'a str, &'a str, bool);

/// Writes `F20260101T000000Z.zip` in `dir` with `.version.txt`, the given
/// (name, content, is_symlink) entries and a `.summary.txt`, no catalog
/// (Kerio-style).
fn make_zip(dir: &Path, entries: &[Entry<'_>]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut script = String::from(
        "import zipfile,sys,warnings\nwarnings.simplefilter('ignore')\nz=zipfile.ZipFile(sys.argv[1],'w')\n",
    );
    script.push_str(&format!("z.writestr('.version.txt', {VERSION:?})\n"));
    for (name, content, link) in entries {
        if *link {
            script.push_str(&format!("i=zipfile.ZipInfo({name:?}); i.external_attr=(0o120777<<16); z.writestr(i, {content:?})\n"));
        } else {
            script.push_str(&format!("z.writestr({name:?}, {content:?})\n"));
        }
    }
    script.push_str("z.writestr('.summary.txt', 'Backup finished\\n')\nz.close()\n");
    let st = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("F20260101T000000Z.zip"))
        .status()
        .unwrap();
    assert!(st.success());
}

fn refused(t: &TestInstall, dir: &Path, expect: &str) {
    let before = snapshot(&t.install());
    let out = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(expect),
        "expected `{expect}` in: {}",
        stderr(&out)
    );
    assert_eq!(snapshot(&t.install()), before, "the target is untouched");
    assert!(!t.tmp.path().join("evil.txt").exists() && !t.install().join("evil.txt").exists());
}

#[test]
fn zip_slip_absolute_paths_symlinks_and_duplicates_are_refused() {
    let t = TestInstall::sample();
    let cases: [(&str, Vec<Entry<'_>>, &str); 5] = [
        (
            "slip",
            vec![("@backup/store/../../evil.txt", "x", false)],
            "`.` or `..` component",
        ),
        ("abs", vec![("/etc/evil.txt", "x", false)], "absolute path"),
        (
            "drive",
            vec![("@backup/C:/evil.txt", "x", false)],
            "drive letter",
        ),
        (
            "link",
            vec![(
                "@backup/store/mail/example.com/john/INBOX/#msgs/00000001.eml",
                "/etc/passwd",
                true,
            )],
            "symbolic link",
        ),
        (
            "dup",
            vec![
                ("@backup/users.cfg", "<config/>", false),
                ("@backup/users.cfg", "<config/>", false),
            ],
            "duplicate entry",
        ),
    ];
    for (name, entries, expect) in cases {
        let dir = t.tmp.path().join(name);
        make_zip(&dir, &entries);
        refused(&t, &dir, expect);
    }
}

#[test]
fn a_kerio_style_archive_without_catalog_and_with_root_cfg_files_is_accepted() {
    let t = TestInstall::sample();
    let dir = t.tmp.path().join("kerio");
    make_zip(
        &dir,
        &[
            (
                "users.cfg",
                "<config><list name=\"User\"/></config>\n",
                false,
            ),
            (
                "@backup/store/mail/example.com/john/INBOX/#msgs/00000001.eml",
                "Subject: old\r\n\r\nold\r\n",
                false,
            ),
        ],
    );
    let into = t.tmp.path().join("into");
    kms_ok(&[
        "--into",
        into.to_str().unwrap(),
        "-q",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(into.join("users.cfg")).unwrap(),
        "<config><list name=\"User\"/></config>\n"
    );
    assert!(
        into.join("store/mail/example.com/john/INBOX/#msgs/00000001.eml")
            .is_file()
    );
    // No license/ or sslcert/ in the archive: nothing to restore there, no error.
    assert!(!into.join("license").exists());
}

#[test]
fn a_bad_crc_is_refused_then_salvaged() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let zip = t.archives()[0].clone();
    // Corrupt one message's compressed bytes in place.
    flip_byte_in_entry(
        &zip,
        "@backup/store/mail/example.com/john/INBOX/#msgs/00000003.eml",
    );
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000003.eml"),
        b"live copy",
    )
    .unwrap();
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000004.eml"),
        b"live copy",
    )
    .unwrap();
    let before = snapshot(&t.install());
    let (install, backups) = (t.install(), t.backups());
    let args = [
        "--install-dir",
        install.to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "-f",
        "INBOX",
        backups.to_str().unwrap(),
    ];
    let out = kms(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("00000003.eml") && stderr(&out).contains("--salvage"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&t.install()), before, "refused: nothing changed");
    let mut salvage = args.to_vec();
    salvage.insert(0, "--salvage");
    let out = kms(&salvage);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("NOT restored: store/mail/example.com/john/INBOX/#msgs/00000003.eml"),
        "{}",
        stdout(&out)
    );
    assert_ne!(
        std::fs::read(t.path("store/mail/example.com/john/INBOX/#msgs/00000004.eml")).unwrap(),
        b"live copy",
        "intact files restored"
    );
    assert_eq!(
        std::fs::read(t.path("store/mail/example.com/john/INBOX/#msgs/00000003.eml")).unwrap(),
        b"live copy",
        "the damaged one keeps the live copy"
    );
    // The folder was not restored whole: Kerio rebuilds its index.
    assert!(
        t.path("store/mail/example.com/john/INBOX/index.bad")
            .is_file()
    );
    assert!(
        !t.path("store/mail/example.com/john/INBOX/index.fld")
            .exists()
    );
}

#[test]
fn salvage_restores_past_a_missing_volume() {
    let t = TestInstall::sample();
    t.backup_ok("full", &["--split-size", "64K"]);
    let vols = t.archives();
    let gone = vols
        .iter()
        .find(|p| p.to_str().unwrap().ends_with(".1.zip"))
        .unwrap();
    let lost: Vec<String> = entry_names(gone)
        .into_iter()
        .filter_map(|n| n.strip_prefix("@backup/").map(str::to_string))
        .collect();
    std::fs::remove_file(gone).unwrap();
    let into = t.tmp.path().join("into");
    let out = kms(&[
        "--into",
        into.to_str().unwrap(),
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing volume 1"),
        "{}",
        stderr(&out)
    );
    let out = kms(&[
        "--into",
        into.to_str().unwrap(),
        "--salvage",
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    for l in &lost {
        assert!(
            stdout(&out).contains(&format!("NOT restored: {l}")),
            "{l} not listed: {}",
            stdout(&out)
        );
        assert!(!into.join(l).exists());
    }
    assert!(
        into.join("users.cfg").is_file(),
        "files of the other volumes are restored"
    );
}

#[test]
fn a_truncated_central_directory_is_refused() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    let zip = t.archives()[0].clone();
    let len = std::fs::metadata(&zip).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&zip)
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    let before = snapshot(&t.install());
    let out = kms(&[
        "--install-dir",
        t.install().to_str().unwrap(),
        t.backups().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a readable ZIP archive")
            && stderr(&out).contains(zip.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&t.install()), before);
}
