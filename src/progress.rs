//! Progress reporting: the one `Progress` trait of the workspace, defined in
//! `mailvault-recover` (the lower crate, so restores and backups share it)
//! and re-exported here. The engine reports counts and bytes; the CLI draws.

pub use mailvault_recover::progress::{NoProgress, Progress};
