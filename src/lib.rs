//! mailvault: backups of Kerio Connect-style mail servers into Kerio-style
//! ZIP archives that any unzip opens.
//!
//! The engine is a library; the `mailvault` and `kmsrecover` binaries only
//! parse arguments, draw progress and print. Primary entry points:
//! - [`backup::run_backup`] / [`backup::plan_backup`]: full, differential and
//!   copy backups with volumes, crash safety and rotation;
//! - [`rotation::plan`]: which chains rotation deletes;
//! - [`restore::ArchiveSafetyCopy`]: the safety copy a restore takes, as a
//!   `C` archive;
//! - [`schedule`]: the `mailvault.toml` schedules (Kerio's defaults);
//! - [`mail`]: the mail tools (merge, search, reindex, export, migrate);
//! - [`sample`]: generators of the sample install and of large test stores.
//!
//! Repositories, chains, `verify` and the archive reader are
//! [`mailvault_repo`]'s; restores are [`mailvault_recover`]'s.

pub mod backup;
mod error;
pub mod mail;
pub mod progress;
pub mod restore;
pub mod rotation;
pub mod sample;
pub mod schedule;

pub use error::{Error, Result};
pub use progress::{NoProgress, Progress};
