//! `S3Store` against a real S3 server, no mocks: s3s-fs (SigV4 enforced)
//! started by `scripts/servers/s3.sh start`, whose env file
//! (`target/servers/s3.env`) names the endpoint, bucket and credentials.
//! Without `MAILVAULT_TEST_S3_ENDPOINT` every test prints a skip line and
//! passes, unless `MAILVAULT_TEST_SERVERS=required`. Each test works under
//! a fresh random prefix, so they run in parallel on one bucket; the test
//! that stops a server mid-way starts its own (`MAILVAULT_TEST_S3FS_BIN`).
//! `MAILVAULT_RETRY_BASE_MS=10` keeps the retry waits short.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up themselves

use std::io::{Seek, SeekFrom, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailvault_repo::Error;
use mailvault_repo::storage::TEMP_PREFIX;
use mailvault_repo::storage::conformance;
use mailvault_repo::storage::remote::{ObjectStore, Remote, is_transient};
use mailvault_repo::storage::s3::{S3Config, S3Store};

const MIB: u64 = 1024 * 1024;

struct Server {
    endpoint: String,
    bucket: String,
    access: String,
    secret: String,
}

fn server() -> Option<Server> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("MAILVAULT_TEST_S3_ENDPOINT") else {
        assert!(
            var("MAILVAULT_TEST_SERVERS").as_deref() != Some("required"),
            "MAILVAULT_TEST_SERVERS=required but MAILVAULT_TEST_S3_ENDPOINT is not set: run scripts/servers/s3.sh start and source its env file"
        );
        eprintln!("skipped: MAILVAULT_TEST_S3_ENDPOINT is not set (scripts/servers/s3.sh start)");
        return None;
    };
    Some(Server {
        endpoint,
        bucket: var("MAILVAULT_TEST_S3_BUCKET").unwrap_or_else(|| "mailvault-test".into()),
        access: var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID"),
        secret: var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY"),
    })
}

macro_rules! server_or_skip {
    () => {
        match server() {
            Some(s) => s,
            None => return,
        }
    };
}

fn fresh_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "mv-test/{tag}-{}-{nanos:08x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(s: &Server, prefix: &str) -> S3Config {
    S3Config {
        bucket: s.bucket.clone(),
        prefix: prefix.to_owned(),
        endpoint: Some(s.endpoint.clone()),
        region: "us-east-1".into(),
        path_style: true,
        access_key: s.access.clone(),
        secret_key: s.secret.clone(),
        part_size: Some(5 * MIB),
    }
}

/// A store on a fresh prefix, created (as a backup run creates it).
fn store(s: &Server, tag: &str) -> S3Store {
    let store = S3Store::new(config(s, &fresh_prefix(tag))).unwrap();
    assert!(store.create_root().unwrap());
    store
}

fn names(store: &S3Store) -> Vec<(String, u64)> {
    let mut v = store.list().unwrap();
    v.sort();
    v
}

/// `len` bytes that differ at every offset (a misplaced part shows).
fn pattern(len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap())
        .collect()
}

fn spool(bytes: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f
}

fn upload(store: &S3Store, name: &str, bytes: &[u8]) -> mailvault_repo::Result<()> {
    let len = bytes.len() as u64;
    let mut up = store.begin(name, len)?;
    up.send(&mut spool(bytes), len, &|_| {})?;
    up.publish()
}

#[test]
fn location_names_bucket_prefix_and_endpoint_without_credentials() {
    let s = server_or_skip!();
    let store = S3Store::new(config(&s, "/a/b/")).unwrap();
    assert_eq!(
        store.location(),
        format!(
            "s3://{}/a/b?endpoint={}&path_style=true",
            s.bucket, s.endpoint
        )
    );
    let shown = format!("{store:?} {:?}", config(&s, "a"));
    assert!(!shown.contains(&s.secret), "{shown}");
}

