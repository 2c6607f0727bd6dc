//! Command-line arguments (clap only: no logic here).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mailvault_formats::ByteSize;

pub use super::KeyArg;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error: the operation stopped; nothing was left under a final name
  2  usage error
  3  finished, but some items were skipped for a problem (vanished, unreadable): see the summary
  4  the backup directory is in use by another mailvault run
  5  verify found damage";

/// Backups of Kerio Connect mail servers into Kerio-style ZIP archives that any unzip opens.
#[derive(Debug, Parser)]
#[command(name = "mailvault", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up an install: a full, a differential (changes since the last full) or a copy
    #[command(after_help = concat!("Examples:
  mailvault backup full
  mailvault backup differential --install-dir /opt/kerio/mailserver --backup-dir /mnt/backup
  mailvault backup full --split-size 500M --keep-full 4
  mailvault backup differential --dry-run --json
  mailvault backup full --target 's3://backups/kerio?endpoint=https://s3.example.net' --key /root/mailvault.key
  MAILVAULT_FTP_PASSWORD=... mailvault backup differential --target ftps://backup@nas.example.net/kerio --key /root/mailvault.key
  mailvault backup full --target s3://backups/kerio --key /root/mailvault.key --keep-local

", "Exit codes: 0 ok, 1 error, 2 usage, 3 items skipped for a problem, 4 backup directory in use"))]
    Backup(BackupArgs),
    /// List the archives of a backup directory, grouped into full + differential chains
    #[command(
        after_help = "Examples:\n  mailvault list /opt/kerio/mailserver/store/backup\n  mailvault list /mnt/backup --json"
    )]
    List {
        /// The backup directory or target URL (s3://bucket/prefix?endpoint=URL, ftp://user@host/dir or ftps://…).
        dir: String,
        #[command(flatten)]
        key: KeyArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check every volume, every entry's CRC and the catalog of an archive or of every archive in a directory
    #[command(
        after_help = "Examples:\n  mailvault verify /mnt/backup\n  mailvault verify /mnt/backup/F20261122T010000Z.zip --json\n\nExit codes: 0 intact, 5 damage found (the first problem is named), 1 error"
    )]
    Verify {
        /// An archive (any of its volumes), a backup directory, or a target URL (every set on it).
        target: String,
        #[command(flatten)]
        key: KeyArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Delete old chains of a backup directory (also done after each backup with --keep-full)
    #[command(
        after_help = "Examples:\n  mailvault rotate /mnt/backup --keep-full 2 --dry-run\n  mailvault rotate /mnt/backup --keep-full 1 --keep-latest-differential-only"
    )]
    Rotate {
        /// The backup directory or target URL.
        dir: String,
        #[command(flatten)]
        key: KeyArg,
        #[command(flatten)]
        rotation: RotationArgs,
        /// Print what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove the locks of runs that are not going on (a target's lock objects; local directories never need it)
    #[command(
        after_help = "Examples:\n  mailvault unlock 's3://backups/kerio?endpoint=https://s3.example.net'\n\nOnly when you know no other mailvault run uses the target: a lock whose holder died expires by itself\n(3 minutes after its last renewal); this is for one whose expiry lies far ahead (a holder's clock set wrong).\nLocks of live processes on this machine are kept."
    )]
    Unlock {
        /// The target URL (or backup directory).
        target: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Scheduled backups from mailvault.toml (Kerio's default: full Sunday 01:00, differential Monday-Saturday 01:00)
    #[command(
        subcommand,
        after_help = "Examples:\n  mailvault schedule example > /etc/mailvault/mailvault.toml\n  mailvault schedule list\n  mailvault schedule systemd --config /etc/mailvault/mailvault.toml\n  mailvault schedule run-due        # from cron or the systemd timer"
    )]
    Schedule(ScheduleCommand),
    /// Run the schedules in the foreground
    #[command(
        after_help = "Examples:\n  mailvault daemon\n  mailvault daemon --config /etc/mailvault/mailvault.toml -q\n\nA systemd timer (mailvault schedule systemd) or cron calling `schedule run-due` does the same without a resident process."
    )]
    Daemon {
        /// The configuration file.
        #[arg(long, default_value = "/etc/mailvault/mailvault.toml")]
        config: PathBuf,
    },
    /// Make or inspect the key file of encrypted backups (the key never leaves its file)
    #[command(
        subcommand,
        after_help = "Examples:\n  mailvault key generate --out /root/mailvault.key     # mode 0600; store a copy off the server\n  mailvault key show /root/mailvault.key\n  mailvault key show /root/mailvault.key --json"
    )]
    Key(KeyCommand),
    /// Encrypt a file (a backup volume) with a key file: FILE -> FILE.enc
    #[command(
        after_help = "Examples:\n  mailvault encrypt --key /root/mailvault.key F20261122T010000Z.zip --out F20261122T010000Z.zip.enc\n  MAILVAULT_KEY_FILE=/root/mailvault.key mailvault encrypt F20261122T010000Z.zip --out /mnt/offsite/F20261122T010000Z.zip.enc\n\nThe output is written beside --out under a temporary name and renamed into place; an existing --out is never replaced."
    )]
    Encrypt(CryptArgs),
    /// Decrypt a file made by `mailvault encrypt` or an encrypted repository, checking every chunk
    #[command(
        after_help = "Examples:\n  mailvault decrypt --key /root/mailvault.key F20261122T010000Z.zip.enc --out F20261122T010000Z.zip\n  MAILVAULT_KEY_FILE=/root/mailvault.key mailvault decrypt F20261122T010000Z.zip.enc --out /tmp/F20261122T010000Z.zip --json\n\nThe output appears only when every chunk was authentic: a wrong key, an altered, truncated or reordered file leaves nothing under --out and exits 1."
    )]
    Decrypt(CryptArgs),
    /// Add loose .eml files, an mbox, or a folder (or messages) out of a backup to a live folder, skipping duplicates
    #[command(name = "merge-eml")]
    MergeEml(super::mail::merge::MergeArgs),
    /// Find messages across every archive of a backup directory or target (headers only)
    Search(super::mail::search::SearchArgs),
    /// Rebuild index.fld (and status.fld) from #msgs, or check them with --check
    Reindex(super::mail::reindex::ReindexArgs),
    /// Export mail from the live store or a backup to Maildir++, mbox or .eml
    Export(super::mail::export::ExportArgs),
    /// Move a server: apply a backup chain (or copy a live install) onto a new install dir and verify it
    Migrate(super::mail::migrate::MigrateArgs),
    /// Write the small sample install (as committed under samples/install)
    #[command(
        name = "sample-install",
        after_help = "Examples:\n  mailvault sample-install /tmp/kerio\n  mailvault sample-install --corpus /usr/lib/python3.11/test/test_email/data /tmp/kerio"
    )]
    SampleInstall {
        /// A new, empty directory.
        out: PathBuf,
        /// CPython's test_email/data directory (default: asked from python3).
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
    /// Write the sample hosting panel (a sandbox "old server" root for disaster recovery), optionally loading its databases
    #[command(
        name = "sample-panel",
        after_help = "Writes etc/ (nginx, PHP-FPM 8.1/8.2, Postfix, Dovecot, PowerDNS, rspamd, ProFTPD, fail2ban,\n\
nftables, unbound, Let's Encrypt placeholders, cron, passwd/shadow/group/gshadow, network identity),\n\
var/www web roots, var/vmail maildirs and the SQL seeds under DIR/.sample/ (see docs/dr.md).\n\
The same bytes on every run. Passwords: PGPASSWORD and MYSQL_PWD, read by psql and mariadb.\n\n\
Examples:\n  mailvault sample-panel --root /tmp/oldserver\n  \
PGPASSWORD=secret MYSQL_PWD=secret mailvault sample-panel --root /tmp/oldserver \\\n      \
--pg-host 127.0.0.1 --pg-port 5432 --pg-user postgres --mariadb-host 127.0.0.1 --mariadb-user root"
    )]
    SamplePanel(SamplePanelArgs),
    /// Generate a large realistic install for tests and benchmarks
    #[command(
        name = "sample-store",
        after_help = "Example (about 1 GB, 50,000 messages):\n  mailvault sample-store --domains 5 --users 20 --messages 50000 --seed 1 /tmp/store"
    )]
    SampleStore {
        /// Number of domains.
        #[arg(long, default_value_t = 2)]
        domains: u32,
        /// Users per domain.
        #[arg(long, default_value_t = 5)]
        users: u32,
        /// Messages in the whole store.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Seed: the same seed gives the same store, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A new, empty directory.
        out: PathBuf,
    },
}

