//! `mailvault reindex`: arguments and run (TODO: implement).

use std::process::ExitCode;

use clap::Args;

/// `mailvault reindex` options.
#[derive(Debug, Args)]
pub struct ReindexArgs {}

/// Runs `mailvault reindex`.
///
/// # Errors
/// Not implemented yet.
pub fn run(_a: ReindexArgs, _quiet: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("mailvault reindex is not implemented yet")
}
