//! The one conformance suite every [`Storage`] implementation must pass
//! (restic's `backend/test`): the local directory and the in-memory storage
//! here, S3 and FTP against real servers when they come. Each check gets a
//! fresh, not yet created repository from the factory and panics with a
//! message naming the contract it found broken.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::io::{Read, Seek, SeekFrom, Write};

use super::{LockMode, Storage, TEMP_PREFIX};
use crate::error::Error;

/// Makes a fresh, not yet created repository.
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn Storage>;

/// Runs every check against repositories made by `make`.
pub fn run(make: Factory<'_>) {
    for (name, check) in CHECKS {
        let storage = make();
        check(storage.as_ref());
        eprintln!("storage conformance: {name} ok");
    }
}

type Check = fn(&dyn Storage);

const CHECKS: &[(&str, Check)] = &[
    ("a repository that does not exist", missing_repository),
    ("write, commit, read back with seeks", round_trip),
    (
        "nothing under the final name before commit",
        pending_is_invisible,
    ),
    (
        "a dropped pending object leaves nothing",
        dropped_pending_leaves_nothing,
    ),
    ("commit never replaces", commit_never_replaces),
    ("missing objects are NotFound", missing_objects),
    ("list yields each object once", list_once),
    ("locks: shared together, exclusive alone", locks),
    ("a large object round-trips", large_object),
];

fn read_all(s: &dyn Storage, name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    s.open(name).unwrap().read_to_end(&mut v).unwrap();
    v
}

fn put(s: &dyn Storage, name: &str, bytes: &[u8]) {
    let mut p = s.create(name).unwrap();
    p.write_all(bytes).unwrap();
    p.finish().unwrap();
    p.commit().unwrap();
}

fn missing_repository(s: &dyn Storage) {
    assert!(
        !s.exists().unwrap(),
        "a fresh repository must not exist yet"
    );
    assert!(
        matches!(s.list(), Err(Error::NotFound(_))),
        "listing a repository that does not exist is NotFound"
    );
    assert!(
        s.create_root().unwrap(),
        "create_root reports that it created"
    );
    assert!(
        !s.create_root().unwrap(),
        "create_root on an existing repository creates nothing"
    );
    assert!(s.list().unwrap().is_empty());
    s.remove_root_if_empty().unwrap();
    assert!(
        !s.exists().unwrap(),
        "an empty repository made by this run is removed"
    );
}

fn round_trip(s: &dyn Storage) {
    s.create_root().unwrap();
    let mut p = s.create("F20261122T010000Z.zip").unwrap();
    assert_eq!(p.name(), "F20261122T010000Z.zip");
    p.write_all(b"0123456789").unwrap();
    // Writers patch headers: a seek back and an overwrite must land in place.
    p.seek(SeekFrom::Start(2)).unwrap();
    p.write_all(b"AB").unwrap();
    p.seek(SeekFrom::End(0)).unwrap();
    p.write_all(b"xyz").unwrap();
    p.finish().unwrap();
    p.commit().unwrap();
    s.sync().unwrap();
    assert_eq!(read_all(s, "F20261122T010000Z.zip"), b"01AB456789xyz");
    assert_eq!(s.size("F20261122T010000Z.zip").unwrap(), 13);
    let mut r = s.open("F20261122T010000Z.zip").unwrap();
    r.seek(SeekFrom::Start(10)).unwrap();
    let mut tail = String::new();
    r.read_to_string(&mut tail).unwrap();
    assert_eq!(tail, "xyz");
    r.seek(SeekFrom::End(-11)).unwrap();
    let mut two = [0u8; 2];
    r.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"AB");
}

