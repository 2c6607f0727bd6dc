//! Remote targets (S3, FTP): what a network backend must provide
//! ([`ObjectStore`]: plain object operations and an upload that appears
//! whole), and everything written once above it ([`Remote`], a
//! [`Storage`]): spooling a volume to local disk while the
//! zip writer seeks in it, uploading it with retries, reading objects by
//! ranges with a growing read-ahead, and the lock held by lock objects with
//! an owner, host, pid and expiry, refreshed while a run lasts.

mod lock;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Lock, LockMode, Pending, ReadSeek, Storage};
use crate::error::{Error, Result};

/// Prefix of lock objects on a remote target.
pub const LOCK_PREFIX: &str = ".mailvault-lock-";

/// Transfer progress: called with the bytes sent or received since the last
/// call.
pub type OnBytes<'a> = &'a (dyn Fn(u64) + Sync);

/// An upload in progress: nothing is visible under its final name until
/// [`Upload::publish`].
pub trait Upload: Send {
    /// Sends `len` bytes read from `file` (positioned at 0), resuming or
    /// retrying transient failures itself. The object stays invisible under
    /// its final name (S3: an unfinished multipart upload; FTP: a temporary
    /// file). Calls `progress` as bytes go out.
    ///
    /// # Errors
    /// [`Error::Target`] once retries are exhausted or on a permanent
    /// failure; I/O reading `file`.
    fn send(&mut self, file: &mut File, len: u64, progress: OnBytes<'_>) -> Result<()>;
    /// For uploads made by [`ObjectStore::begin_stream`]: sends what it can
    /// of the first `upto` bytes of `file` (which will not change) while the
    /// rest is still being written; [`Upload::send`] then sends the rest.
    /// Called again and again with a growing `upto`.
    ///
    /// # Errors
    /// As [`Upload::send`].
    fn send_early(&mut self, file: &File, upto: u64, progress: OnBytes<'_>) -> Result<()> {
        let _ = (file, upto, progress);
        Ok(())
    }
    /// Makes the object appear, whole, under its final name, in one step,
    /// after checking that it has exactly the bytes sent (size at least, and
    /// the server's checksum where it has one).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the final name is taken (it is never
    /// replaced); [`Error::Target`].
    fn publish(self: Box<Self>) -> Result<()>;
    /// Gives the upload up, removing what was sent (best effort).
    fn abort(self: Box<Self>);
}

/// What a network backend provides. Names are object names inside the
/// target's prefix (single components, no `/`).
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// The target as a URL, credentials removed (`s3://bucket/prefix`,
    /// `ftp://user@host:21/dir`).
    fn location(&self) -> String;
    /// Whether the prefix exists (FTP: the directory; S3: the bucket, and
    /// something under the prefix unless it is the bucket's top level).
    ///
    /// # Errors
    /// [`Error::Target`] (unreachable, credentials refused).
    fn exists(&self) -> Result<bool>;
    /// Creates the prefix if needed (FTP: the directory; S3: a marker object
    /// under the prefix, as S3 has no empty directories; a
    /// missing bucket is an error naming it); true when it was created now.
    ///
    /// # Errors
    /// [`Error::Target`].
    fn create_root(&self) -> Result<bool>;
    /// Removes the prefix if nothing is left in it (FTP: RMD; S3: the
    /// marker).
    ///
    /// # Errors
    /// [`Error::Target`].
    fn remove_root_if_empty(&self) -> Result<()>;
    /// Every object under the prefix with its size, temporaries included
    /// (S3: unfinished multipart uploads of this target are listed as
    /// `.mailvault-tmp-<name>` with size 0, and removing that name aborts
    /// them).
    ///
    /// # Errors
    /// [`Error::NotFound`] when the prefix does not exist; [`Error::Target`].
    fn list(&self) -> Result<Vec<(String, u64)>>;
    /// One object's size.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Target`].
    fn size(&self, name: &str) -> Result<u64>;
    /// Reads `len` bytes at `offset` (fewer only at the end of the object),
    /// retrying transient failures.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Target`].
    fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Writes a small object whole, replacing one of that name (lock
    /// objects only).
    ///
    /// # Errors
    /// [`Error::Target`].
    fn put_small(&self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Starts an upload of `len` bytes that will appear as `name`.
    ///
    /// # Errors
    /// [`Error::Target`].
    fn begin(&self, name: &str, len: u64) -> Result<Box<dyn Upload>>;
    /// Starts an upload of unknown length that takes bytes while they are
    /// still being written ([`Upload::send_early`]), or `None` when the
    /// backend cannot (then everything goes through [`ObjectStore::begin`]
    /// once the object is complete).
    ///
    /// # Errors
    /// [`Error::Target`].
    fn begin_stream(&self, name: &str) -> Result<Option<Box<dyn Upload>>> {
        let _ = name;
        Ok(None)
    }
    /// Removes an object.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Target`].
    fn remove(&self, name: &str) -> Result<()>;
}

/// How transient failures are retried: 5 attempts, waits of 0.5, 1, 2, 4 s
/// (shortened by `MAILVAULT_RETRY_BASE_MS` in tests).
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all.
    pub attempts: u32,
    /// The first wait; each next one doubles.
    pub base: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        let base = std::env::var("MAILVAULT_RETRY_BASE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        Self {
            attempts: 5,
            base: Duration::from_millis(base),
        }
    }
}

