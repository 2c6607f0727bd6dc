//! The engine's progress reports: the one `Progress` trait of the
//! repository layer, re-exported (the CLI's drawer implements it).

pub use mailvault_repo::progress::{NoProgress, Progress};