#[test]
fn list_size_and_read_range_edges() {
    let s = server_or_skip!();
    let prefix = fresh_prefix("list");
    let store = S3Store::new(config(&s, &prefix)).unwrap();
    // A prefix is a repository once something is under it.
    assert!(!store.exists().unwrap());
    assert!(matches!(store.list(), Err(Error::NotFound(_))));
    assert!(store.create_root().unwrap());
    assert!(store.exists().unwrap());
    assert!(!store.create_root().unwrap());
    assert_eq!(names(&store), vec![]);
    let data = pattern(100);
    store.put_small("a.zip", &data).unwrap();
    store.put_small("empty", b"").unwrap();
    // A deeper object is not a direct child: never listed.
    let deeper = S3Store::new(config(&s, &format!("{prefix}/sub"))).unwrap();
    deeper.put_small("x", b"x").unwrap();
    assert_eq!(
        names(&store),
        vec![("a.zip".to_owned(), 100), ("empty".to_owned(), 0)]
    );
    assert_eq!(store.size("a.zip").unwrap(), 100);
    assert_eq!(store.size("empty").unwrap(), 0);

    assert_eq!(store.read_range("a.zip", 0, 100).unwrap(), data);
    assert_eq!(store.read_range("a.zip", 10, 5).unwrap(), &data[10..15]);
    // Fewer bytes only at the end; at or past the end, none.
    assert_eq!(store.read_range("a.zip", 90, 20).unwrap(), &data[90..]);
    assert_eq!(store.read_range("a.zip", 99, 1).unwrap(), &data[99..]);
    assert!(store.read_range("a.zip", 100, 5).unwrap().is_empty());
    assert!(store.read_range("a.zip", 150, 5).unwrap().is_empty());
    assert!(store.read_range("a.zip", 10, 0).unwrap().is_empty());
    assert!(store.read_range("empty", 0, 10).unwrap().is_empty());

    for r in [
        store.read_range("missing", 0, 10),
        store.read_range("missing", 0, 0),
    ] {
        assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    }
    let e = store.size("missing").unwrap_err();
    assert!(
        matches!(&e, Error::NotFound(p) if p.starts_with(&format!("s3://{}/{prefix}/missing?", s.bucket))),
        "{e:?}"
    );
}

#[test]
fn multipart_upload_of_40_mib_is_invisible_until_published() {
    let s = server_or_skip!();
    let store = store(&s, "multipart");
    let data = pattern(40 * MIB + 12_345);
    let len = data.len() as u64;
    let mut up = store.begin("F20261122T010000Z.zip", len).unwrap();
    let temp = format!("{TEMP_PREFIX}F20261122T010000Z.zip");
    assert_eq!(names(&store), vec![(temp.clone(), 0)]);

    let sent = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    up.send(&mut spool(&data), len, &|n| {
        sent.fetch_add(n, Ordering::Relaxed);
        calls.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(sent.load(Ordering::Relaxed), len);
    assert_eq!(calls.load(Ordering::Relaxed), 9, "5 MiB parts");
    // Sent, not published: nothing under the final name.
    assert_eq!(names(&store), vec![(temp, 0)]);
    assert!(matches!(
        store.size("F20261122T010000Z.zip"),
        Err(Error::NotFound(_))
    ));

    up.publish().unwrap();
    assert_eq!(
        names(&store),
        vec![("F20261122T010000Z.zip".to_owned(), len)]
    );
    assert_eq!(store.size("F20261122T010000Z.zip").unwrap(), len);
    // Across a part boundary, and the tail.
    let at = 5 * MIB - 100;
    assert_eq!(
        store.read_range("F20261122T010000Z.zip", at, 300).unwrap(),
        &data[at as usize..at as usize + 300]
    );
    assert_eq!(
        store
            .read_range("F20261122T010000Z.zip", len - 10, 100)
            .unwrap(),
        &data[data.len() - 10..]
    );
    let whole = store.read_range("F20261122T010000Z.zip", 0, len).unwrap();
    assert!(whole == data, "the object differs from what was sent");
}

#[test]
fn small_upload_is_invisible_until_published() {
    let s = server_or_skip!();
    let store = store(&s, "small");
    let data = pattern(1000);
    let mut up = store.begin("v.zip", 1000).unwrap();
    up.send(&mut spool(&data), 1000, &|_| {}).unwrap();
    assert_eq!(names(&store), vec![]);
    up.publish().unwrap();
    assert_eq!(names(&store), vec![("v.zip".to_owned(), 1000)]);
    assert_eq!(store.read_range("v.zip", 0, 1000).unwrap(), data);
}

#[test]
fn publish_refuses_an_existing_name() {
    let s = server_or_skip!();
    let store = store(&s, "exists");
    store.put_small("v.zip", b"first").unwrap();
    let e = upload(&store, "v.zip", b"second").unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e:?}");
    let big = pattern(6 * MIB);
    let e = upload(&store, "v.zip", &big).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e:?}");
    // The first object is intact; the refused upload left nothing.
    assert_eq!(store.read_range("v.zip", 0, 100).unwrap(), b"first");
    assert_eq!(names(&store), vec![("v.zip".to_owned(), 5)]);
}