impl Retry {
    /// Runs `op` until it succeeds, fails with an error that is not
    /// transient, or the attempts are used up. `op` gets the attempt number
    /// (0 first).
    ///
    /// # Errors
    /// The last error.
    pub fn run<T>(&self, mut op: impl FnMut(u32) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            match op(attempt) {
                Err(e) if is_transient(&e) && attempt + 1 < self.attempts => {
                    std::thread::sleep(self.base * 2u32.saturating_pow(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Whether an error is worth retrying.
#[must_use]
pub fn is_transient(e: &Error) -> bool {
    matches!(
        e,
        Error::Target {
            transient: true,
            ..
        }
    )
}

/// How long a lock object is valid without a refresh, unless
/// `MAILVAULT_LOCK_TTL_SECS` says otherwise. A holder refreshes it every
/// quarter of this; a holder that died stops refreshing and its lock expires.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(180);

/// Bytes fetched from remote targets by this process (ranged reads), for
/// reports and benchmarks.
static FETCHED: AtomicU64 = AtomicU64::new(0);

/// Bytes this process has read from remote targets so far.
#[must_use]
pub fn bytes_fetched() -> u64 {
    FETCHED.load(Ordering::Relaxed)
}

/// Where volumes are spooled unless told otherwise: `MAILVAULT_SPOOL_DIR`
/// or the system's temporary directory.
#[must_use]
pub fn default_spool() -> PathBuf {
    std::env::var_os("MAILVAULT_SPOOL_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// A [`Storage`] on an [`ObjectStore`]: see the module documentation.
pub struct Remote<O> {
    store: Arc<O>,
    spool: PathBuf,
    ttl: Duration,
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    cache: Arc<RangeCache>,
}

/// Ranges recently fetched, shared by every reader of this target: a
/// restore opens a volume several times (to check the set, to plan, to
/// read entries) and each reads the same central directory. Published
/// objects never change (commits never replace), so a cached range stays
/// right. Bounded to [`CACHE_BYTES`], oldest dropped first.
#[derive(Default)]
struct RangeCache {
    ranges: std::sync::Mutex<std::collections::VecDeque<CachedRange>>,
}

/// Object name, offset, bytes.
type CachedRange = (String, u64, Arc<Vec<u8>>);

/// Bytes the range cache may hold.
const CACHE_BYTES: usize = 32 << 20;

impl RangeCache {
    /// A cached range of `name` holding `pos`.
    fn get(&self, name: &str, pos: u64) -> Option<(u64, Arc<Vec<u8>>)> {
        let ranges = self.ranges.lock().ok()?;
        ranges
            .iter()
            .rev()
            .find(|(n, start, b)| n == name && *start <= pos && pos < start + b.len() as u64)
            .map(|(_, start, b)| (*start, Arc::clone(b)))
    }

    fn put(&self, name: &str, start: u64, bytes: Arc<Vec<u8>>) {
        let Ok(mut ranges) = self.ranges.lock() else {
            return;
        };
        ranges.push_back((name.to_string(), start, bytes));
        let mut total: usize = ranges.iter().map(|(_, _, b)| b.len()).sum();
        while total > CACHE_BYTES
            && let Some((_, _, b)) = ranges.pop_front()
        {
            total -= b.len();
        }
    }

    /// Forgets `name` (removed: a later object of that name is another).
    fn forget(&self, name: &str) {
        if let Ok(mut ranges) = self.ranges.lock() {
            ranges.retain(|(n, _, _)| n != name);
        }
    }
}

impl<O: ObjectStore> std::fmt::Debug for Remote<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("store", &self.store)
            .field("spool", &self.spool)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<O: ObjectStore + 'static> Remote<O> {
    /// The target `store`; volumes are spooled in `MAILVAULT_SPOOL_DIR` or
    /// the system's temporary directory while they are written.
    pub fn new(store: O) -> Self {
        let spool =
            std::env::var_os("MAILVAULT_SPOOL_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let ttl = std::env::var("MAILVAULT_LOCK_TTL_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_LOCK_TTL, Duration::from_secs);
        Self {
            store: Arc::new(store),
            spool,
            ttl,
            progress: None,
            cache: Arc::default(),
        }
    }

    /// Spools volumes being written in `dir` (a local directory with room
    /// for one volume).
    #[must_use]
    pub fn with_spool(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool = dir.into();
        self
    }

    /// Lock objects expire `ttl` after their last refresh.
    #[must_use]
    pub fn with_lock_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Calls `f` with the bytes sent as uploads go out.
    #[must_use]
    pub fn with_progress(mut self, f: Arc<dyn Fn(u64) + Send + Sync>) -> Self {
        self.progress = Some(f);
        self
    }

    /// The object store.
    #[must_use]
    pub fn store(&self) -> &O {
        &self.store
    }

    fn spool_file(&self, name: &str) -> Result<File> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.spool.join(format!(
            ".mailvault-spool-{}-{n}-{safe}",
            std::process::id()
        ));
        let place = format!("spool file `{}`", path.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(Error::io("cannot create", place.clone()))?;
        // Unlinked at once: a run killed mid-way leaves nothing to clean.
        std::fs::remove_file(&path).map_err(Error::io("cannot remove", place))?;
        Ok(file)
    }
}

impl<O: ObjectStore + 'static> Storage for Remote<O> {
    fn location(&self) -> String {
        self.store.location()
    }

    fn describe(&self, name: &str) -> String {
        describe(&self.store.location(), name)
    }

    fn exists(&self) -> Result<bool> {
        self.store.exists()
    }

    fn create_root(&self) -> Result<bool> {
        self.store.create_root()
    }

    fn remove_root_if_empty(&self) -> Result<()> {
        let names = self.store.list()?;
        if names.iter().all(|(n, _)| n.starts_with(LOCK_PREFIX)) {
            self.store.remove_root_if_empty()?;
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !n.starts_with(LOCK_PREFIX))
            .collect())
    }

    fn size(&self, name: &str) -> Result<u64> {
        self.store.size(name)
    }

    fn open(&self, name: &str) -> Result<Box<dyn ReadSeek>> {
        let len = self.store.size(name)?;
        Ok(Box::new(RangeReader {
            store: Arc::clone(&self.store),
            cache: Arc::clone(&self.cache),
            name: name.to_string(),
            len,
            pos: 0,
            buf: Arc::default(),
            buf_start: 0,
            window: MIN_WINDOW,
        }))
    }

    fn create(&self, name: &str) -> Result<Box<dyn Pending>> {
        let file = self.spool_file(name)?;
        Ok(Box::new(SpoolPending {
            store: Arc::clone(&self.store),
            name: name.to_string(),
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
            upload: None,
            progress: self.progress.clone(),
            early: None,
            no_early: false,
            spool: self.spool.clone(),
            reported: 0,
        }))
    }

    fn remove(&self, name: &str) -> Result<()> {
        self.cache.forget(name);
        self.store.remove(name)
    }

    fn sync(&self) -> Result<()> {
        // Remote operations are durable when the server acknowledges them.
        Ok(())
    }

    fn lock(&self, mode: LockMode, holder: &str) -> Result<Lock> {
        lock::acquire(&self.store, self.ttl, mode, holder)
            .map(|guard| Lock::new(mode, Box::new(guard)))
    }

    fn unlock(&self) -> Result<Vec<String>> {
        lock::remove_all_but_live_local(self.store.as_ref())
    }
}

/// `location` + `/name`, keeping a query string (`?endpoint=`) at the end.
fn describe(location: &str, name: &str) -> String {
    match location.split_once('?') {
        Some((base, query)) => format!("{}/{name}?{query}", base.trim_end_matches('/')),
        None => format!("{}/{name}", location.trim_end_matches('/')),
    }
}

/// A volume being written: spooled to an unlinked local file (the zip
/// writer seeks back into it), uploaded by `finish`, published by `commit`.
/// Where the backend can stream ([`ObjectStore::begin_stream`]), the parts
/// the writer has settled go out from a background thread while it writes
/// on, so an upload costs little more than its last part.
struct SpoolPending<O: ObjectStore> {
    store: Arc<O>,
    name: String,
    file: Option<std::io::BufWriter<File>>,
    upload: Option<Box<dyn Upload>>,
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    early: Option<Early>,
    /// Set when streaming cannot start (no support, or it failed to begin).
    no_early: bool,
    /// The spool directory, named when the local disk fails.
    spool: PathBuf,
    /// The last settled offset passed to the background sender.
    reported: u64,
}

/// A local spool failure named as such (it is not the target's disk).
fn spool_err(spool: &std::path::Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!(
            "spool file in `{}` (--spool-dir, MAILVAULT_SPOOL_DIR): {e}",
            spool.display()
        ),
    )
}

/// The background sender of settled parts.
struct Early {
    settled: std::sync::mpsc::Sender<u64>,
    thread: std::thread::JoinHandle<(Box<dyn Upload>, Result<()>)>,
}

/// Streaming starts once this much is settled (smaller volumes go in one
/// upload at the end).
const EARLY_START: u64 = 16 << 20;

/// Settled offsets are passed on when they have grown by this much.
const EARLY_STEP: u64 = 4 << 20;

impl<O: ObjectStore + 'static> SpoolPending<O> {
    fn writer(&mut self) -> std::io::Result<&mut std::io::BufWriter<File>> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the object was already uploaded"))
    }

    fn start_early(&mut self) -> Option<Early> {
        let file = self.file.as_ref()?.get_ref().try_clone().ok()?;
        let mut upload = match self.store.begin_stream(&self.name) {
            Ok(Some(u)) => u,
            Ok(None) | Err(_) => return None,
        };
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let progress = self.progress.clone();
        let thread = std::thread::Builder::new()
            .name("mailvault-upload".into())
            .spawn(move || {
                let noop = |_: u64| {};
                let on: &(dyn Fn(u64) + Sync) = match &progress {
                    Some(p) => p.as_ref(),
                    None => &noop,
                };
                while let Ok(mut upto) = rx.recv() {
                    // Only the latest offset matters.
                    while let Ok(later) = rx.try_recv() {
                        upto = later;
                    }
                    if let Err(e) = upload.send_early(&file, upto, on) {
                        return (upload, Err(e));
                    }
                }
                (upload, Ok(()))
            })
            .ok()?;
        Some(Early {
            settled: tx,
            thread,
        })
    }
}

impl<O: ObjectStore> Write for SpoolPending<O> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let spool = &self.spool;
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the object was already uploaded"))?
            .write(buf)
            .map_err(|e| spool_err(spool, e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let spool = &self.spool;
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the object was already uploaded"))?
            .flush()
            .map_err(|e| spool_err(spool, e))
    }
}

impl<O: ObjectStore> Seek for SpoolPending<O> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        // A seek writes out the buffer: the spool's disk may be full here too.
        let spool = &self.spool;
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the object was already uploaded"))?
            .seek(pos)
            .map_err(|e| spool_err(spool, e))
    }
}

