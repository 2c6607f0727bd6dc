//! `mailvault-recover`: the restore library behind `kmsrecover`, `migrate`,
//! the disaster-recovery restore and the web console.
//!
//! A restore is two calls: [`prepare`] turns a [`RestoreRequest`] (Kerio's
//! `-d/-u/-f/-m/-s/-c` plus `--at`, `--into`, `--as-folder`, `--salvage`)
//! into a [`RestorePlan`] (what is written, replaced, removed, kept and
//! why) without touching anything; [`execute()`] carries it out root by root,
//! atomically, after the running-server check and the safety copy, and
//! returns a [`RestoreReport`]. [`inventory()`] answers `-l`. Archives are read
//! through `mailvault-repo`'s one reader.
//!
//! ```no_run
//! use mailvault_recover::{ExecuteOptions, NoProgress, RestoreRequest, execute, prepare};
//! use mailvault_repo::{Repository, storage::LocalDir};
//! let repo = Repository::new(LocalDir::new("/opt/kerio/mailserver/store/backup"));
//! let mut req = RestoreRequest::new("/opt/kerio/mailserver");
//! req.domain = Some("example.com".into());
//! req.user = Some("john".into());
//! let prepared = prepare(&repo, req)?;
//! println!("{} files to write, {} to remove", prepared.plan.writes.len(), prepared.plan.deletes.len());
//! let report = execute(prepared, &ExecuteOptions::default(), &NoProgress)?;
//! assert!(report.is_complete());
//! # Ok::<(), mailvault_recover::Error>(())
//! ```

mod error;
pub mod execute;
pub mod inventory;
pub mod plan;
pub mod request;
pub mod running;
pub mod select;
mod serde_path;
pub mod source;
pub mod stage;

pub use error::{Error, Result};
pub use execute::{ExecuteOptions, RestoreReport, SafetyCopier, execute};
pub use inventory::{Inventory, inventory};
pub use mailvault_repo::progress::{NoProgress, Progress};
pub use plan::{Prepared, RestorePlan, prepare};
pub use request::{Destination, Part, RestoreRequest};
pub use running::RunningCheck;
pub use source::Source;
