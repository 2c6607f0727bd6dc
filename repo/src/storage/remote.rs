//! Remote targets (S3, FTP): what a network backend must provide
//! ([`ObjectStore`]: plain object operations and an upload that appears
//! whole), and everything written once above it ([`Remote`], a
//! [`Storage`](super::Storage)): spooling a volume to local disk while the
//! zip writer seeks in it, uploading it with retries, reading objects by
//! ranges with a growing read-ahead, and the lock held by lock objects with
//! an owner, host, pid and expiry, refreshed while a run lasts.

use std::fs::File;
use std::time::Duration;

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
    /// Whether the prefix (S3: the bucket; FTP: the directory) exists.
    ///
    /// # Errors
    /// [`Error::Target`] (unreachable, credentials refused).
    fn exists(&self) -> Result<bool>;
    /// Creates the prefix if needed (FTP: the directory; S3: nothing, a
    /// missing bucket is an error naming it); true when it was created now.
    ///
    /// # Errors
    /// [`Error::Target`].
    fn create_root(&self) -> Result<bool>;
    /// Removes the prefix if nothing is left in it (FTP: RMD; S3: nothing).
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