impl<O: ObjectStore + 'static> Pending for SpoolPending<O> {
    fn name(&self) -> &str {
        &self.name
    }

    fn settled(&mut self, upto: u64) {
        // Acted on in steps of a few MiB: the writer reports after every
        // entry, and a flush and a message per small entry cost more than
        // the overlap gains.
        if self.no_early || upto < EARLY_START || upto < self.reported + EARLY_STEP {
            return;
        }
        self.reported = upto;
        // The background reader takes bytes from the file itself.
        if self.writer().and_then(Write::flush).is_err() {
            return;
        }
        if self.early.is_none() {
            self.early = self.start_early();
            if self.early.is_none() {
                self.no_early = true;
                return;
            }
        }
        if let Some(e) = &self.early {
            let _ = e.settled.send(upto);
        }
    }

    fn finish(&mut self) -> Result<()> {
        let Some(writer) = self.file.take() else {
            return Ok(());
        };
        let place = describe(&self.store.location(), &self.name);
        let spool = self.spool.clone();
        let mut file = writer.into_inner().map_err(|e| {
            Error::io("cannot spool", place.clone())(spool_err(&spool, e.into_error()))
        })?;
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(Error::io("cannot spool", place.clone()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(Error::io("cannot spool", place.clone()))?;
        let mut upload = match self.early.take() {
            Some(Early { settled, thread }) => {
                drop(settled);
                let (upload, sent) = thread.join().map_err(|_| Error::Target {
                    place: place.clone(),
                    message: "the upload thread failed".into(),
                    hint: None,
                    transient: false,
                })?;
                if let Err(e) = sent {
                    upload.abort();
                    return Err(e);
                }
                upload
            }
            None => self.store.begin(&self.name, len)?,
        };
        let noop = |_: u64| {};
        let sent = match &self.progress {
            Some(p) => upload.send(&mut file, len, &|n| p(n)),
            None => upload.send(&mut file, len, &noop),
        };
        match sent {
            Ok(()) => {
                self.upload = Some(upload);
                Ok(())
            }
            Err(e) => {
                upload.abort();
                Err(e)
            }
        }
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.finish()?;
        match self.upload.take() {
            Some(upload) => upload.publish(),
            None => Err(Error::Request(format!(
                "{}: nothing to publish",
                describe(&self.store.location(), &self.name)
            ))),
        }
    }
}

impl<O: ObjectStore> Drop for SpoolPending<O> {
    fn drop(&mut self) {
        if let Some(Early { settled, thread }) = self.early.take() {
            drop(settled);
            if let Ok((upload, _)) = thread.join() {
                upload.abort();
            }
        }
        if let Some(upload) = self.upload.take() {
            upload.abort();
        }
    }
}

const MIN_WINDOW: u64 = 64 << 10;
const MAX_WINDOW: u64 = 4 << 20;

/// Reads an object by ranges. The read-ahead window starts at 64 KiB and
/// doubles while reads stay sequential (up to 4 MiB), and falls back on a
/// seek, so a restore of one mailbox fetches little more than its entries
/// and the metadata, and a whole-volume read runs at full speed.
struct RangeReader<O: ObjectStore> {
    store: Arc<O>,
    cache: Arc<RangeCache>,
    name: String,
    len: u64,
    pos: u64,
    buf: Arc<Vec<u8>>,
    buf_start: u64,
    window: u64,
}

impl<O: ObjectStore> RangeReader<O> {
    fn buf_end(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }
}

impl<O: ObjectStore> Read for RangeReader<O> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        if self.pos < self.buf_start || self.pos >= self.buf_end() {
            let sequential = !self.buf.is_empty() && self.pos == self.buf_end();
            self.window = if sequential {
                (self.window * 2).min(MAX_WINDOW)
            } else {
                MIN_WINDOW
            };
            if let Some((start, bytes)) = self.cache.get(&self.name, self.pos) {
                self.buf = bytes;
                self.buf_start = start;
            } else {
                let want = self.window.max(out.len() as u64).min(self.len - self.pos);
                let bytes = self
                    .store
                    .read_range(&self.name, self.pos, want)
                    .map_err(std::io::Error::other)?;
                if bytes.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: the object ended at {} bytes, shorter than its listed size {}",
                            describe(&self.store.location(), &self.name),
                            self.pos,
                            self.len
                        ),
                    ));
                }
                FETCHED.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                self.buf = Arc::new(bytes);
                self.buf_start = self.pos;
                self.cache.put(&self.name, self.pos, Arc::clone(&self.buf));
            }
        }
        let at = usize::try_from(self.pos - self.buf_start).map_err(std::io::Error::other)?;
        let n = out.len().min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<O: ObjectStore> Seek for RangeReader<O> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use chrono::Utc;

    use super::*;
    use crate::storage::{TEMP_PREFIX, conformance};

    /// An object store in memory: temporaries while uploading, like FTP.
    type Objects = Option<BTreeMap<String, Vec<u8>>>;

    #[derive(Debug, Default, Clone)]
    struct MemObjects(Arc<Mutex<Objects>>);

    impl MemObjects {
        fn with<T>(
            &self,
            f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> Result<T>,
        ) -> Result<T> {
            let mut g = self
                .0
                .lock()
                .map_err(|_| Error::Request("poisoned".into()))?;
            match g.as_mut() {
                Some(m) => f(m),
                None => Err(Error::NotFound("mem://".into())),
            }
        }
    }

    struct MemUpload {
        objects: MemObjects,
        name: String,
    }

    impl Upload for MemUpload {
        fn send(&mut self, file: &mut File, len: u64, progress: OnBytes<'_>) -> Result<()> {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(Error::io("cannot read", "spool"))?;
            assert_eq!(bytes.len() as u64, len);
            progress(len);
            let temp = format!("{TEMP_PREFIX}{}", self.name);
            self.objects.with(|m| {
                m.insert(temp, bytes);
                Ok(())
            })
        }

        fn publish(self: Box<Self>) -> Result<()> {
            let temp = format!("{TEMP_PREFIX}{}", self.name);
            self.objects.with(|m| {
                if m.contains_key(&self.name) {
                    return Err(Error::AlreadyExists(self.name.clone()));
                }
                let bytes = m
                    .remove(&temp)
                    .ok_or_else(|| Error::NotFound(temp.clone()))?;
                m.insert(self.name.clone(), bytes);
                Ok(())
            })
        }

        fn abort(self: Box<Self>) {
            let temp = format!("{TEMP_PREFIX}{}", self.name);
            let _ = self.objects.with(|m| Ok(m.remove(&temp)));
        }
    }

    impl ObjectStore for MemObjects {
        fn location(&self) -> String {
            "mem://test?x=1".into()
        }
        fn exists(&self) -> Result<bool> {
            Ok(self
                .0
                .lock()
                .map_err(|_| Error::Request("poisoned".into()))?
                .is_some())
        }
        fn create_root(&self) -> Result<bool> {
            let mut g = self
                .0
                .lock()
                .map_err(|_| Error::Request("poisoned".into()))?;
            if g.is_some() {
                return Ok(false);
            }
            *g = Some(BTreeMap::new());
            Ok(true)
        }
        fn remove_root_if_empty(&self) -> Result<()> {
            let mut g = self
                .0
                .lock()
                .map_err(|_| Error::Request("poisoned".into()))?;
            if g.as_ref().is_some_and(BTreeMap::is_empty) {
                *g = None;
            }
            Ok(())
        }
        fn list(&self) -> Result<Vec<(String, u64)>> {
            self.with(|m| Ok(m.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect()))
        }
        fn size(&self, name: &str) -> Result<u64> {
            self.with(|m| {
                m.get(name)
                    .map(|v| v.len() as u64)
                    .ok_or_else(|| Error::NotFound(name.into()))
            })
        }
        fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.with(|m| {
                let v = m.get(name).ok_or_else(|| Error::NotFound(name.into()))?;
                let a = (offset as usize).min(v.len());
                let b = (offset.saturating_add(len) as usize).min(v.len());
                Ok(v[a..b].to_vec())
            })
        }
        fn put_small(&self, name: &str, bytes: &[u8]) -> Result<()> {
            self.with(|m| {
                m.insert(name.into(), bytes.to_vec());
                Ok(())
            })
        }
        fn begin(&self, name: &str, _len: u64) -> Result<Box<dyn Upload>> {
            Ok(Box::new(MemUpload {
                objects: self.clone(),
                name: name.into(),
            }))
        }
        fn remove(&self, name: &str) -> Result<()> {
            self.with(|m| {
                m.remove(name)
                    .map(|_| ())
                    .ok_or_else(|| Error::NotFound(name.into()))
            })
        }
    }

    #[test]
    fn remote_over_memory_passes_conformance() {
        conformance::run(&|| Box::new(Remote::new(MemObjects::default())));
    }

    #[test]
    fn names_keep_the_query_last() {
        assert_eq!(
            describe("s3://b/p?endpoint=http://h:9000", "F.zip"),
            "s3://b/p/F.zip?endpoint=http://h:9000"
        );
        assert_eq!(
            describe("ftp://u@h:21/dir/", "F.zip"),
            "ftp://u@h:21/dir/F.zip"
        );
    }

    #[test]
    fn a_lock_of_another_host_holds_until_it_expires() {
        let objects = MemObjects::default();
        let remote = Remote::new(objects.clone());
        remote.create_root().unwrap();
        let now = Utc::now();
        let other = lock::LockInfo {
            mode: LockMode::Exclusive,
            holder: "backup full".into(),
            host: "elsewhere".into(),
            pid: 1,
            started: now,
            expires: now + chrono::Duration::seconds(2),
        };
        objects
            .put_small(
                &format!("{LOCK_PREFIX}elsewhere-1-0"),
                other.to_text().as_bytes(),
            )
            .unwrap();
        match remote.lock(LockMode::Shared, "verify") {
            Err(Error::Locked { holder, .. }) => {
                assert!(
                    holder.contains("backup full") && holder.contains("elsewhere"),
                    "{holder}"
                );
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(
            remote.list().unwrap().is_empty(),
            "lock objects are not listed"
        );
        std::thread::sleep(Duration::from_millis(2100));
        let held = remote
            .lock(LockMode::Exclusive, "backup differential")
            .unwrap();
        assert!(held.is_held());
        assert_eq!(
            objects.list().unwrap().len(),
            1,
            "the expired lock was removed, ours written"
        );
        drop(held);
        assert!(
            objects.list().unwrap().is_empty(),
            "ours removed on release"
        );
    }

    #[test]
    fn a_held_lock_is_refreshed() {
        let objects = MemObjects::default();
        let remote = Remote::new(objects.clone()).with_lock_ttl(Duration::from_millis(1200));
        remote.create_root().unwrap();
        let held = remote.lock(LockMode::Exclusive, "backup full").unwrap();
        std::thread::sleep(Duration::from_millis(2000));
        // Seen from another host: still live because it was refreshed.
        let (name, _) = objects.list().unwrap().pop().unwrap();
        let text = String::from_utf8(objects.read_range(&name, 0, 4096).unwrap()).unwrap();
        let info = lock::LockInfo::parse(&text).unwrap();
        assert!(info.expires > Utc::now(), "refreshed: {text}");
        drop(held);
    }

    #[test]
    fn reads_grow_their_window_and_restart_small_after_a_seek() {
        let objects = MemObjects::default();
        let remote = Remote::new(objects.clone());
        remote.create_root().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        objects.put_small("v.zip", &data).unwrap();
        let before = bytes_fetched();
        let mut r = remote.open("v.zip").unwrap();
        r.seek(SeekFrom::End(-100)).unwrap();
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, data[data.len() - 100..]);
        r.seek(SeekFrom::Start(1000)).unwrap();
        let mut one = [0u8; 10];
        r.read_exact(&mut one).unwrap();
        assert_eq!(one, data[1000..1010]);
        assert!(
            bytes_fetched() - before <= 100 + MIN_WINDOW,
            "a seek restarts with a small window"
        );
        r.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
    }
}
