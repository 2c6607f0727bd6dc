//! [`LocalDir`]: a backup directory on a local filesystem.
//!
//! Objects are the directory's files (subdirectories such as
//! `safety-copies/` are not objects). Writing goes to
//! `.mailvault-tmp-<name>` beside the final name, committed by a rename that
//! never replaces (`renameat2(RENAME_NOREPLACE)`); removals and renames are
//! made durable by fsyncing the directory. The lock is an OS file lock
//! (`flock`) on `.mailvault.lock`, which the kernel drops when its holder
//! dies; a refused lock names the holder found in `/proc/locks`, so the
//! name is right even when the lock file's text is stale.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Lock, LockMode, Pending, ReadSeek, Storage, TEMP_PREFIX};
use crate::error::{Error, Result};

/// The lock file in a local backup directory.
pub const LOCK_FILE: &str = ".mailvault.lock";

/// A local backup directory.
#[derive(Debug)]
pub struct LocalDir {
    dir: PathBuf,
    /// Directories [`Storage::create_root`] made, deepest last.
    created: Mutex<Vec<PathBuf>>,
}

impl Clone for LocalDir {
    fn clone(&self) -> Self {
        Self::new(&self.dir)
    }
}

impl LocalDir {
    /// The directory `dir` (it need not exist yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            created: Mutex::new(Vec::new()),
        }
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn object(&self, name: &str) -> Result<PathBuf> {
        // Object names are single path components; anything else is a bug or
        // an attack, never a file of this directory.
        if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
            return Err(Error::Request(format!("`{name}` is not an object name")));
        }
        Ok(self.dir.join(name))
    }

    fn place(&self, name: &str) -> String {
        format!("`{}`", self.dir.join(name).display())
    }
}

fn not_found_or(e: std::io::Error, place: String, action: &'static str) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound(place)
    } else {
        Error::Io {
            action,
            place,
            source: e,
        }
    }
}

impl Storage for LocalDir {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn describe(&self, name: &str) -> String {
        self.place(name)
    }

    fn exists(&self) -> Result<bool> {
        match fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => Ok(true),
            Ok(_) => Err(Error::Request(format!(
                "`{}` is not a directory",
                self.dir.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("cannot open", self.place(""))(e)),
        }
    }

    fn create_root(&self) -> Result<bool> {
        if self.exists()? {
            return Ok(false);
        }
        let mut missing = Vec::new();
        let mut p = self.dir.as_path();
        while !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err() {
            missing.push(p.to_path_buf());
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
        fs::create_dir_all(&self.dir)
            .map_err(Error::io("cannot create backup directory", self.place("")))?;
        missing.reverse();
        if let Ok(mut c) = self.created.lock() {
            c.extend(missing);
        }
        Ok(true)
    }

    fn remove_root_if_empty(&self) -> Result<()> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Ok(());
        };
        let names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        if names.iter().any(|n| n != LOCK_FILE) {
            return Ok(());
        }
        let _ = fs::remove_file(self.dir.join(LOCK_FILE));
        let created = self.created.lock().map(|c| c.clone()).unwrap_or_default();
        for d in created.iter().rev() {
            // Only directories this run made, and only while empty.
            if fs::remove_dir(d).is_err() {
                break;
            }
        }
        if created.is_empty() {
            fs::remove_dir(&self.dir).map_err(Error::io("cannot remove", self.place("")))?;
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>> {
        let rd =
            fs::read_dir(&self.dir).map_err(|e| not_found_or(e, self.place(""), "cannot list"))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(Error::io("cannot list", self.place("")))?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            // Names that are not UTF-8 cannot be archive names (nor ours).
            if let (false, Ok(name)) = (is_dir, entry.file_name().into_string()) {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn size(&self, name: &str) -> Result<u64> {
        let p = self.object(name)?;
        fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| not_found_or(e, self.place(name), "cannot stat"))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ReadSeek>> {
        let p = self.object(name)?;
        let f = File::open(&p).map_err(|e| not_found_or(e, self.place(name), "cannot open"))?;
        Ok(Box::new(SeekBuf::new(f)))
    }

    fn create(&self, name: &str) -> Result<Box<dyn Pending>> {
        let final_path = self.object(name)?;
        let temp = self.object(&format!("{TEMP_PREFIX}{name}"))?;
        let file = File::create_new(&temp).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyExists(format!("`{}`", temp.display()))
            } else {
                Error::io("cannot create", format!("`{}`", temp.display()))(e)
            }
        })?;
        Ok(Box::new(LocalPending {
            name: name.to_string(),
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            temp,
            final_path,
            committed: false,
        }))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let p = self.object(name)?;
        fs::remove_file(&p).map_err(|e| not_found_or(e, self.place(name), "cannot remove"))
    }

    fn sync(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("cannot sync directory", self.place("")))
    }