#[test]
fn abort_and_drop_leave_nothing() {
    let s = server_or_skip!();
    let store = store(&s, "abort");
    let big = pattern(11 * MIB);
    let mut up = store.begin("a.zip", big.len() as u64).unwrap();
    up.send(&mut spool(&big), big.len() as u64, &|_| {})
        .unwrap();
    up.abort();
    assert_eq!(names(&store), vec![]);

    let mut up = store.begin("b.zip", big.len() as u64).unwrap();
    up.send(&mut spool(&big), big.len() as u64, &|_| {})
        .unwrap();
    drop(up);
    assert_eq!(names(&store), vec![]);

    let up = store.begin("c.zip", 10).unwrap();
    up.abort();
    assert_eq!(names(&store), vec![]);
}

#[test]
fn unfinished_multipart_upload_is_a_temporary_and_removing_it_aborts_it() {
    let s = server_or_skip!();
    let store = store(&s, "unfinished");
    let big = pattern(6 * MIB);
    let mut up = store
        .begin("F20261122T010000Z.1.zip", big.len() as u64)
        .unwrap();
    up.send(&mut spool(&big), big.len() as u64, &|_| {})
        .unwrap();
    // The process "dies": no publish, no abort, no drop.
    std::mem::forget(up);
    let temp = format!("{TEMP_PREFIX}F20261122T010000Z.1.zip");
    assert_eq!(names(&store), vec![(temp.clone(), 0)]);
    store.remove(&temp).unwrap();
    assert_eq!(names(&store), vec![]);
    let e = store.remove(&temp).unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    // The final name is free for a new upload.
    upload(&store, "F20261122T010000Z.1.zip", &big).unwrap();
    assert_eq!(
        store.size("F20261122T010000Z.1.zip").unwrap(),
        big.len() as u64
    );
}

#[test]
fn put_small_replaces() {
    let s = server_or_skip!();
    let store = store(&s, "replace");
    store.put_small(".mailvault-lock-x", b"one").unwrap();
    store.put_small(".mailvault-lock-x", b"two!").unwrap();
    assert_eq!(store.size(".mailvault-lock-x").unwrap(), 4);
    assert_eq!(
        store.read_range(".mailvault-lock-x", 0, 64).unwrap(),
        b"two!"
    );
}

#[test]
fn remove_of_a_missing_object_is_not_found() {
    let s = server_or_skip!();
    let store = store(&s, "remove");
    let e = store.remove("nope").unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    store.put_small("yes", b"1").unwrap();
    store.remove("yes").unwrap();
    assert!(matches!(store.size("yes"), Err(Error::NotFound(_))));
    assert!(matches!(store.remove("yes"), Err(Error::NotFound(_))));
}

#[test]
fn wrong_secret_is_a_target_error_with_a_credentials_hint() {
    let s = server_or_skip!();
    let mut cfg = config(&s, &fresh_prefix("creds"));
    cfg.secret_key = "not-the-secret-key-0123456789".into();
    let store = S3Store::new(cfg).unwrap();
    for e in [
        store.exists().unwrap_err(),
        store.list().unwrap_err(),
        store.read_range("x", 0, 10).unwrap_err(),
        store.put_small("x", b"x").unwrap_err(),
    ] {
        let Error::Target {
            place,
            message,
            transient,
            ..
        } = &e
        else {
            panic!("not a target error: {e:?}")
        };
        assert!(!transient, "{e:?}");
        assert!(
            place.starts_with(&format!("s3://{}/mv-test/", s.bucket)),
            "{place}"
        );
        let hint = e.hint().unwrap();
        eprintln!("{e}\n  hint: {hint}");
        assert!(hint.contains("AWS_SECRET_ACCESS_KEY"), "{hint}");
        assert!(!message.contains("not-the-secret"), "{message}");
        assert!(!format!("{e} {hint}").contains(&s.secret));
    }
}

