//! `mailvault`: parse arguments, run, map the outcome to an exit code. The
//! only place that exits; errors are printed here with their cause chain and
//! the library's hint.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

/// Exit code: the backup directory is held by another run.
const EXIT_LOCKED: u8 = 4;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    match cli::cmd::run(args) {
        Ok(code) => code,
        Err(err) => {
            cli::report::error(&err);
            let lib = err.downcast_ref::<mailvault::Error>();
            if matches!(lib, Some(mailvault::Error::Locked { .. })) {
                ExitCode::from(EXIT_LOCKED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
