//! mailvault: backups of Kerio Connect-style mail servers into Kerio-style
//! ZIP archives that any unzip opens.
//!
//! The engine is a library; the `mailvault` binary only parses arguments,
//! draws progress and prints. Primary entry points:
//! - [`backup::run_backup`] / [`backup::plan_backup`]: full, differential and
//!   copy backups with volumes, crash safety and rotation;
//! - [`repo::BackupDir`]: the archive sets of a backup directory and its lock;
//! - [`chain::group`]: sets grouped into full + differential chains;
//! - [`rotation::plan`]: which chains rotation deletes;
//! - [`verify::verify`]: every CRC, every volume, catalog consistency;
//! - [`schedule`]: the `mailvault.toml` schedules (Kerio's defaults);
//! - [`sample`]: generators of the sample install and of large test stores.

pub mod backup;
pub mod chain;
mod error;
pub mod progress;
pub mod repo;
pub mod rotation;
pub mod sample;
pub mod schedule;
pub mod verify;

pub use error::{Error, Result};
pub use progress::{NoProgress, Progress};
