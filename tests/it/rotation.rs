//! Rotation keeps exactly the newest N chains.

use crate::util::*;

fn kinds(t: &TestInstall) -> String {
    t.archives()
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .chars()
                .next()
                .unwrap()
        })
        .collect()
}

fn touch(t: &TestInstall, n: u32) {
    std::fs::write(
        t.path(&format!(
            "store/mail/example.com/john/INBOX/#msgs/{:08x}.eml",
            0x300 + n
        )),
        format!("msg {n}"),
    )
    .unwrap();
}

#[test]
fn keeps_the_newest_chains_and_never_the_one_just_written() {
    let t = TestInstall::sample();
    // Chain 1: F D D; chain 2: F D; chain 3: C D. Names move on by a second when needed.
    for (i, k) in [
        "full",
        "differential",
        "differential",
        "full",
        "differential",
        "copy",
        "differential",
    ]
    .iter()
    .enumerate()
    {
        touch(&t, i as u32);
        t.backup_ok(k, &[]);
    }
    assert_eq!(kinds(&t), "FDDFDCD");
    // Dry run deletes nothing and says what it would.
    let dir = t.backups();
    let out = ok(&[
        "rotate",
        dir.to_str().unwrap(),
        "--keep-full",
        "2",
        "--dry-run",
    ]);
    assert!(stdout(&out).contains("would delete"), "{}", stdout(&out));
    assert_eq!(t.archives().len(), 7);
    ok(&["rotate", dir.to_str().unwrap(), "--keep-full", "2"]);
    assert_eq!(kinds(&t), "FDCD");
    // Kerio's old behaviour: only the newest differential per chain.
    touch(&t, 20);
    t.backup_ok(
        "differential",
        &["--keep-full", "2", "--keep-latest-differential-only"],
    );
    assert_eq!(kinds(&t), "FDCD");
    let last = t.archives().last().unwrap().clone();
    assert!(last.file_name().unwrap().to_str().unwrap().starts_with('D'));
    // keep 1 after a new full: the new chain alone remains.
    let s = t.backup_ok("full", &["--keep-full", "1"]);
    assert_eq!(kinds(&t), "F");
    assert_eq!(s["rotation"]["delete"].as_array().unwrap().len(), 4);
    ok(&["verify", dir.to_str().unwrap()]);
}

#[test]
fn a_damaged_newest_full_does_not_push_out_the_last_good_one() {
    let t = TestInstall::sample();
    t.backup_ok("full", &[]);
    touch(&t, 1);
    t.backup_ok("full", &[]);
    let newest = t.archives().last().unwrap().clone();
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let dir = t.backups();
    ok(&["rotate", dir.to_str().unwrap(), "--keep-full", "1"]);
    assert_eq!(
        t.archives().len(),
        2,
        "the damaged full does not count towards the chains kept"
    );
}