/// Kinds of backup.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// Everything (F archive).
    Full,
    /// Everything new or changed since the last full (D archive).
    Differential,
    /// A full outside the schedule (C archive).
    Copy,
}

/// `--compression` values (mapped onto the library's `Compression`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    /// Deflate: every unzip reads it.
    Deflate,
    /// Zstandard: Info-ZIP unzip cannot read it (7-Zip can).
    Zstd,
    /// No compression.
    Store,
}

/// `mailvault backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// full, differential or copy.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The Kerio Connect install directory.
    #[arg(long, default_value = "/opt/kerio/mailserver")]
    pub install_dir: PathBuf,
    /// Where archives go (default: <install-dir>/store/backup, which the backup leaves out).
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// Write the archives to this target instead: a directory, s3://bucket/prefix?endpoint=URL&region=R&path_style=true,
    /// or ftp://user@host:port/dir or ftps://… (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
    /// MAILVAULT_FTP_PASSWORD or a 0600 file named by credentials=FILE / MAILVAULT_CREDENTIALS).
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// With --target: write into the backup directory too, then copy to the target and verify the copy.
    #[arg(long, requires = "target")]
    pub keep_local: bool,
    /// Local directory where each volume is spooled before its upload (default: MAILVAULT_SPOOL_DIR or the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    #[command(flatten)]
    pub key: KeyArg,
    /// Largest volume size; the rest goes into .1.zip, .2.zip... (500M, 2G).
    #[arg(long, default_value = "2G")]
    pub split_size: ByteSize,
    /// Compression of the backed-up files (deflate: every unzip reads it).
    #[arg(long, value_enum, default_value_t = CompressionArg::Deflate)]
    pub compression: CompressionArg,
    /// Compression level (deflate 0-9, default 6; zstd 1-22, default 3).
    #[arg(long)]
    pub level: Option<i64>,
    /// Differential: compare CRC-32 too, not only size and mtime (reads every file).
    #[arg(long)]
    pub verify_content: bool,
    /// List unreadable files as skipped instead of stopping.
    #[arg(long)]
    pub skip_unreadable: bool,
    #[command(flatten)]
    pub rotation: RotationArgs,
    /// Compression threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print the plan (what would be stored, unchanged, deleted, skipped), write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Rotation options.
