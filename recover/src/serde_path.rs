//! Paths in `--json` output: a live file name need not be UTF-8 (the
//! restore keeps such files and says so), and JSON strings must be; such
//! names are written with the undecodable bytes replaced.

use std::path::{Path, PathBuf};

use serde::Serializer;

/// Serializes a path lossily.
pub(crate) fn path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// Serializes a list of paths lossily.
pub(crate) fn paths<S: Serializer>(ps: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ps.iter().map(|p| p.to_string_lossy()))
}
