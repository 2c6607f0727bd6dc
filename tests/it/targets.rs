//! Backups on targets through the real binaries, against real servers
//! (s3s-fs with SigV4, vsftpd with FTPS; `scripts/test.sh` starts them and
//! sets `MAILVAULT_TEST_SERVERS=required`): full and differential to each
//! target, encrypted and not; `list` and `verify` remotely; one user
//! restored byte-exact with kmsrecover; rotation; `--keep-local`; a server
//! killed mid-upload; two writers; a killed holder; lock expiry; wrong
//! credentials and keys.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailvault_repo::storage::remote::ObjectStore;
use mailvault_repo::storage::s3::{S3Config, S3Store};

use crate::util::*;

fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Whether the servers of `vars` are there; fails when they must be.
fn servers(vars: &[&str]) -> bool {
    if vars.iter().all(|v| var(v).is_some()) {
        return true;
    }
    assert!(
        var("MAILVAULT_TEST_SERVERS").as_deref() != Some("required"),
        "MAILVAULT_TEST_SERVERS=required but {vars:?} are not all set: run scripts/servers/s3.sh start and scripts/servers/ftp.sh start and source their env files"
    );
    eprintln!("skipped: {vars:?} not set (scripts/servers/*.sh start)");
    false
}

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn s3_url(prefix: &str) -> Option<String> {
    if !servers(&["MAILVAULT_TEST_S3_ENDPOINT", "AWS_ACCESS_KEY_ID"]) {
        return None;
    }
    Some(format!(
        "s3://{}/{prefix}?endpoint={}&path_style=true",
        var("MAILVAULT_TEST_S3_BUCKET").unwrap_or_else(|| "mailvault-test".into()),
        var("MAILVAULT_TEST_S3_ENDPOINT").unwrap()
    ))
}

fn ftp_url(dir: &str, tls: bool) -> Option<String> {
    if !servers(&[
        "MAILVAULT_TEST_FTP_HOST",
        "MAILVAULT_TEST_FTP_PORT",
        "MAILVAULT_FTP_PASSWORD",
    ]) {
        return None;
    }
    let scheme = if tls { "ftps" } else { "ftp" };
    let ca = if tls {
        format!("?ca={}", var("MAILVAULT_TEST_FTP_CA").unwrap())
    } else {
        String::new()
    };
    Some(format!(
        "{scheme}://{}@{}:{}/{dir}{ca}",
        var("MAILVAULT_TEST_FTP_USER").unwrap_or_else(|| "mvftp".into()),
        var("MAILVAULT_TEST_FTP_HOST").unwrap(),
        var("MAILVAULT_TEST_FTP_PORT").unwrap()
    ))
}

/// The prefix of an `s3://bucket/prefix?…` URL.
fn s3_prefix(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split('?').next())
        .and_then(|r| r.split_once('/'))
        .map(|(_, p)| p.to_string())
        .unwrap()
}

fn s3_store(prefix: &str, endpoint: &str) -> S3Store {
    S3Store::new(S3Config {
        bucket: var("MAILVAULT_TEST_S3_BUCKET").unwrap_or_else(|| "mailvault-test".into()),
        prefix: prefix.into(),
        endpoint: Some(endpoint.into()),
        region: "us-east-1".into(),
        path_style: true,
        access_key: var("AWS_ACCESS_KEY_ID").unwrap(),
        secret_key: var("AWS_SECRET_ACCESS_KEY").unwrap(),
        part_size: None,
    })
    .unwrap()
}

fn key(t: &TestInstall) -> PathBuf {
    let k = t.tmp.path().join("backup.key");
    ok(&["key", "generate", "--out", k.to_str().unwrap()]);
    k
}

/// `mailvault <args> [--key K]`.
fn mv(args: &[&str], key: Option<&Path>) -> Output {
    let mut c = bin();
    c.args(args);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    c.output().unwrap()
}

