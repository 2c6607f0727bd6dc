//! `mailvault search`: arguments and run (TODO: implement).

use std::process::ExitCode;

use clap::Args;

/// `mailvault search` options.
#[derive(Debug, Args)]
pub struct SearchArgs {}

/// Runs `mailvault search`.
///
/// # Errors
/// Not implemented yet.
pub fn run(_a: SearchArgs, _quiet: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("mailvault search is not implemented yet")
}