#[test]
fn missing_bucket_is_named_with_a_hint() {
    let s = server_or_skip!();
    let mut cfg = config(&s, "p");
    cfg.bucket = format!("mailvault-missing-{}", std::process::id());
    let store = S3Store::new(cfg.clone()).unwrap();
    assert!(!store.exists().unwrap());
    let e = store.create_root().unwrap_err();
    eprintln!("{e}\n  hint: {}", e.hint().unwrap_or_default());
    assert!(
        matches!(&e, Error::Target { message, .. } if message.contains(&cfg.bucket)),
        "{e:?}"
    );
    assert!(
        e.hint().unwrap().contains("create bucket"),
        "{:?}",
        e.hint()
    );
    assert!(matches!(store.list(), Err(Error::NotFound(_))));
}

#[test]
fn the_prefix_is_the_repository() {
    let s = server_or_skip!();
    let prefix = fresh_prefix("root");
    let store = S3Store::new(config(&s, &prefix)).unwrap();
    assert!(store.create_root().unwrap());
    store.put_small("F.zip", b"x").unwrap();
    // Not empty: the mark stays.
    store.remove_root_if_empty().unwrap();
    assert!(store.exists().unwrap());
    store.remove("F.zip").unwrap();
    store.remove_root_if_empty().unwrap();
    assert!(!store.exists().unwrap());
    // A prefix holding only deeper prefixes (repository segments) exists.
    let segment = S3Store::new(config(&s, &format!("{prefix}/_panel"))).unwrap();
    segment.put_small("F.zip", b"x").unwrap();
    assert!(store.exists().unwrap());
    assert_eq!(names(&store), vec![]);
    // The bucket's top level exists with the bucket.
    let top = S3Store::new(config(&s, "")).unwrap();
    assert!(top.exists().unwrap());
    assert!(!top.create_root().unwrap());
    top.remove_root_if_empty().unwrap();
}

#[test]
fn remote_over_s3_passes_conformance() {
    let s = server_or_skip!();
    conformance::run(&|| {
        Box::new(Remote::new(
            S3Store::new(config(&s, &fresh_prefix("conformance"))).unwrap(),
        ))
    });
}

/// A private s3s-fs, for the test that kills it.
struct OwnServer {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl OwnServer {
    fn start(s: &Server) -> Option<Self> {
        let bin = std::env::var("MAILVAULT_TEST_S3FS_BIN").ok()?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(&s.bucket)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &s.access, "--secret-key", &s.secret])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "own s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn server_stopped_mid_way_is_a_transient_error_after_retries() {
    let s = server_or_skip!();
    let Some(mut own) = OwnServer::start(&s) else {
        eprintln!("skipped: MAILVAULT_TEST_S3FS_BIN is not set (scripts/servers/s3.sh start)");
        return;
    };
    let mut cfg = config(&s, "stopped");
    cfg.endpoint = Some(own.endpoint.clone());
    let store = S3Store::new(cfg).unwrap();
    store.put_small("there", b"x").unwrap();
    let big = pattern(6 * MIB);
    let mut up = store.begin("v.zip", big.len() as u64).unwrap();
    up.send(&mut spool(&big), big.len() as u64, &|_| {})
        .unwrap();
    own.kill();

    let e = up.publish().unwrap_err();
    eprintln!("{e}\n  hint: {}", e.hint().unwrap_or_default());
    assert!(is_transient(&e), "{e:?}");
    assert!(
        e.to_string()
            .contains(&format!("s3://{}/stopped/v.zip", s.bucket)),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("server is up"), "{:?}", e.hint());
    for e in [
        store.read_range("there", 0, 1).unwrap_err(),
        store.list().unwrap_err(),
        store.exists().unwrap_err(),
    ] {
        assert!(is_transient(&e), "{e:?}");
    }
}

#[test]
fn list_follows_pages_past_1000_objects() {
    let s = server_or_skip!();
    let store = store(&s, "pages");
    let names: Vec<String> = (0..1010).map(|i| format!("o{i:05}")).collect();
    std::thread::scope(|scope| {
        for chunk in names.chunks(names.len().div_ceil(4)) {
            let store = &store;
            scope.spawn(move || {
                for n in chunk {
                    store.put_small(n, n.as_bytes()).unwrap();
                }
            });
        }
    });
    let listed = names_of(&store);
    assert_eq!(listed, names);
}

