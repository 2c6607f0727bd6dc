//! The `mailvault` command line: arguments, commands, printing, progress.
//! Commands fill an options value, call one library function and print what
//! it returns; nothing here decides anything the library should.

pub mod args;
pub mod cmd;
pub mod mail;
pub mod printer;
pub mod progress;
pub mod report;

/// A command line that cannot work (exit code 2, like clap's own errors).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The encryption key option.
#[derive(Debug, clap::Args, Clone, Default)]
pub struct KeyArg {
    /// Key file for encrypted backups (made by `mailvault key generate`; default: the file named by MAILVAULT_KEY_FILE).
    #[arg(
        long,
        value_name = "FILE",
        env = "MAILVAULT_KEY_FILE",
        hide_env_values = true
    )]
    pub key: Option<std::path::PathBuf>,
}