#[derive(Debug, Args)]
pub struct RotationArgs {
    /// After a successful backup, keep the newest N full chains and delete older ones.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_full: Option<u32>,
    /// Keep only the newest differential of each chain (Kerio's older behaviour).
    #[arg(long)]
    pub keep_latest_differential_only: bool,
}

/// `mailvault schedule ...`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Show each schedule's next and last run
    #[command(
        after_help = "Examples:\n  mailvault schedule list\n  mailvault schedule list --config ./mailvault.toml --json"
    )]
    List {
        /// The configuration file (a missing file means Kerio's default schedule).
        #[arg(long, default_value = "/etc/mailvault/mailvault.toml")]
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run whatever is due now (call from cron or a systemd timer; each slot runs once)
    #[command(
        name = "run-due",
        after_help = "Examples:\n  mailvault schedule run-due\n  * * * * * root mailvault schedule run-due -q     # /etc/cron.d/mailvault\n\nExit codes: 0 ok or nothing due, 1 a backup failed, 3 items skipped for a problem"
    )]
    RunDue {
        /// The configuration file.
        #[arg(long, default_value = "/etc/mailvault/mailvault.toml")]
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print a systemd service and timer that call run-due
    #[command(
        after_help = "Examples:\n  mailvault schedule systemd --config /etc/mailvault/mailvault.toml\n  (save the two units under /etc/systemd/system/, then: systemctl enable --now mailvault-backup.timer)"
    )]
    Systemd {
        /// The configuration file the units should use.
        #[arg(long, default_value = "/etc/mailvault/mailvault.toml")]
        config: PathBuf,
    },
    /// Print an example mailvault.toml (Kerio's default schedule)
    #[command(
        after_help = "Example:\n  mailvault schedule example > /etc/mailvault/mailvault.toml"
    )]
    Example,
}

/// `mailvault key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a random 256-bit key into a new file (mode 0600) and print its id
    #[command(
        after_help = "Examples:\n  mailvault key generate --out /root/mailvault.key\n  mailvault key generate --out /root/mailvault.key --json\n\nAn existing file is never overwritten. Keep a copy of the key file off the server: without it, encrypted backups cannot be read."
    )]
    Generate {
        /// The new key file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print a key file's key id (never the key)
    #[command(
        after_help = "Examples:\n  mailvault key show /root/mailvault.key\n  mailvault key show /root/mailvault.key --json"
    )]
    Show {
        /// The key file.
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `mailvault encrypt` / `mailvault decrypt`.
#[derive(Debug, Args)]
pub struct CryptArgs {
    /// The key file (default: the file named by MAILVAULT_KEY_FILE). Keys are read only from files.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The input file.
    pub input: PathBuf,
    /// The output file (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `mailvault sample-panel`.
#[derive(Debug, Args)]
pub struct SamplePanelArgs {
    /// The sandbox root to write (new or empty).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Load .sample/panel.sql into the PostgreSQL server on this host (with psql; password from PGPASSWORD).
    #[arg(long, value_name = "HOST")]
    pub pg_host: Option<String>,
    /// PostgreSQL port.
    #[arg(long, default_value_t = 5432, requires = "pg_host")]
    pub pg_port: u16,
    /// PostgreSQL superuser (creates the database `panel` and the role `panel`).
    #[arg(long, default_value = "postgres", requires = "pg_host")]
    pub pg_user: String,
    /// Load .sample/mariadb.sql into the MariaDB server on this host (with the mariadb client; password from MYSQL_PWD).
    #[arg(long, value_name = "HOST")]
    pub mariadb_host: Option<String>,
    /// MariaDB port.
    #[arg(long, default_value_t = 3306, requires = "mariadb_host")]
    pub mariadb_port: u16,
    /// MariaDB account with all privileges (creates the customer databases and users).
    #[arg(long, default_value = "root", requires = "mariadb_host")]
    pub mariadb_user: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}
