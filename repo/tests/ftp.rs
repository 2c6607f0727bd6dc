//! The FTP backend against a real vsftpd (`scripts/servers/ftp.sh start`,
//! then `. target/servers/ftp.env`): plain FTP and explicit FTPS, listings,
//! ranged reads, a 30 MiB upload, publish and abort, error messages and
//! hints (wrong password, expired and untrusted certificates) and an upload
//! that resumes after its server session is killed. No mocks. Without
//! `MAILVAULT_TEST_FTP_HOST` every test prints a skip line and passes, unless
//! `MAILVAULT_TEST_SERVERS=required`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mailvault_repo::Error;
use mailvault_repo::storage::ftp::{FtpConfig, FtpStore};
use mailvault_repo::storage::remote::{ObjectStore, Remote};

/// The server's settings, or None (skip) when no server is configured.
fn server(test: &str) -> Option<FtpConfig> {
    let Ok(host) = std::env::var("MAILVAULT_TEST_FTP_HOST") else {
        assert!(
            std::env::var("MAILVAULT_TEST_SERVERS").as_deref() != Ok("required"),
            "MAILVAULT_TEST_SERVERS=required but MAILVAULT_TEST_FTP_HOST is unset: run scripts/servers/ftp.sh start and source target/servers/ftp.env"
        );
        eprintln!(
            "skipped {test}: MAILVAULT_TEST_FTP_HOST is unset (scripts/servers/ftp.sh start)"
        );
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is unset"));
    Some(FtpConfig {
        host,
        port: var("MAILVAULT_TEST_FTP_PORT").parse().unwrap(),
        user: var("MAILVAULT_TEST_FTP_USER"),
        password: var("MAILVAULT_FTP_PASSWORD"),
        dir: fresh_dir(),
        tls: false,
        ca_file: None,
    })
}

fn fresh_dir() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "mv-test/{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn tls(mut cfg: FtpConfig) -> FtpConfig {
    cfg.tls = true;
    cfg.ca_file = Some(PathBuf::from(
        std::env::var("MAILVAULT_TEST_FTP_CA").expect("MAILVAULT_TEST_FTP_CA"),
    ));
    cfg
}

fn store(cfg: FtpConfig) -> FtpStore {
    let s = FtpStore::new(cfg).unwrap();
    assert!(s.create_root().unwrap(), "a fresh dir is created");
    s
}

/// Deterministic, incompressible-looking bytes.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn spool(data: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f
}

fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

