//! The mail-tool commands (`merge-eml`, `search`, `reindex`, `export`,
//! `migrate`): their arguments and their runs, one file each, over
//! [`mailvault::mail`]. Argument groups they share live here.

use std::path::PathBuf;

use clap::Args;

use crate::cli::KeyArg;

pub mod export;
pub mod merge;
pub mod migrate;
pub mod reindex;
pub mod search;

/// Exit code: finished, but some inputs were reported and skipped.
pub const EXIT_PARTIAL: u8 = 3;
/// Exit code: `reindex --check` found problems.
pub const EXIT_PROBLEMS: u8 = 5;
/// Exit code: the mail server is running (as kmsrecover).
pub const EXIT_RUNNING: u8 = 6;

/// Where backups are read from (`--from` with `--key` and `--at`).
#[derive(Debug, Clone, Args)]
pub struct FromArgs {
    /// A backup directory, one archive, or a target URL (s3://…, ftp://…, ftps://…).
    #[arg(long, value_name = "DIR|ARCHIVE|URL")]
    pub from: Option<String>,
    /// The newest backup at or before this time (RFC 3339), with a directory or URL.
    #[arg(long, requires = "from")]
    pub at: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[command(flatten)]
    pub key: KeyArg,
}

/// Which mailboxes and folders (`--domain`, `--user`, `--folder`).
#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// Only this domain.
    #[arg(short, long)]
    pub domain: Option<String>,
    /// Only this user: `john@example.com`, or `john` with --domain.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Only this folder (`INBOX`, `Projects/2026`), with --user.
    #[arg(short, long)]
    pub folder: Option<String>,
}

impl SelectArgs {
    /// The domain and mailbox selected: `--user john@example.com` carries
    /// its domain; `--user john` needs `--domain`.
    ///
    /// # Errors
    /// A usage error for a user without a domain or two different domains.
    pub fn mailbox(&self) -> anyhow::Result<(Option<String>, Option<String>)> {
        let usage = |m: String| anyhow::Error::from(crate::cli::UsageError(m));
        match self.user.as_deref().map(|u| u.split_once('@')) {
            Some(Some((u, d))) => {
                if self.domain.as_deref().is_some_and(|x| x != d) {
                    return Err(usage(format!(
                        "--user {u}@{d} and --domain {} name different domains",
                        self.domain.as_deref().unwrap_or_default()
                    )));
                }
                Ok((Some(d.to_string()), Some(u.to_string())))
            }
            Some(None) if self.domain.is_none() => Err(usage(
                "--user needs --domain (or give it as user@domain)".into(),
            )),
            Some(None) => Ok((self.domain.clone(), self.user.clone())),
            None => Ok((self.domain.clone(), None)),
        }
    }
}

/// The running-server check of commands that write a live install.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Write even though the mail server seems to run.
    #[arg(long)]
    pub force: bool,
    /// A shell command that exits 0 when the mail server runs (instead of looking for a `mailserver` process).
    #[arg(long, value_name = "CMD")]
    pub running_check: Option<String>,
    /// The server's pid file (instead of looking for a `mailserver` process).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
}

impl ServerArgs {
    /// The check to run.
    #[must_use]
    pub fn check(&self) -> mailvault_recover::RunningCheck {
        use mailvault_recover::RunningCheck;
        match (&self.pid_file, &self.running_check) {
            (Some(p), _) => RunningCheck::PidFile(p.clone()),
            (None, Some(c)) => RunningCheck::Command(c.clone()),
            (None, None) => RunningCheck::ProcessName,
        }
    }
}
