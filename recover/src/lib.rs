//! `mailvault-recover`: the recovery library behind `kmsrecover`.
//!
//! Primary types: [`source::ArchiveSource`] (where archives are read from),
//! [`chain::Chain`] (a full plus at most one differential, resolved from a
//! directory or a file, optionally at a point in time), [`select::Selection`]
//! (Kerio's `-d/-u/-f/-m` options as path scopes), [`plan::RestorePlan`]
//! (what will be written, replaced, deleted) and [`apply::apply`], which
//! carries a plan out folder-atomically.
//!
//! ```no_run
//! use mailvault_recover::{chain, plan, select, source::LocalDir};
//! let src = LocalDir::new("/opt/kerio/mailserver/store/backup");
//! let chain = chain::resolve(&src, chain::Pick::Newest, false)?;
//! let sel = select::Selection::new(&select::RestoreRequest { domain: Some("example.com".into()), user: Some("john".into()), ..Default::default() }, &chain)?;
//! let targets = plan::Targets::install("/opt/kerio/mailserver");
//! let p = plan::plan(&chain, &sel, &targets)?;
//! println!("{} files to write, {} to delete", p.writes.len(), p.deletes.len());
//! # Ok::<(), mailvault_recover::Error>(())
//! ```

pub mod apply;
pub mod chain;
mod error;
pub mod plan;
pub mod progress;
pub mod select;
pub mod source;

pub use error::{Error, Result};
pub use progress::{NoProgress, Progress};
