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
            let locked = err
                .downcast_ref::<mailvault::Error>()
                .is_some_and(mailvault::Error::is_locked)
                || matches!(
                    err.downcast_ref::<mailvault_repo::Error>(),
                    Some(mailvault_repo::Error::Locked { .. })
                );
            if locked {
                ExitCode::from(EXIT_LOCKED)
            } else if err.downcast_ref::<cli::cmd::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
