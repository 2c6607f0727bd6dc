//! Shared test helpers: run the real binary, build installs, check archives
//! with independent ZIP readers (Info-ZIP unzip, 7-Zip, Python's zipfile, bsdtar).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailvault"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run mailvault")
}

pub fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "mailvault {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary directory holding an install (`install/`) and room for backups.
pub struct TestInstall {
    pub tmp: tempfile::TempDir,
}

impl TestInstall {
    /// A copy of samples/install.
    pub fn sample() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(repo_root().join("samples/install"))
            .arg(tmp.path().join("install"))
            .status()
            .unwrap();
        assert!(st.success());
        Self { tmp }
    }

    /// A generated store of `messages` messages.
    pub fn generated(messages: u64, seed: u64) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("install");
        ok(&[
            "sample-store",
            "--domains",
            "2",
            "--users",
            "3",
            "--messages",
            &messages.to_string(),
            "--seed",
            &seed.to_string(),
            out.to_str().unwrap(),
        ]);
        Self { tmp }
    }

    pub fn install(&self) -> PathBuf {
        self.tmp.path().join("install")
    }

    pub fn backups(&self) -> PathBuf {
        self.tmp.path().join("backups")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.install().join(rel)
    }

    /// Runs `mailvault backup <kind>` into `backups/` with extra args; returns the output.
    pub fn backup(&self, kind: &str, extra: &[&str]) -> Output {
        let install = self.install();
        let backups = self.backups();
        let mut args = vec![
            "backup",
            kind,
            "--install-dir",
            install.to_str().unwrap(),
            "--backup-dir",
            backups.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    pub fn backup_ok(&self, kind: &str, extra: &[&str]) -> serde_json::Value {
        let mut e = extra.to_vec();
        e.push("--json");
        let out = self.backup(kind, &e);
        assert!(
            out.status.success(),
            "backup {kind} failed: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("backup --json prints JSON")
    }

    /// Archive files under final names in the backup directory, oldest first
    /// (by the time in the name, then volume), temporaries excluded.
    pub fn archives(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.backups())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.extension().is_some_and(|x| x == "zip")
                            && !p.file_name().unwrap().to_string_lossy().starts_with('.')
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|p| {
            let n = p.file_name().unwrap().to_str().unwrap().to_string();
            (n[1..17].to_string(), n.len(), n)
        });
        v
    }
}