fn basics(s: &FtpStore, cfg: &FtpConfig) {
    let loc = s.location();
    assert!(!loc.contains(&cfg.password), "{loc}");
    assert!(!format!("{s:?}{cfg:?}").contains(&cfg.password));
    assert!(s.exists().unwrap());
    assert!(!s.create_root().unwrap(), "exists already");
    assert_eq!(s.list().unwrap(), vec![]);

    let data = bytes(10_000, 1);
    s.put_small("a", &data).unwrap();
    s.put_small(".hidden", b"dot").unwrap();
    assert_eq!(
        sorted(s.list().unwrap()),
        vec![(".hidden".to_string(), 3), ("a".to_string(), 10_000)]
    );
    assert_eq!(s.size("a").unwrap(), 10_000);

    // read_range edges
    assert_eq!(s.read_range("a", 0, 10_000).unwrap(), data);
    assert_eq!(s.read_range("a", 0, 1).unwrap(), &data[..1]);
    assert_eq!(s.read_range("a", 4_000, 100).unwrap(), &data[4_000..4_100]);
    assert_eq!(s.read_range("a", 9_990, 100).unwrap(), &data[9_990..]);
    assert_eq!(s.read_range("a", 9_999, 1).unwrap(), &data[9_999..]);
    assert_eq!(s.read_range("a", 10_000, 5).unwrap(), b"");
    assert_eq!(s.read_range("a", 20_000, 5).unwrap(), b"");
    assert_eq!(s.read_range("a", 5, 0).unwrap(), b"");
    // The connection stays usable after reads closed early.
    for i in 0..20u64 {
        assert_eq!(
            s.read_range("a", i * 7, 3).unwrap(),
            &data[(i * 7) as usize..(i * 7 + 3) as usize]
        );
    }
    assert!(matches!(
        s.read_range("nope", 0, 5),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.read_range("nope", 0, 0),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(s.size("nope"), Err(Error::NotFound(_))));

    // put_small replaces
    s.put_small("a", b"short").unwrap();
    assert_eq!(s.read_range("a", 0, 100).unwrap(), b"short");
    assert_eq!(s.size("a").unwrap(), 5);
    s.put_small("empty", b"").unwrap();
    assert_eq!(s.size("empty").unwrap(), 0);
    assert_eq!(s.read_range("empty", 0, 10).unwrap(), b"");

    // remove
    match s.remove("nope") {
        Err(Error::NotFound(p)) => assert!(p.ends_with("/nope"), "{p}"),
        other => panic!("{other:?}"),
    }
    s.remove("a").unwrap();
    s.remove(".hidden").unwrap();
    s.remove_root_if_empty().unwrap();
    assert!(s.exists().unwrap(), "not empty: kept");
    s.remove("empty").unwrap();
    assert!(matches!(s.remove("a"), Err(Error::NotFound(_))));
    s.remove_root_if_empty().unwrap();
    assert!(!s.exists().unwrap());
    assert!(matches!(s.list(), Err(Error::NotFound(_))));
    s.remove_root_if_empty().unwrap();
}

#[test]
fn plain_basics() {
    let Some(cfg) = server("plain_basics") else {
        return;
    };
    let s = store(cfg.clone());
    assert!(s.location().starts_with("ftp://"), "{}", s.location());
    basics(&s, &cfg);
}

#[test]
fn tls_basics() {
    let Some(cfg) = server("tls_basics") else {
        return;
    };
    let cfg = tls(cfg);
    let s = store(cfg.clone());
    assert!(s.location().starts_with("ftps://"), "{}", s.location());
    basics(&s, &cfg);
}

#[test]
fn nested_dir_is_created_with_parents() {
    let Some(mut cfg) = server("nested_dir_is_created_with_parents") else {
        return;
    };
    cfg.dir = format!("{}/a/b/c", cfg.dir);
    let s = FtpStore::new(cfg).unwrap();
    assert!(!s.exists().unwrap());
    assert!(matches!(s.list(), Err(Error::NotFound(_))));
    assert!(s.create_root().unwrap());
    assert!(s.exists().unwrap());
    assert!(!s.create_root().unwrap());
}

fn large_upload(cfg: FtpConfig) {
    let s = store(cfg);
    let len = 30 << 20;
    let data = bytes(len, 7);
    let mut file = spool(&data);
    let sent = AtomicU64::new(0);
    let mut up = s.begin("F20261122T010000Z.zip", len as u64).unwrap();
    up.send(&mut file, len as u64, &|n| {
        sent.fetch_add(n, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(sent.load(Ordering::Relaxed), len as u64);
    // Nothing under the final name before publish.
    assert!(matches!(
        s.size("F20261122T010000Z.zip"),
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        s.list().unwrap(),
        vec![(
            ".mailvault-tmp-F20261122T010000Z.zip".to_string(),
            len as u64
        )]
    );
    up.publish().unwrap();
    assert_eq!(
        s.list().unwrap(),
        vec![("F20261122T010000Z.zip".to_string(), len as u64)]
    );
    for (off, n) in [
        (0usize, 1usize),
        (0, 1 << 20),
        (12_345_678, 3 << 20),
        (len - 100, 100),
        (len - 100, 1000),
        (len / 2, 1),
    ] {
        let got = s
            .read_range("F20261122T010000Z.zip", off as u64, n as u64)
            .unwrap();
        assert_eq!(got, &data[off..(off + n).min(len)], "{off}+{n}");
    }
    let all = s
        .read_range("F20261122T010000Z.zip", 0, len as u64)
        .unwrap();
    assert!(all == data, "whole object differs");
}

#[test]
fn plain_large_upload_and_ranged_reads() {
    let Some(cfg) = server("plain_large_upload_and_ranged_reads") else {
        return;
    };
    large_upload(cfg);
}

#[test]
fn tls_large_upload_and_ranged_reads() {
    let Some(cfg) = server("tls_large_upload_and_ranged_reads") else {
        return;
    };
    large_upload(tls(cfg));
}

#[test]
fn publish_refuses_an_existing_name() {
    let Some(cfg) = server("publish_refuses_an_existing_name") else {
        return;
    };
    for mut cfg in [cfg.clone(), tls(cfg)] {
        cfg.dir = fresh_dir();
        let s = store(cfg);
        s.put_small("x.zip", b"old").unwrap();
        let data = bytes(5000, 3);
        let mut up = s.begin("x.zip", 5000).unwrap();
        up.send(&mut spool(&data), 5000, &|_| {}).unwrap();
        match up.publish() {
            Err(Error::AlreadyExists(p)) => assert!(p.ends_with("/x.zip"), "{p}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.read_range("x.zip", 0, 100).unwrap(), b"old");
        // The refused upload's temporary is gone with it.
        assert_eq!(s.list().unwrap(), vec![("x.zip".to_string(), 3)]);
    }
}

#[test]
fn abort_and_drop_leave_nothing() {
    let Some(cfg) = server("abort_and_drop_leave_nothing") else {
        return;
    };
    let s = store(cfg);
    let data = bytes(100_000, 5);
    let mut up = s.begin("a.zip", 100_000).unwrap();
    up.send(&mut spool(&data), 100_000, &|_| {}).unwrap();
    assert_eq!(s.list().unwrap().len(), 1);
    up.abort();
    assert_eq!(s.list().unwrap(), vec![]);

    let mut up = s.begin("b.zip", 100_000).unwrap();
    up.send(&mut spool(&data), 100_000, &|_| {}).unwrap();
    drop(up);
    assert_eq!(s.list().unwrap(), vec![]);
    // Never sent at all.
    s.begin("c.zip", 1).unwrap().abort();
    assert_eq!(s.list().unwrap(), vec![]);
}

#[test]
fn publish_checks_the_size() {
    let Some(cfg) = server("publish_checks_the_size") else {
        return;
    };
    let s = store(cfg);
    let up = s.begin("short.zip", 10).unwrap();
    // Nothing was sent: publish must refuse, and leave no final name.
    assert!(up.publish().is_err());
    assert!(matches!(s.size("short.zip"), Err(Error::NotFound(_))));
}

#[test]
fn wrong_password_has_a_hint() {
    let Some(mut cfg) = server("wrong_password_has_a_hint") else {
        return;
    };
    cfg.password = "not-the-password".into();
    let s = FtpStore::new(cfg.clone()).unwrap();
    let e = s.list().unwrap_err();
    let msg = e.to_string();
    let hint = e.hint().unwrap_or_default();
    assert!(
        msg.contains("ftp://mvftp@") || msg.contains(&format!("ftp://{}@", cfg.user)),
        "{msg}"
    );
    assert!(msg.contains("530") || msg.contains("login"), "{msg}");
    assert!(hint.contains("MAILVAULT_FTP_PASSWORD"), "{hint}");
    assert!(!msg.contains("not-the-password") && !hint.contains("not-the-password"));
    assert!(!mailvault_repo::storage::remote::is_transient(&e));
}

#[test]
fn expired_certificate_is_named() {
    let Some(mut cfg) = server("expired_certificate_is_named") else {
        return;
    };
    cfg = tls(cfg);
    cfg.port = std::env::var("MAILVAULT_TEST_FTPS_EXPIRED_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let s = FtpStore::new(cfg).unwrap();
    let e = s.exists().unwrap_err();
    let msg = e.to_string();
    let hint = e.hint().unwrap_or_default();
    assert!(msg.starts_with("ftps://"), "{msg}");
    assert!(
        msg.contains("has expired") && msg.contains("127.0.0.1"),
        "{msg}"
    );
    assert!(hint.contains("renew"), "{hint}");
    assert!(!mailvault_repo::storage::remote::is_transient(&e));
}

#[test]
fn untrusted_certificate_without_ca_file() {
    let Some(mut cfg) = server("untrusted_certificate_without_ca_file") else {
        return;
    };
    cfg = tls(cfg);
    cfg.ca_file = None;
    let s = FtpStore::new(cfg).unwrap();
    let e = s.list().unwrap_err();
    let msg = e.to_string();
    let hint = e.hint().unwrap_or_default();
    assert!(
        msg.contains("not signed by a trusted authority") && msg.contains("127.0.0.1"),
        "{msg}"
    );
    assert!(hint.contains("ca="), "{hint}");
}

#[test]
fn plain_server_with_tls_refused_cleanly() {
    // A CA file that is not PEM is refused up front.
    let Some(mut cfg) = server("plain_server_with_tls_refused_cleanly") else {
        return;
    };
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "not a certificate").unwrap();
    cfg.tls = true;
    cfg.ca_file = Some(bad.path().to_path_buf());
    let e = FtpStore::new(cfg).unwrap_err();
    assert!(e.to_string().contains("holds no certificate"), "{e}");
}

/// Kills every process below `pid` (the vsftpd sessions of the instance
/// reserved for this test).
fn kill_sessions(pid: u32) {
    let mut victims = Vec::new();
    let mut parents = vec![pid];
    while let Some(p) = parents.pop() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let ppid: u32 = after
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            if ppid == p {
                victims.push(child);
                parents.push(child);
            }
        }
    }
    assert!(!victims.is_empty(), "no vsftpd session below {pid}");
    for v in victims {
        let _ = std::process::Command::new("kill")
            .args(["-9", &v.to_string()])
            .status();
    }
}

fn resume(tls_on: bool) {
    let test = if tls_on {
        "tls_upload_resumes"
    } else {
        "plain_upload_resumes"
    };
    let Some(mut cfg) = server(test) else { return };
    if tls_on {
        cfg = tls(cfg);
    }
    cfg.port = std::env::var("MAILVAULT_TEST_FTP_KILL_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let pid: u32 = std::env::var("MAILVAULT_TEST_FTP_KILL_PID")
        .unwrap()
        .parse()
        .unwrap();
    let s = store(cfg);
    let len = 24 << 20;
    let data = bytes(len, 11);
    let sent = AtomicU64::new(0);
    let killed = AtomicBool::new(false);
    let mut up = s.begin("D20261122T010000Z.zip", len as u64).unwrap();
    up.send(&mut spool(&data), len as u64, &|n| {
        let total = sent.fetch_add(n, Ordering::Relaxed) + n;
        if total > 8 << 20 && !killed.swap(true, Ordering::Relaxed) {
            kill_sessions(pid);
        }
    })
    .unwrap();
    assert!(killed.load(Ordering::Relaxed));
    // Progress counts each byte once, resent bytes not again.
    assert_eq!(sent.load(Ordering::Relaxed), len as u64);
    up.publish().unwrap();
    assert_eq!(s.size("D20261122T010000Z.zip").unwrap(), len as u64);
    let all = s
        .read_range("D20261122T010000Z.zip", 0, len as u64)
        .unwrap();
    assert!(all == data, "resumed upload differs");
    assert_eq!(
        s.list().unwrap(),
        vec![("D20261122T010000Z.zip".to_string(), len as u64)]
    );
}

/// Both resume tests share the instance whose sessions are killed: one test
/// runs them in turn.
#[test]
fn upload_resumes_after_the_session_is_killed() {
    resume(false);
    resume(true);
}

/// The one suite every `Storage` passes, on `Remote` over the FTP store.
fn conformance(tls_on: bool) {
    let test = if tls_on {
        "tls_remote_conformance"
    } else {
        "plain_remote_conformance"
    };
    let Some(cfg) = server(test) else { return };
    let cfg = if tls_on { tls(cfg) } else { cfg };
    mailvault_repo::storage::conformance::run(&|| {
        let mut cfg = cfg.clone();
        cfg.dir = fresh_dir();
        Box::new(Remote::new(FtpStore::new(cfg).unwrap()))
    });
}

#[test]
fn plain_remote_conformance() {
    conformance(false);
}

#[test]
fn tls_remote_conformance() {
    conformance(true);
}

/// A self-signed certificate as `openssl req -x509` makes them (CA:TRUE):
/// trusted when given with `ca_file`, refused with a hint without it.
#[test]
fn self_signed_certificate_with_and_without_ca_file() {
    let Some(mut cfg) = server("self_signed_certificate_with_and_without_ca_file") else {
        return;
    };
    cfg.tls = true;
    cfg.port = std::env::var("MAILVAULT_TEST_FTPS_SELFSIGNED_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let e = FtpStore::new(cfg.clone()).unwrap().exists().unwrap_err();
    assert!(
        e.to_string().contains("not signed by a trusted authority"),
        "{e}"
    );
    assert!(e.hint().unwrap_or_default().contains("ca="));
    cfg.ca_file = Some(PathBuf::from(
        std::env::var("MAILVAULT_TEST_FTPS_SELFSIGNED_CERT").unwrap(),
    ));
    let s = store(cfg);
    s.put_small("x", b"hello").unwrap();
    assert_eq!(s.read_range("x", 1, 3).unwrap(), b"ell");
}
