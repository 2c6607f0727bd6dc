//! The storage seam: the few things every backend (a local directory,
//! S3 and FTP through [`remote::Remote`], encryption as a wrapper) must do, and nothing that is
//! about backups. Everything above it (sets, chains, commit and deletion
//! order, leftovers, the archive reader) is written once, in this crate.
//!
//! A storage is a flat namespace of named objects (a backup directory's
//! files). Contracts every implementation keeps, checked by
//! `conformance` (feature `testing`):
//!
//! - [`Storage::list`] yields every object once, temporaries the backend
//!   holds included (named [`TEMP_PREFIX`]`<final name>`; a remote target
//!   may hold none until an upload starts), in no particular order; a
//!   repository that does not exist is [`Error::NotFound`](crate::Error::NotFound);
//! - [`Storage::open`] gives `Read + Seek` over the object's exact bytes; a
//!   missing object is [`Error::NotFound`](crate::Error::NotFound);
//! - [`Storage::create`] gives a [`Pending`] object: nothing appears under
//!   the final name until [`Pending::commit`], which publishes it whole in
//!   one step and never replaces an existing object
//!   ([`Error::AlreadyExists`](crate::Error::AlreadyExists)); dropping an uncommitted `Pending` removes
//!   its temporary;
//! - [`Storage::remove`] of a missing object is [`Error::NotFound`](crate::Error::NotFound);
//! - [`Storage::sync`] makes earlier commits and removals durable;
//! - [`Storage::lock`]: any number of shared holders or one exclusive
//!   holder; a refused lock is [`Error::Locked`](crate::Error::Locked) naming the real holder; a
//!   holder that dies releases its lock without anyone's help.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod ftp;
pub mod local;
#[cfg(any(test, feature = "testing"))]
pub mod mem;
pub mod remote;
pub mod s3;

use std::io::{Read, Seek, Write};

use crate::error::Result;

pub use local::LocalDir;

/// Prefix of temporary objects (objects being written).
pub const TEMP_PREFIX: &str = ".mailvault-tmp-";

/// A readable, seekable object.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// An object being written, under a temporary name until committed.
pub trait Pending: Write + Seek + Send {
    /// The name it will be committed under.
    fn name(&self) -> &str;
    /// Flushes and makes the bytes durable, still under the temporary name.
    ///
    /// # Errors
    /// Write or sync failure (the temporary is removed on drop).
    fn finish(&mut self) -> Result<()>;
    /// Tells the object that its first `upto` bytes will not be written
    /// again (the writer has moved past those entries), so that a remote
    /// target may start sending them while the rest is written. Only a
    /// hint: nothing is published before [`Pending::commit`].
    fn settled(&mut self, upto: u64) {
        let _ = upto;
    }
    /// Publishes the object under its final name, whole, in one step.
    ///
    /// # Errors
    /// [`crate::Error::AlreadyExists`], or an I/O failure (nothing appears
    /// under the final name).
    fn commit(self: Box<Self>) -> Result<()>;
}

/// Lock modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Readers (restores, verify): any number at once; no writer meanwhile.
    Shared,
    /// Writers (backup, rotation, cleanup): alone.
    Exclusive,
}

/// A held lock; dropping it releases the lock.
pub struct Lock {
    mode: LockMode,
    held: bool,
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("mode", &self.mode)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl Lock {
    /// A lock held through `guard` (released when it drops).
    pub fn new(mode: LockMode, guard: Box<dyn Send + Sync>) -> Self {
        Self {
            mode,
            held: true,
            _guard: guard,
        }
    }

    /// A shared "lock" on storage that cannot hold one (read-only media):
    /// nothing can write there, so nothing can delete under the reader either.
    #[must_use]
    pub fn read_only() -> Self {
        Self {
            mode: LockMode::Shared,
            held: false,
            _guard: Box::new(()),
        }
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// Whether a lock is really held (false on read-only media).
    #[must_use]
    pub fn is_held(&self) -> bool {
        self.held
    }
}

/// Where backups are stored. See the module documentation for the contract.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The repository's location for messages, credentials removed.
    fn location(&self) -> String;
    /// How to name an object in messages (a path in backticks, or a URL).
    fn describe(&self, name: &str) -> String;
    /// Whether the repository exists.
    ///
    /// # Errors
    /// It cannot be determined.
    fn exists(&self) -> Result<bool>;
    /// Creates the repository if needed; true when it was created now.
    ///
    /// # Errors
    /// It cannot be created.
    fn create_root(&self) -> Result<bool>;
    /// Removes the repository if it holds nothing but its lock (undoing a
    /// [`Storage::create_root`] of a run that failed).
    ///
    /// # Errors
    /// It cannot be removed.
    fn remove_root_if_empty(&self) -> Result<()>;
    /// Every object's name, temporaries included.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] for a repository that does not exist; I/O.
    fn list(&self) -> Result<Vec<String>>;
    /// An object's size in bytes.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`]; I/O.
    fn size(&self, name: &str) -> Result<u64>;
    /// Opens an object for reading.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`]; I/O.
    fn open(&self, name: &str) -> Result<Box<dyn ReadSeek>>;
    /// Starts writing an object that will appear as `name` when committed.
    ///
    /// # Errors
    /// I/O.
    fn create(&self, name: &str) -> Result<Box<dyn Pending>>;
    /// Removes an object.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`]; I/O.
    fn remove(&self, name: &str) -> Result<()>;
    /// Makes earlier commits and removals durable.
    ///
    /// # Errors
    /// I/O.
    fn sync(&self) -> Result<()>;
    /// Takes the repository's lock; `holder` describes this run
    /// (`backup full`, `kmsrecover`) for whoever finds it taken.
    ///
    /// # Errors
    /// [`crate::Error::Locked`] naming the holder; I/O.
    fn lock(&self, mode: LockMode, holder: &str) -> Result<Lock>;
    /// Removes the locks of runs that are not going on (the admin says so):
    /// on a target, every lock object except those of live processes on
    /// this host; returns who held them. OS locks need no unlocking (the
    /// kernel drops them with their holder): nothing to do by default.
    ///
    /// # Errors
    /// The locks cannot be listed or removed.
    fn unlock(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