    fn lock(&self, mode: LockMode, holder: &str) -> Result<Lock> {
        let path = self.dir.join(LOCK_FILE);
        let place = format!("`{}`", path.display());
        let file = match fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if mode == LockMode::Shared => {
                // Read-only media: nobody can write there, so a reader is safe.
                return match File::open(&path) {
                    Ok(f) => lock_file(f, mode, &path, &self.dir, holder),
                    Err(_) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(Error::NotFound(self.place("")))
                    }
                    Err(_) => Ok(Lock::read_only()),
                };
            }
            Err(e) => return Err(not_found_or(e, place, "cannot open lock file")),
        };
        lock_file(file, mode, &path, &self.dir, holder)
    }
}

fn lock_file(
    mut file: File,
    mode: LockMode,
    path: &Path,
    dir: &Path,
    holder: &str,
) -> Result<Lock> {
    let place = format!("`{}`", path.display());
    // A holder can finish between our refused attempt and our look at who it
    // was; then the lock is free and we try again rather than report nobody.
    let mut tries = 0;
    loop {
        let got = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match got {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) => match describe_holder(&file, path) {
                Some(holder) => {
                    return Err(Error::Locked {
                        place: format!("`{}`", dir.display()),
                        holder,
                    });
                }
                None if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                None => {
                    return Err(Error::Locked {
                        place: format!("`{}`", dir.display()),
                        holder: "holder unknown".into(),
                    });
                }
            },
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("cannot lock", place)(e)),
        }
    }
    if mode == LockMode::Exclusive {
        // Shared holders write nothing: several of them would overwrite each
        // other; a refused writer finds them through /proc/locks instead.
        let info = format!(
            "pid {}\nstarted {}\ncommand {holder}\n",
            std::process::id(),
            mailvault_formats::version::format_time(chrono::Utc::now())
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(info.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(Error::io("cannot write lock file", place))?;
    }
    Ok(Lock::new(mode, Box::new(file)))
}

/// Who holds the lock on `file`: the pids `/proc/locks` names for its inode,
/// each with the lock file's own record when it is that pid's, or else its
/// command line. `None` when nobody holds it any more (it was released while
/// we looked), or when nothing at all says who did.
fn describe_holder(file: &File, path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    // `/proc/locks` first: a holder writes its record only after locking, so
    // a record read afterwards is at least as new as the pids.
    let pids = file
        .metadata()
        .ok()
        .and_then(|m| lock_holders(m.dev(), m.ino()));
    let text = fs::read_to_string(path).unwrap_or_default();
    let recorded_pid = text
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.trim().parse::<u32>().ok());
    let record = text.lines().collect::<Vec<_>>().join(", ");
    let pids = match pids {
        Some(p) if p.is_empty() => return None,
        Some(p) => p,
        // No /proc (another OS, a restricted container): the record is all we have.
        None => return (!record.is_empty()).then_some(record),
    };
    let mut out = Vec::new();
    for pid in pids {
        if Some(pid) == recorded_pid && !record.is_empty() {
            out.push(record.clone());
        } else {
            let cmd = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    let s: String = String::from_utf8_lossy(&b)
                        .split('\0')
                        .filter(|a| !a.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ");
                    s.chars().take(200).collect::<String>()
                })
                .unwrap_or_default();
            out.push(if cmd.is_empty() {
                format!("pid {pid}")
            } else {
                format!("pid {pid}, command {cmd}")
            });
        }
    }
    Some(out.join("; "))
}