/// Asserts that Info-ZIP unzip, 7-Zip, bsdtar and Python's zipfile all accept `zip`.
pub fn assert_valid_zip(zip: &Path) {
    let z = zip.to_str().unwrap();
    let checks: [(&str, Vec<&str>); 4] = [
        ("unzip", vec!["-tqq", z]),
        ("7z", vec!["t", "-bso0", "-bsp0", z]),
        ("bsdtar", vec!["-xOf", z]),
        (
            "python3",
            vec![
                "-c",
                "import zipfile,sys; sys.exit(zipfile.ZipFile(sys.argv[1]).testzip() is not None)",
                z,
            ],
        ),
    ];
    for (tool, args) in checks {
        let out = Command::new(tool).args(&args).output().unwrap_or_else(|e| {
            panic!("{tool} is needed for the tests (scripts/test.sh installs it): {e}")
        });
        assert!(
            out.status.success(),
            "{tool} rejects {z}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Entry names in archive order, as Python's zipfile reads them.
pub fn entry_names(zip: &Path) -> Vec<String> {
    let out = Command::new("python3")
        .args(["-c", "import zipfile,sys\nfor i in zipfile.ZipFile(sys.argv[1]).infolist(): print(i.filename)", zip.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// One entry's content, read by Info-ZIP unzip.
pub fn entry_text(zip: &Path, name: &str) -> String {
    let out = Command::new("unzip")
        .args(["-p", zip.to_str().unwrap(), name])
        .output()
        .unwrap();
    assert!(out.status.success(), "unzip -p {name}");
    String::from_utf8(out.stdout).unwrap()
}

/// Catalog rows: path -> (where, size, crc).
pub fn catalog(zip: &Path) -> BTreeMap<String, (String, u64, String)> {
    entry_text(zip, ".catalog.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let c: Vec<&str> = l.splitn(5, '\t').collect();
            (
                c[4].to_string(),
                (c[3].to_string(), c[1].parse().unwrap(), c[0].to_string()),
            )
        })
        .collect()
}

/// Every regular file under `root`, relative path -> content.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot(root)
        .into_iter()
        .map(|(k, (content, _))| (k, content))
        .collect()
}

/// Sets a file's mtime to `secs` (Unix).
pub fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap();
}

/// The volume whose summary says it is the last (it holds the catalog).
pub fn last_volume(vols: &[PathBuf]) -> PathBuf {
    vols.iter()
        .find(|v| entry_text(v, ".summary.txt").contains("last-volume: yes"))
        .expect("a last volume")
        .clone()
}

pub fn kms(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmsrecover"))
        .args(args)
        .output()
        .expect("run kmsrecover")
}

pub fn kms_ok(args: &[&str]) -> Output {
    let out = kms(args);
    assert!(
        out.status.success(),
        "kmsrecover {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every regular file under `root` with its content and mtime.
pub fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut m = BTreeMap::new();
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            m.insert(
                rel,
                (
                    std::fs::read(e.path()).unwrap(),
                    e.metadata().unwrap().modified().unwrap(),
                ),
            );
        }
    }
    m
}

/// Copies a directory tree with `cp -a` (keeps mtimes).
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Flips one byte in the middle of an entry's compressed data (offsets as
/// Python's zipfile computes them).
pub fn flip_byte_in_entry(zip: &Path, name: &str) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let out = Command::new("python3")
        .args([
            "-c",
            "import zipfile,sys,struct\nz=zipfile.ZipFile(sys.argv[1]);i=z.getinfo(sys.argv[2]);f=open(sys.argv[1],'rb');f.seek(i.header_offset);h=f.read(30);n,e=struct.unpack('<HH',h[26:30]);print(i.header_offset+30+n+e+i.compress_size//2)",
            zip.to_str().unwrap(),
            name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(zip)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x55]).unwrap();
}

/// What a backup of the sample takes: everything but the store's logs, queue,
/// tmp and the disabled user's mailbox.
pub fn backed_up<V>(mut all: BTreeMap<String, V>) -> BTreeMap<String, V> {
    all.retain(|k, _| {
        ![
            "store/logs/",
            "store/queue/",
            "store/tmp/",
            "store/mail/example.com/olduser/",
        ]
        .iter()
        .any(|p| k.starts_with(p))
    });
    all
}

/// How many entries of `dir` start with `prefix` (temporaries, staging leftovers).
pub fn count_prefixed(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .count()
}

impl TestInstall {
    /// Starts `mailvault backup <kind>` in the background, output discarded unless piped later.
    pub fn spawn_backup(&self, kind: &str, extra: &[&str], piped: bool) -> std::process::Child {
        let io = || {
            if piped {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            }
        };
        bin()
            .args(["backup", kind])
            .args(extra)
            .args([
                "--install-dir",
                self.install().to_str().unwrap(),
                "--backup-dir",
                self.backups().to_str().unwrap(),
            ])
            .stdout(io())
            .stderr(io())
            .spawn()
            .unwrap()
    }
}

/// Rewrites `zip` with Python's zipfile: entries named in `drop` left out,
/// entries in `replace` given new content (order and other entries kept).
pub fn rewrite_zip(zip: &Path, drop: &[&str], replace: &[(&str, &str)]) {
    let script = r"import zipfile,sys,json,shutil
src=sys.argv[1];drop=set(json.loads(sys.argv[2]));rep=dict(json.loads(sys.argv[3]))
tmp=src+'.rw'
with zipfile.ZipFile(src) as a, zipfile.ZipFile(tmp,'w',zipfile.ZIP_DEFLATED) as b:
  for i in a.infolist():
    if i.filename in drop: continue
    data=rep[i.filename].encode() if i.filename in rep else a.read(i.filename)
    b.writestr(i,data)
shutil.move(tmp,src)
";
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            zip.to_str().unwrap(),
            &serde_json::to_string(drop).unwrap(),
            &serde_json::to_string(replace).unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Peak resident memory (KiB) of a command run through Python's `resource` module.
pub fn peak_rss_kib(program: &Path, args: &[&str]) -> (i32, u64) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import resource,subprocess,sys\nr=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)\nprint(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
            program.to_str().unwrap(),
        ])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace();
    (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    )
}

/// A small tmpfs mounted for a full-disk test (the tests run as root, CI
/// too); unmounted when dropped.
pub struct SmallDisk {
    pub path: PathBuf,
}

impl SmallDisk {
    pub fn new(at: PathBuf, size: &str) -> Self {
        std::fs::create_dir(&at).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                at.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(st.success(), "mounting a small tmpfs needs root");
        Self { path: at }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A fetched corpus (scripts/corpora.sh writes target/corpora/corpora.env):
/// the directory named by `var`. `None` (the test skips) when it is not set,
/// unless `MAILVAULT_TEST_SERVERS=required` (scripts/test.sh), then a failure.
pub fn corpus(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if Path::new(&v).is_dir() => Some(PathBuf::from(v)),
        _ => {
            assert!(
                std::env::var("MAILVAULT_TEST_SERVERS").as_deref() != Ok("required"),
                "MAILVAULT_TEST_SERVERS=required but {var} is not a directory: run scripts/corpora.sh and source target/corpora/corpora.env"
            );
            eprintln!("skipped: {var} not set (scripts/corpora.sh)");
            None
        }
    }
}