fn pending_is_invisible(s: &dyn Storage) {
    s.create_root().unwrap();
    let mut p = s.create("a.zip").unwrap();
    p.write_all(b"half").unwrap();
    p.finish().unwrap();
    let names = s.list().unwrap();
    assert!(
        !names.contains(&"a.zip".to_string()),
        "a pending object is not under its final name"
    );
    // A backend may keep the bytes out of the listing until commit (S3's
    // multipart uploads are listed as temporaries; a small PutObject is not
    // there at all); what it lists must be the temporary name.
    assert!(
        names.is_empty() || names == vec![format!("{TEMP_PREFIX}a.zip")],
        "a pending object is listed as a temporary or not at all: {names:?}"
    );
    assert!(matches!(s.open("a.zip"), Err(Error::NotFound(_))));
    p.commit().unwrap();
    assert_eq!(
        s.list().unwrap(),
        vec!["a.zip".to_string()],
        "the temporary is gone after commit"
    );
}

fn dropped_pending_leaves_nothing(s: &dyn Storage) {
    s.create_root().unwrap();
    let mut p = s.create("b.zip").unwrap();
    p.write_all(&[7u8; 1000]).unwrap();
    drop(p);
    assert!(
        s.list().unwrap().is_empty(),
        "a dropped pending object leaves nothing"
    );
}

fn commit_never_replaces(s: &dyn Storage) {
    s.create_root().unwrap();
    put(s, "c.zip", b"first");
    let mut p = s.create("c.zip").unwrap();
    p.write_all(b"second").unwrap();
    p.finish().unwrap();
    assert!(
        matches!(p.commit(), Err(Error::AlreadyExists(_))),
        "commit over an existing name fails"
    );
    assert_eq!(
        read_all(s, "c.zip"),
        b"first",
        "the existing object is unchanged"
    );
}

fn missing_objects(s: &dyn Storage) {
    s.create_root().unwrap();
    assert!(matches!(s.open("nope.zip"), Err(Error::NotFound(_))));
    assert!(matches!(s.size("nope.zip"), Err(Error::NotFound(_))));
    assert!(matches!(s.remove("nope.zip"), Err(Error::NotFound(_))));
    put(s, "d.zip", b"x");
    s.remove("d.zip").unwrap();
    s.sync().unwrap();
    assert!(matches!(s.open("d.zip"), Err(Error::NotFound(_))));
}

fn list_once(s: &dyn Storage) {
    s.create_root().unwrap();
    let names = [
        "F20261122T010000Z.zip",
        "F20261122T010000Z.1.zip",
        "name with spaces.zip",
        "x",
    ];
    for n in names {
        put(s, n, n.as_bytes());
    }
    let mut got = s.list().unwrap();
    got.sort();
    let mut want: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

fn locks(s: &dyn Storage) {
    s.create_root().unwrap();
    let a = s.lock(LockMode::Shared, "reader one").unwrap();
    let b = s.lock(LockMode::Shared, "reader two").unwrap();
    assert!(a.is_held() && b.is_held());
    assert!(
        matches!(
            s.lock(LockMode::Exclusive, "writer"),
            Err(Error::Locked { .. })
        ),
        "readers keep a writer out"
    );
    drop(a);
    drop(b);
    let w = s.lock(LockMode::Exclusive, "backup full").unwrap();
    match s.lock(LockMode::Exclusive, "rotate") {
        Err(Error::Locked { holder, .. }) => {
            assert!(!holder.is_empty(), "a refusal names the holder")
        }
        other => panic!("a second writer must be refused, got {other:?}"),
    }
    assert!(
        matches!(
            s.lock(LockMode::Shared, "reader"),
            Err(Error::Locked { .. })
        ),
        "a writer keeps readers out"
    );
    drop(w);
    s.lock(LockMode::Exclusive, "again").unwrap();
}

fn large_object(s: &dyn Storage) {
    s.create_root().unwrap();
    let data: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut p = s.create("big.zip").unwrap();
    for chunk in data.chunks(65_537) {
        p.write_all(chunk).unwrap();
    }
    p.commit().unwrap();
    assert_eq!(s.size("big.zip").unwrap(), data.len() as u64);
    let mut r = s.open("big.zip").unwrap();
    r.seek(SeekFrom::Start(4_000_000)).unwrap();
    let mut buf = vec![0u8; 1000];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(buf, data[4_000_000..4_001_000]);
    assert_eq!(read_all(s, "big.zip"), data);
}