fn mv_ok(args: &[&str], key: Option<&Path>) -> Output {
    let out = mv(args, key);
    assert!(
        out.status.success(),
        "mailvault {args:?} failed ({:?}): {}\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    out
}

fn backup_to(t: &TestInstall, kind: &str, url: &str, key: Option<&Path>, extra: &[&str]) -> Output {
    let install = t.install();
    let mut args = vec![
        "backup",
        kind,
        "--install-dir",
        install.to_str().unwrap(),
        "--target",
        url,
    ];
    args.extend_from_slice(extra);
    mv(&args, key)
}

fn backup_to_ok(
    t: &TestInstall,
    kind: &str,
    url: &str,
    key: Option<&Path>,
    extra: &[&str],
) -> serde_json::Value {
    let mut e = extra.to_vec();
    e.push("--json");
    let out = backup_to(t, kind, url, key, &e);
    assert!(
        out.status.success(),
        "backup {kind} to {url} failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn listing(url: &str, key: Option<&Path>) -> serde_json::Value {
    serde_json::from_slice(&mv_ok(&["list", url, "--json"], key).stdout).unwrap()
}

/// (type, status) of every set `list` shows, chains first.
fn sets(l: &serde_json::Value) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for ch in l["chains"].as_array().unwrap() {
        let mut one = |s: &serde_json::Value| {
            v.push((
                s["type"].as_str().unwrap_or_default().to_string(),
                s["status"].as_str().unwrap_or_default().to_string(),
            ));
        };
        one(&ch["full"]);
        for d in ch["differentials"].as_array().unwrap() {
            one(d);
        }
    }
    for s in l["orphans"].as_array().unwrap() {
        v.push((
            "orphan".into(),
            s["status"].as_str().unwrap_or_default().into(),
        ));
    }
    v
}

const JOHN: &str = "store/mail/example.com/john";

/// The whole job on one target: full, differential, list, verify, one user
/// restored byte-exact, rotation.
fn round_trip(url: &str, encrypted: bool) {
    let t = TestInstall::sample();
    let k = encrypted.then(|| key(&t));
    let k = k.as_deref();
    let full = backup_to_ok(&t, "full", url, k, &[]);
    let vols = full["volumes"].as_array().unwrap();
    let first = vols[0].as_str().unwrap();
    let scheme = url.split("://").next().unwrap();
    if url.starts_with("s3://") || url.starts_with("ftp") {
        assert!(first.starts_with(&format!("{scheme}://")), "{first}");
    }
    assert!(
        !first.contains(&var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "\u{0}".into()))
            && !first.contains(&var("MAILVAULT_FTP_PASSWORD").unwrap_or_else(|| "\u{0}".into())),
        "no credentials in reported locations: {first}"
    );
    assert_eq!(
        first.split('?').next().unwrap().ends_with(".zip.enc"),
        encrypted,
        "{first}"
    );

    std::fs::write(
        t.path(&format!("{JOHN}/INBOX/#msgs/00000100.eml")),
        b"Subject: after the full\r\n\r\nnew\r\n",
    )
    .unwrap();
    std::fs::write(
        t.path(&format!("{JOHN}/INBOX/#msgs/00000002.eml")),
        b"Subject: edited\r\n\r\nchanged\r\n",
    )
    .unwrap();
    let diff = backup_to_ok(&t, "differential", url, k, &[]);
    assert_eq!(diff["type"], "differential", "{diff}");
    let want = tree(&t.path(JOHN));

    let l = listing(url, k);
    assert_eq!(
        sets(&l),
        vec![
            ("full".to_string(), "ok".to_string()),
            ("differential".to_string(), "ok".to_string())
        ],
        "{l}"
    );
    mv_ok(&["verify", url], k);
    if encrypted {
        let out = mv(&["list", url], None);
        assert_eq!(out.status.code(), Some(1), "no key: {}", stderr(&out));
        assert!(stderr(&out).contains("--key"), "{}", stderr(&out));
    }

    // John's mailbox wrecked, then restored from the target.
    std::fs::remove_dir_all(t.path(&format!("{JOHN}/INBOX"))).unwrap();
    std::fs::write(
        t.path(&format!("{JOHN}/Sent Items/#msgs/00000777.eml")),
        b"x",
    )
    .unwrap();
    let jane_before = tree(&t.path("store/mail/example.com/jane"));
    let install = t.install();
    let mut args = vec![
        "-d",
        "example.com",
        "-u",
        "john",
        "--install-dir",
        install.to_str().unwrap(),
        "--running-check",
        "false",
    ];
    let kk;
    if let Some(k) = k {
        kk = k.to_str().unwrap().to_string();
        args.extend(["--key", kk.as_str()]);
    }
    args.push(url);
    kms_ok(&args);
    assert_eq!(tree(&t.path(JOHN)), want, "john restored byte for byte");
    assert_eq!(
        tree(&t.path("store/mail/example.com/jane")),
        jane_before,
        "nothing else touched"
    );

    // Rotation on the target: a new full, keep one chain.
    backup_to_ok(&t, "full", url, k, &[]);
    mv_ok(&["rotate", url, "--keep-full", "1"], k);
    let l = listing(url, k);
    assert_eq!(
        sets(&l),
        vec![("full".to_string(), "ok".to_string())],
        "{l}"
    );
    mv_ok(&["verify", url], k);
}

