//! `mailvault migrate`: arguments and run (TODO: implement).

use std::process::ExitCode;

use clap::Args;

/// `mailvault migrate` options.
#[derive(Debug, Args)]
pub struct MigrateArgs {}

/// Runs `mailvault migrate`.
///
/// # Errors
/// Not implemented yet.
pub fn run(_a: MigrateArgs, _quiet: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("mailvault migrate is not implemented yet")
}
