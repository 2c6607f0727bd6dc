//! `mailvault-repo`: the repository layer between the archive formats and
//! everything that reads or writes backups.
//!
//! - [`storage::Storage`]: what a backend does (list, open, create + commit,
//!   remove, lock); [`storage::LocalDir`] now, S3 and FTP next.
//! - [`repository::Repository`]: backup sets over a storage, their status,
//!   leftovers of interrupted runs, commit and deletion order, the lock.
//! - [`reader`]: the one archive reader; [`check`]: what `verify` and every
//!   restore check, with the same code; [`chain`]: chains for `list` and
//!   rotation, and the chain a restore reads, entry by entry, CRC-checked.
//! - [`salvage`]: entries recovered from local headers when a central
//!   directory is gone.
//!
//! ```no_run
//! use mailvault_repo::{Repository, storage::LocalDir};
//! let repo = Repository::new(LocalDir::new("/opt/kerio/mailserver/store/backup"));
//! for info in repo.listing()?.sets {
//!     println!("{} {}", info.set.name, info.status);
//! }
//! # Ok::<(), mailvault_repo::Error>(())
//! ```

pub mod chain;
pub mod check;
pub mod crypt;
mod error;
pub mod progress;
pub mod reader;
pub mod repository;
pub mod salvage;
pub mod set;
pub mod storage;
pub mod target;

pub use error::{Error, PassedOver, Problem, ProblemKind, Result};
pub use progress::{NoProgress, Progress};
pub use repository::Repository;
