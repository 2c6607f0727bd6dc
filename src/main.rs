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
            let top = err.to_string();
            eprintln!("error: {top}");
            // Library errors already name their source; print only causes that add something.
            for cause in err
                .chain()
                .skip(1)
                .map(|c| c.to_string())
                .filter(|c| !top.contains(c.as_str()))
            {
                eprintln!("  caused by: {cause}");
            }
            let lib = err.downcast_ref::<mailvault::Error>();
            if let Some(h) = lib.and_then(mailvault::Error::hint) {
                eprintln!("hint: {h}");
            }
            if matches!(lib, Some(mailvault::Error::Locked { .. })) {
                ExitCode::from(EXIT_LOCKED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
