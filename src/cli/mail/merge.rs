//! `mailvault merge`: arguments and run (TODO: implement).

use std::process::ExitCode;

use clap::Args;

/// `mailvault merge` options.
#[derive(Debug, Args)]
pub struct MergeArgs {}

/// Runs `mailvault merge`.
///
/// # Errors
/// Not implemented yet.
pub fn run(_a: MergeArgs, _quiet: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("mailvault merge is not implemented yet")
}
