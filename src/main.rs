//! `mailvault`: parse arguments, run, map the outcome to an exit code. The
//! only place that exits; errors are printed here with their cause chain and
//! the library's hint.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

/// Exit code: the backup directory is held by another run.
const EXIT_LOCKED: u8 = 4;

/// Exit code: the mail server is running (a command that writes the live install).
const EXIT_RUNNING: u8 = 6;

fn running(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<mailvault::Error>(),
        Some(mailvault::Error::Recover(
            mailvault_recover::Error::ServerRunning(_)
        ))
    ) || matches!(
        err.downcast_ref::<mailvault_recover::Error>(),
        Some(mailvault_recover::Error::ServerRunning(_))
    )
}

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
            } else if running(&err) {
                ExitCode::from(EXIT_RUNNING)
            } else if err.downcast_ref::<cli::UsageError>().is_some()
                || err
                    .downcast_ref::<mailvault_recover::Error>()
                    .is_some_and(mailvault_recover::Error::is_usage)
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