/// Pids holding an flock on the file with this device and inode, from
/// `/proc/locks`; `None` when that cannot be read.
fn lock_holders(dev: u64, ino: u64) -> Option<Vec<u32>> {
    let text = fs::read_to_string("/proc/locks").ok()?;
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    let mut pids: Vec<u32> = text
        .lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`
            (f.len() >= 6 && f[1] == "FLOCK" && f[5] == want).then(|| f[4].parse().ok())?
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    Some(pids)
}

/// A buffered reader that keeps its buffer across seeks that land inside
/// it. ZIP readers seek to every local header and then to the entry's data,
/// both usually a few bytes ahead; `std::io::BufReader` drops its buffer on
/// every seek and so re-reads (and copies) a whole buffer per entry.
struct SeekBuf<R> {
    inner: R,
    buf: Box<[u8]>,
    /// File offset of `buf[0]`.
    start: u64,
    /// Valid bytes in `buf`.
    len: usize,
    /// Read position within `buf`.
    pos: usize,
}

impl<R: Read + Seek> SeekBuf<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0u8; 256 * 1024].into_boxed_slice(),
            start: 0,
            len: 0,
            pos: 0,
        }
    }
}

impl<R: Read + Seek> Read for SeekBuf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.len {
            // Large reads bypass the buffer.
            if out.len() >= self.buf.len() {
                let n = self.inner.read(out)?;
                self.start += (self.len + n) as u64;
                self.len = 0;
                self.pos = 0;
                return Ok(n);
            }
            self.start += self.len as u64;
            self.len = self.inner.read(&mut self.buf)?;
            self.pos = 0;
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for SeekBuf<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let here = self.start + self.pos as u64;
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => here.checked_add_signed(d),
            SeekFrom::End(_) => None,
        };
        if let Some(t) = target
            && t >= self.start
            && t <= self.start + self.len as u64
        {
            self.pos = usize::try_from(t - self.start).unwrap_or(self.len);
            return Ok(t);
        }
        let t = match to {
            SeekFrom::Current(d) => {
                self.inner
                    .seek(SeekFrom::Start(here.checked_add_signed(d).ok_or_else(
                        || {
                            std::io::Error::new(
                                std::io::ErrorKind::InvalidInput,
                                "seek before the start",
                            )
                        },
                    )?))?
            }
            other => self.inner.seek(other)?,
        };
        self.start = t;
        self.len = 0;
        self.pos = 0;
        Ok(t)
    }
}

/// A file being written beside its final name.
struct LocalPending {
    name: String,
    out: Option<BufWriter<File>>,
    temp: PathBuf,
    final_path: PathBuf,
    committed: bool,
}

impl LocalPending {
    fn out(&mut self) -> std::io::Result<&mut BufWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("object already finished"))
    }
}

impl Write for LocalPending {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out()?.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out()?.flush()
    }
}

impl Seek for LocalPending {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.out()?.seek(pos)
    }
}

impl Pending for LocalPending {
    fn name(&self) -> &str {
        &self.name
    }

    fn finish(&mut self) -> Result<()> {
        let place = format!("`{}`", self.temp.display());
        let Some(out) = self.out.take() else {
            return Ok(());
        };
        let file = out
            .into_inner()
            .map_err(|e| Error::io("cannot write", place.clone())(e.into_error()))?;
        file.sync_all().map_err(Error::io("cannot sync", place))?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.finish()?;
        rename_noreplace(&self.temp, &self.final_path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for LocalPending {
    fn drop(&mut self) {
        if !self.committed {
            drop(self.out.take());
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Renames without ever replacing `to`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let place = format!("`{}`", to.display());
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(Error::AlreadyExists(place)),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            // A filesystem without RENAME_NOREPLACE: a hard link fails on an
            // existing name just the same.
            fs::hard_link(from, to).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::AlreadyExists(place.clone())
                } else {
                    Error::io("cannot rename into place", place.clone())(e)
                }
            })?;
            fs::remove_file(from)
                .map_err(Error::io("cannot remove", format!("`{}`", from.display())))
        }
        Err(e) => Err(Error::io("cannot rename into place", place)(e.into())),
    }
}

/// Reads a whole small file; used by tests of this module only.
#[cfg(test)]
fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passes_the_conformance_suite() {
        let tmp = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        crate::storage::conformance::run(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::new(LocalDir::new(tmp.path().join(format!("repo{i}"))))
        });
    }

    #[test]
    fn a_refused_lock_names_the_real_holder_even_with_a_stale_record() {
        let tmp = tempfile::tempdir().unwrap();
        let d = LocalDir::new(tmp.path());
        fs::write(
            tmp.path().join(LOCK_FILE),
            "pid 1\nstarted 2020-01-01T00:00:00Z\ncommand backup full\n",
        )
        .unwrap();
        let _shared = d.lock(LockMode::Shared, "kmsrecover").unwrap();
        let e = d
            .lock(LockMode::Exclusive, "rotate")
            .unwrap_err()
            .to_string();
        let me = std::process::id().to_string();
        assert!(e.contains(&format!("pid {me}")), "{e}");
        assert!(
            !e.contains("backup full"),
            "the stale record is not the holder: {e}"
        );
        assert_eq!(
            read_all(File::open(tmp.path().join(LOCK_FILE)).unwrap()),
            b"pid 1\nstarted 2020-01-01T00:00:00Z\ncommand backup full\n",
            "a shared holder does not rewrite the record"
        );
    }

    #[test]
    fn seek_buf_reads_what_the_file_holds_whatever_the_seeks() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = SeekBuf::new(std::io::Cursor::new(data.clone()));
        let mut state = 7u64;
        for _ in 0..2000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let at = state % 1_000_000;
            let n = usize::try_from((state >> 20) % 70_000).unwrap();
            let pos = match state % 3 {
                0 => r.seek(SeekFrom::Start(at)).unwrap(),
                1 => {
                    let here = r.stream_position().unwrap();
                    let d = i64::try_from(at).unwrap() - i64::try_from(here).unwrap();
                    r.seek(SeekFrom::Current(d)).unwrap()
                }
                _ => r
                    .seek(SeekFrom::End(-i64::try_from(1_000_000 - at).unwrap()))
                    .unwrap(),
            };
            assert_eq!(pos, at);
            let mut buf = vec![0u8; n];
            let got = {
                let mut total = 0;
                while total < n {
                    let k = r.read(&mut buf[total..]).unwrap();
                    if k == 0 {
                        break;
                    }
                    total += k;
                }
                total
            };
            let want = &data
                [usize::try_from(at).unwrap()..(usize::try_from(at).unwrap() + n).min(data.len())];
            assert_eq!(&buf[..got], want);
        }
    }

    #[test]
    fn a_failed_first_run_leaves_no_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let d = LocalDir::new(tmp.path().join("a/b/backups"));
        assert!(d.create_root().unwrap());
        let l = d.lock(LockMode::Exclusive, "backup").unwrap();
        drop(l);
        d.remove_root_if_empty().unwrap();
        assert!(!tmp.path().join("a").exists());
    }
}