#[test]
fn local_directory_target_plain_and_encrypted_with_nothing_in_the_clear() {
    for encrypted in [false, true] {
        let t = TestInstall::sample();
        let dir = t.tmp.path().join("offsite");
        round_trip(dir.to_str().unwrap(), encrypted);
        let url = format!("file://{}", t.tmp.path().join("file-url").display());
        round_trip(&url, encrypted);
    }
    // Encrypted: the files on disk are `.zip.enc` and hold no message text.
    let t = TestInstall::sample();
    let k = key(&t);
    let dir = t.tmp.path().join("enc");
    backup_to_ok(
        &t,
        "full",
        dir.to_str().unwrap(),
        Some(&k),
        &["--compression", "store"],
    );
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        assert!(name.ends_with(".zip.enc"), "{name}");
        let bytes = std::fs::read(e.path()).unwrap();
        assert!(
            !bytes.windows(8).any(|w| w == b"Subject:"),
            "{name} holds plaintext"
        );
        seen += 1;
    }
    assert_eq!(seen, 1);
    // A plain archive put beside the encrypted one under its name is named,
    // not hidden behind it.
    let enc = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".zip.enc"))
        .unwrap();
    let plain = PathBuf::from(enc.to_string_lossy().trim_end_matches(".enc"));
    std::fs::copy(t.path("users.cfg"), &plain).unwrap();
    let out = mv(&["list", dir.to_str().unwrap()], Some(&k));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("plain archive beside"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn s3_target_plain_and_encrypted() {
    for encrypted in [false, true] {
        let Some(url) = s3_url(&unique("rt")) else {
            return;
        };
        round_trip(&url, encrypted);
    }
}

#[test]
fn ftp_and_ftps_targets_plain_and_encrypted() {
    for tls in [false, true] {
        for encrypted in [false, true] {
            let Some(url) = ftp_url(&unique("rt"), tls) else {
                return;
            };
            round_trip(&url, encrypted);
        }
    }
}

#[test]
fn keep_local_writes_both_and_verifies_the_copy() {
    let Some(url) = s3_url(&unique("keep")) else {
        return;
    };
    let t = TestInstall::sample();
    let k = key(&t);
    let backups = t.backups();
    let s = backup_to_ok(
        &t,
        "full",
        &url,
        Some(&k),
        &["--keep-local", "--backup-dir", backups.to_str().unwrap()],
    );
    let local = s["volumes"][0].as_str().unwrap();
    assert!(Path::new(local).is_file(), "{s}");
    assert_valid_zip(Path::new(local));
    let copied = s["copied"][0].as_str().unwrap();
    assert!(
        copied.starts_with("s3://") && copied.contains(".zip.enc"),
        "{s}"
    );
    assert_eq!(sets(&listing(&url, Some(&k))).len(), 1);
    assert_eq!(sets(&listing(backups.to_str().unwrap(), None)).len(), 1);
}

#[test]
fn wrong_credentials_missing_bucket_and_wrong_key_are_clear_errors() {
    let Some(url) = s3_url(&unique("creds")) else {
        return;
    };
    let t = TestInstall::sample();
    let out = bin()
        .args(["list", &url])
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret-0000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("s3://") && err.contains("hint:"), "{err}");
    assert!(
        err.contains("AWS_SECRET_ACCESS_KEY") || err.contains("credentials"),
        "{err}"
    );
    assert!(
        !err.contains("wrong-secret-0000"),
        "the secret is never printed: {err}"
    );

    let missing = url.replacen(
        &var("MAILVAULT_TEST_S3_BUCKET").unwrap_or_else(|| "mailvault-test".into()),
        "no-such-bucket-mv",
        1,
    );
    let out = backup_to(&t, "full", &missing, None, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no-such-bucket-mv"),
        "{}",
        stderr(&out)
    );

    let k1 = key(&t);
    backup_to_ok(&t, "full", &url, Some(&k1), &[]);
    let k2 = t.tmp.path().join("other.key");
    ok(&["key", "generate", "--out", k2.to_str().unwrap()]);
    let out = mv(&["verify", &url], Some(&k2));
    assert_ne!(out.status.code(), Some(0));
    let text = stdout(&out) + &stderr(&out);
    let id = |k: &Path| {
        let o = ok(&["key", "show", k.to_str().unwrap(), "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["key_id"].as_str().unwrap().to_string()
    };
    assert!(text.contains(&id(&k1)) && text.contains(&id(&k2)), "{text}");

    // FTP: a wrong password names the user and the variable.
    let Some(f) = ftp_url(&unique("creds"), false) else {
        return;
    };
    let out = bin()
        .args(["list", &f])
        .env("MAILVAULT_FTP_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("MAILVAULT_FTP_PASSWORD") && !err.contains("not-the-password"),
        "{err}"
    );
}

/// A private s3s-fs (same credentials), for tests that kill it.
struct OwnS3 {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl OwnS3 {
    fn start(dir: &Path, port: u16) -> Option<Self> {
        let bin = var("MAILVAULT_TEST_S3FS_BIN")?;
        let bucket = var("MAILVAULT_TEST_S3_BUCKET").unwrap_or_else(|| "mailvault-test".into());
        std::fs::create_dir_all(dir.join(bucket)).unwrap();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &var("AWS_ACCESS_KEY_ID")?])
            .args(["--secret-key", &var("AWS_SECRET_ACCESS_KEY")?])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            port,
            dir: dir.to_path_buf(),
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint={}&path_style=true",
            var("MAILVAULT_TEST_S3_BUCKET").unwrap_or_else(|| "mailvault-test".into()),
            self.endpoint()
        )
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay to `upstream` at about `bytes_per_sec` each way: the real
/// server, slowed so that a test can act while an upload is in flight.
struct SlowProxy {
    port: u16,
}

impl SlowProxy {
    fn start(upstream: u16, bytes_per_sec: u64) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(down) = conn else { continue };
                let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16 * 1024];
                        let pause =
                            Duration::from_secs_f64(buf.len() as f64 / bytes_per_sec as f64);
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                    if n == buf.len() {
                                        std::thread::sleep(pause);
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                };
                pipe(down.try_clone().unwrap(), up.try_clone().unwrap());
                pipe(up, down);
            }
        });
        Self { port }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Names under `prefix` on the server that start with `start`.