fn names_of(store: &S3Store) -> Vec<String> {
    names(store).into_iter().map(|(n, _)| n).collect()
}

/// A TCP proxy to the server that cuts every third connection after its
/// first bytes: a flaky network, for real (rust-s3 opens one connection per
/// request, so every request's first attempt may fail).
struct FlakyProxy {
    endpoint: String,
    cut: std::sync::Arc<AtomicU64>,
}

impl FlakyProxy {
    fn start(upstream: &str) -> Self {
        use std::io::Read;
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let cut = std::sync::Arc::new(AtomicU64::new(0));
        let cuts = std::sync::Arc::clone(&cut);
        std::thread::spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                let Ok(mut client) = client else { return };
                if n % 3 == 2 {
                    let mut first = [0u8; 512];
                    let _ = client.read(&mut first);
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    cuts.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { endpoint, cut }
    }
}

#[test]
fn cut_connections_are_retried_part_by_part() {
    let s = server_or_skip!();
    let proxy = FlakyProxy::start(&s.endpoint);
    let mut cfg = config(&s, &fresh_prefix("flaky"));
    cfg.endpoint = Some(proxy.endpoint.clone());
    let store = S3Store::new(cfg).unwrap();
    assert!(store.create_root().unwrap());
    let data = pattern(23 * MIB + 7);
    let len = data.len() as u64;
    let sent = AtomicU64::new(0);
    let mut up = store.begin("F.zip", len).unwrap();
    up.send(&mut spool(&data), len, &|n| {
        sent.fetch_add(n, Ordering::Relaxed);
    })
    .unwrap();
    up.publish().unwrap();
    // Each part counted once, however often it was sent.
    assert_eq!(sent.load(Ordering::Relaxed), len);
    assert_eq!(names(&store), vec![("F.zip".to_owned(), len)]);
    let mut back = Vec::new();
    for at in (0..len).step_by(4 * MIB as usize) {
        back.extend(store.read_range("F.zip", at, 4 * MIB).unwrap());
    }
    assert!(back == data, "the object differs from what was sent");
    store.remove("F.zip").unwrap();
    assert!(
        proxy.cut.load(Ordering::Relaxed) >= 5,
        "the proxy cut {} connections",
        proxy.cut.load(Ordering::Relaxed)
    );
}

/// A volume written through `Remote` the way the zip writer writes one
/// (seeking back to patch what is not settled yet), with parts streamed
/// while it is written: the published object is byte-exact, nothing shows
/// under the final name before commit, and a dropped writer leaves nothing.
#[test]
fn streamed_upload_through_remote_is_exact() {
    use mailvault_repo::storage::Storage;
    let Some(s) = server() else { return };
    let store = store(&s, "stream");
    let remote = Remote::new(store);
    remote.create_root().unwrap();
    let data = pattern(45 * MIB + 12_345);
    let mut p = remote.create("F20261124T000000Z.zip").unwrap();
    let mut settled = 0u64;
    for (i, chunk) in data.chunks(MIB as usize).enumerate() {
        let start = i as u64 * MIB;
        // A placeholder header, patched once the "entry" is written.
        p.write_all(&[0u8; 64]).unwrap();
        p.write_all(&chunk[64.min(chunk.len())..]).unwrap();
        p.seek(SeekFrom::Start(start)).unwrap();
        p.write_all(&chunk[..64.min(chunk.len())]).unwrap();
        p.seek(SeekFrom::End(0)).unwrap();
        // Everything before this entry is final.
        p.settled(settled);
        settled = start;
    }
    assert!(
        !names(remote.store())
            .iter()
            .any(|(n, _)| n == "F20261124T000000Z.zip"),
        "nothing under the final name before commit"
    );
    p.finish().unwrap();
    p.commit().unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(
        &mut remote.open("F20261124T000000Z.zip").unwrap(),
        &mut back,
    )
    .unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "streamed object differs");

    // Dropped mid-way: the multipart upload and its marker are gone.
    let mut p = remote.create("F20261124T000001Z.zip").unwrap();
    for (i, chunk) in data.chunks(MIB as usize).enumerate() {
        p.write_all(chunk).unwrap();
        p.settled(i as u64 * MIB);
    }
    drop(p);
    let left: Vec<String> = names(remote.store())
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.contains("000001Z"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
