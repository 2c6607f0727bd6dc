//! `mailvault export`: arguments and run (TODO: implement).

use std::process::ExitCode;

use clap::Args;

/// `mailvault export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {}

/// Runs `mailvault export`.
///
/// # Errors
/// Not implemented yet.
pub fn run(_a: ExportArgs, _quiet: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("mailvault export is not implemented yet")
}