fn objects(store: &S3Store, start: &str) -> Vec<String> {
    store
        .list()
        .map(|v| {
            v.into_iter()
                .map(|(n, _)| n)
                .filter(|n| n.starts_with(start))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_backup_to(t: &TestInstall, url: &str, extra: &[&str]) -> Child {
    bin()
        .args(["backup", "full", "--install-dir"])
        .arg(t.install())
        .args(["--target", url])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_server_killed_mid_upload_leaves_no_backup_and_the_next_run_completes() {
    if s3_url("x").is_none() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = OwnS3::start(data.path(), port).expect("MAILVAULT_TEST_S3FS_BIN");
    let prefix = unique("killed");
    let store = s3_store(&prefix, &server.endpoint());
    // The backup goes through a slow relay so the kill lands mid-upload.
    let proxy = SlowProxy::start(port, 8 << 20);
    let url = server.url(&prefix).replace(
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", proxy.port),
    );
    let t = TestInstall::generated(1500, 7);
    let child = spawn_backup_to(&t, &url, &["--split-size", "20M", "--compression", "store"]);
    wait_for("an upload to start", 120, || {
        !objects(&store, mailvault_repo::storage::TEMP_PREFIX).is_empty()
    });
    server.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("s3://") && err.contains("hint:"), "{err}");

    // Restarted on the same data: nothing partial is listed as a backup.
    let dir = server.dir.clone();
    drop(server);
    let _server = OwnS3::start(&dir, port).unwrap();
    let l = listing(&url, None);
    assert!(
        sets(&l).iter().all(|(_, status)| status != "ok"),
        "a killed upload is never listed as a backup: {l}"
    );
    // The next run cleans up and completes.
    backup_to_ok(&t, "full", &url, None, &["--split-size", "4M"]);
    let l = listing(&url, None);
    assert_eq!(
        sets(&l),
        vec![("full".to_string(), "ok".to_string())],
        "{l}"
    );
    assert!(l["leftovers"].as_array().unwrap().is_empty(), "{l}");
    mv_ok(&["verify", &url], None);
}

#[test]
fn two_writers_the_second_names_the_first_and_a_killed_holder_or_an_expired_lock_lets_the_next_run_in()
 {
    let Some(url) = s3_url(&unique("locks")) else {
        return;
    };
    let prefix = s3_prefix(&url);
    let endpoint = var("MAILVAULT_TEST_S3_ENDPOINT").unwrap();
    let store = s3_store(&prefix, &endpoint);
    let t = TestInstall::generated(1500, 3);
    // The first writer goes through a slow relay: it is still running when
    // the second one starts.
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = SlowProxy::start(port, 4 << 20);
    let slow = url.replace(
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", proxy.port),
    );
    let mut first = spawn_backup_to(&t, &slow, &["--compression", "store"]);
    wait_for("the first run's lock", 120, || {
        !objects(&store, ".mailvault-lock-").is_empty()
    });
    let out = backup_to(&t, "full", &url, None, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("backup full") && err.contains(&format!("pid {}", first.id())),
        "the refusal names the holder: {err}"
    );
    // A reader is refused too while a writer holds the target.
    let out = mv(&["verify", &url], None);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // `list` still lists, and says who is writing (its temporaries are work
    // in progress, not leftovers of an interrupted run).
    let l = listing(&url, None);
    assert!(
        l["in_use_by"]
            .as_str()
            .is_some_and(|h| h.contains("backup full")),
        "{l}"
    );
    let out = mv_ok(&["list", &url], None);
    assert!(
        stdout(&out).contains("in use by another run") && !stdout(&out).contains("interrupted"),
        "{}",
        stdout(&out)
    );

    // kill -9: the holder's lock is dead at once on this host.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        !objects(&store, ".mailvault-lock-").is_empty(),
        "the dead holder's lock is still there"
    );
    backup_to_ok(&t, "full", &url, None, &[]);

    // A holder on another machine that died: refused until its lock expires.
    let now = chrono::Utc::now();
    let text = format!(
        "mailvault-lock: 1\nmode: exclusive\nholder: backup differential\nhost: mail2.example.net\npid: 4242\nstarted: {}\nexpires: {}\n",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (now + chrono::Duration::seconds(4)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    store
        .put_small(".mailvault-lock-mail2.example.net-4242-0", text.as_bytes())
        .unwrap();
    let out = backup_to(&t, "differential", &url, None, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mail2.example.net"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_secs(5));
    backup_to_ok(&t, "differential", &url, None, &[]);
    assert!(
        objects(&store, ".mailvault-lock-").is_empty(),
        "expired and finished locks are gone"
    );
}

#[test]
fn an_ftp_upload_cut_mid_way_resumes_and_the_backup_is_exact() {
    let Some(_) = ftp_url("x", false) else { return };
    let (Some(port), Some(pid)) = (
        var("MAILVAULT_TEST_FTP_KILL_PORT"),
        var("MAILVAULT_TEST_FTP_KILL_PID"),
    ) else {
        return;
    };
    let dir = unique("resume");
    let url = format!(
        "ftp://{}@127.0.0.1:{port}/{dir}",
        var("MAILVAULT_TEST_FTP_USER").unwrap_or_else(|| "mvftp".into())
    );
    let t = TestInstall::generated(1500, 5);
    let child = spawn_backup_to(&t, &url, &["--compression", "store"]);
    // Cut the data sessions of that server (its children) once an upload runs.
    let home = PathBuf::from(
        String::from_utf8(
            Command::new("sh")
                .args(["-c", "getent passwd mvftp | cut -d: -f6"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim(),
    )
    .join(&dir);
    wait_for("an upload of at least 8 MiB", 120, || {
        std::fs::read_dir(&home).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".mailvault-tmp-F")
                    && e.metadata().is_ok_and(|m| m.len() > 8 << 20)
            })
        })
    });
    kill_descendants(pid.parse().unwrap());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the upload resumed: {}", stderr(&out));
    let l = listing(&url, None);
    assert_eq!(
        sets(&l),
        vec![("full".to_string(), "ok".to_string())],
        "{l}"
    );
    mv_ok(&["verify", &url], None);
}

/// SIGKILLs every process below `pid` (vsftpd's sessions), not `pid` itself.
fn kill_descendants(pid: u32) {
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
            let ppid: u32 = stat
                .rsplit_once(')')
                .map_or("", |(_, r)| r)
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
        let _ = Command::new("kill").args(["-9", &v.to_string()]).status();
    }
}

/// Review finding: a backup run with another key used to take every
/// archive for damaged, write a full and rotate the good backups away.
#[test]
fn a_backup_with_another_key_is_refused_and_deletes_nothing() {
    let Some(url) = s3_url(&unique("wrongkey")) else {
        return;
    };
    let t = TestInstall::sample();
    let a = key(&t);
    backup_to_ok(&t, "full", &url, Some(&a), &[]);
    let b = t.tmp.path().join("b.key");
    ok(&["key", "generate", "--out", b.to_str().unwrap()]);
    for kind in ["full", "differential"] {
        let out = backup_to(&t, kind, &url, Some(&b), &["--keep-full", "1"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("encrypted with key"),
            "{}",
            stderr(&out)
        );
    }
    let out = mv(&["verify", &url], Some(&b));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a wrong key is an error, not damage"
    );
    assert_eq!(
        sets(&listing(&url, Some(&a))),
        vec![("full".to_string(), "ok".to_string())],
        "the backup made with the right key is still there, alone"
    );
}

/// Review finding: after a failed copy, `--keep-local` used to put a
/// differential on the target whose full never got there.
#[test]
fn keep_local_copies_a_missing_base_before_its_differential() {
    let Some(url) = s3_url(&unique("catchup")) else {
        return;
    };
    let prefix = s3_prefix(&url);
    let store = s3_store(&prefix, &var("MAILVAULT_TEST_S3_ENDPOINT").unwrap());
    let t = TestInstall::sample();
    let k = key(&t);
    let backups = t.backups();
    let local = ["--keep-local", "--backup-dir", backups.to_str().unwrap()];
    // Another machine holds the target: the full is written locally only.
    store.create_root().unwrap();
    let now = chrono::Utc::now();
    let lock = format!(
        "mailvault-lock: 1\nmode: exclusive\nholder: backup full\nhost: other.example.net\npid: 7\nstarted: {}\nexpires: {}\n",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (now + chrono::Duration::hours(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    store
        .put_small(".mailvault-lock-other.example.net-7-0", lock.as_bytes())
        .unwrap();
    let out = backup_to(&t, "full", &url, Some(&k), &local);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mailvault unlock"),
        "{}",
        stderr(&out)
    );
    // The admin knows that run is gone: unlock, then the next differential.
    let out = mv_ok(&["unlock", &url], None);
    assert!(
        stdout(&out).contains("other.example.net"),
        "{}",
        stdout(&out)
    );
    std::fs::write(
        t.path(&format!("{JOHN}/INBOX/#msgs/00000200.eml")),
        b"Subject: later\r\n\r\nx\r\n",
    )
    .unwrap();
    backup_to_ok(&t, "differential", &url, Some(&k), &local);
    assert_eq!(
        sets(&listing(&url, Some(&k))),
        vec![
            ("full".to_string(), "ok".to_string()),
            ("differential".to_string(), "ok".to_string())
        ],
        "the base full was copied first"
    );
    mv_ok(&["verify", &url], Some(&k));
}

/// A full spool disk is named as such (not as the target's), exits 1 and
/// leaves nothing under a final name: the plaintext spool of an encrypted
/// backup, and the upload spool of a remote target.
#[test]
fn a_full_spool_disk_is_named_and_leaves_nothing() {
    let t = TestInstall::generated(200, 9);
    let k = key(&t);
    let disk = SmallDisk::new(t.tmp.path().join("spool"), "1m");
    let spool = disk.path.to_str().unwrap().to_string();
    let dir = t.tmp.path().join("offsite");
    let mut cases = vec![(dir.to_str().unwrap().to_string(), Some(k.clone()))];
    if let Some(url) = s3_url(&unique("spoolfull")) {
        cases.push((url, None));
    }
    for (url, key) in cases {
        let out = backup_to(
            &t,
            "full",
            &url,
            key.as_deref(),
            &["--spool-dir", &spool, "--compression", "store"],
        );
        assert_eq!(out.status.code(), Some(1), "{url}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&spool) && err.contains("--spool-dir"), "{err}");
        // A target the failed run created is removed again; one that stays
        // lists no backup.
        let out = mv(&["list", &url, "--json"], key.as_deref());
        if out.status.success() {
            let l: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(sets(&l).is_empty(), "nothing listed as a backup: {l}");
        } else {
            assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
        }
    }
    assert!(
        std::fs::read_dir(&dir)
            .map(|rd| rd
                .flatten()
                .all(|e| e.file_name().to_string_lossy().starts_with('.')))
            .unwrap_or(true),
        "no archive under a final name"
    );
    assert_eq!(
        std::fs::read_dir(&disk.path).unwrap().count(),
        0,
        "the spool is empty"
    );
}

/// The mail tools read backups on a target like every other reader:
/// search, export, merge-eml --from, kmsrecover --message and migrate, on
/// an encrypted S3 target and an FTPS one.
#[test]
fn mail_tools_read_remote_encrypted_targets() {
    let (Some(s3), Some(ftps)) = (s3_url(&unique("mail")), ftp_url(&unique("mail"), true)) else {
        return;
    };
    for url in [s3, ftps] {
        let t = TestInstall::sample();
        let k = key(&t);
        let install = t.install();
        let i = install.to_str().unwrap();
        let o = mv(
            &["backup", "full", "-q", "--install-dir", i, "--target", &url],
            Some(&k),
        );
        assert!(o.status.success(), "{url}: {}", stderr(&o));
        // search: a message of Projects by its subject.
        let projects = install.join("store/mail/example.com/john/Projects/#msgs");
        let first = std::fs::read_dir(&projects)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .min()
            .unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(&first).unwrap()).into_owned();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap()
            .trim()
            .to_string();
        let o = mv(&["search", "--subject", &subject, "--json", &url], Some(&k));
        assert!(o.status.success(), "{url}: {}", stderr(&o));
        let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let name = first.file_name().unwrap().to_str().unwrap().to_string();
        let path = format!("store/mail/example.com/john/Projects/#msgs/{name}");
        assert!(hits.to_string().contains(&path), "{url}: {hits}");
        // kmsrecover --message after the message was deleted live.
        let content = std::fs::read(&first).unwrap();
        std::fs::remove_file(&first).unwrap();
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kmsrecover"));
        c.args([
            "--message",
            &path,
            "--install-dir",
            i,
            "--running-check",
            "false",
            "--json",
            "--key",
        ])
        .arg(&k)
        .arg(&url);
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(r["fetched_bytes"].as_u64().unwrap() > 0, "{url}: {r}");
        let back: Vec<Vec<u8>> = std::fs::read_dir(&projects)
            .unwrap()
            .flatten()
            .map(|e| std::fs::read(e.path()).unwrap())
            .collect();
        assert!(back.contains(&content), "{url}: the message is back");
        // merge-eml --from: a folder beside the live one.
        let o = mv(
            &[
                "merge-eml",
                "--install-dir",
                i,
                "--running-check",
                "false",
                "-u",
                "john@example.com",
                "-f",
                "Sent (backup)",
                "--from",
                &url,
                "--source-folder",
                "Sent Items",
            ],
            Some(&k),
        );
        assert!(o.status.success(), "{url}: {}", stderr(&o));
        let n = |d: &str| {
            std::fs::read_dir(
                install
                    .join("store/mail/example.com/john")
                    .join(d)
                    .join("#msgs"),
            )
            .unwrap()
            .count()
        };
        assert_eq!(n("Sent (backup)"), n("Sent Items"));
        // export --from, one user as Maildir.
        let out = t.tmp.path().join("export");
        let o = mv(
            &[
                "export",
                "--from",
                &url,
                "--user",
                "jane@example.com",
                "--out",
                out.to_str().unwrap(),
            ],
            Some(&k),
        );
        assert!(o.status.success(), "{url}: {}", stderr(&o));
        let cur = std::fs::read_dir(out.join("example.com/jane/cur"))
            .unwrap()
            .count();
        assert_eq!(
            cur,
            n_in(&install.join("store/mail/example.com/jane/INBOX/#msgs"))
        );
        // migrate --from onto a new directory: verified (exit 3 only for the
        // sample's disabled user, whom backups leave out).
        let to = t.tmp.path().join("migrated");
        let o = mv(
            &[
                "migrate",
                "--from",
                &url,
                "--to",
                to.to_str().unwrap(),
                "--json",
            ],
            Some(&k),
        );
        assert_eq!(o.status.code(), Some(3), "{url}: {}", stderr(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let missing = r["not_migrated"].as_array().unwrap();
        assert_eq!(missing.len(), 1, "{url}: {r}");
        assert!(
            to.join("store/mail/example.com/john/Projects/#msgs")
                .is_dir()
        );
    }
}

fn n_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}
