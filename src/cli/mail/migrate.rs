//! `mailvault migrate`: its arguments, and printing the plan (`--dry-run`)
//! and the verification report (a table, or `--json`), over
//! [`mailvault::mail::migrate`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mailvault::mail::migrate::{
    self, HostnameChange, MigratePlan, MigrateReport, MigrateRequest, MigrateSource, PathRewrite,
};
use mailvault_recover::RunningCheck;

use super::{EXIT_PARTIAL, EXIT_RUNNING, FromArgs};
use crate::cli::UsageError;
use crate::cli::progress::Drawer;

const AFTER_HELP: &str = "\
Examples:
  mailvault migrate --from /srv/backups --to /srv/kerio-new --dry-run
  mailvault migrate --from /srv/backups --to /srv/kerio-new --hostname mail.example.net
  mailvault migrate --from /srv/backups --to /opt/kerio/mailserver --force  # fresh install
  mailvault migrate --from-install /mnt/old/opt/kerio/mailserver --to /srv/kerio-new \\
      --rewrite-path /opt/kerio/mailserver=/srv/kerio-new --hostname mail.old.cz=mail.new.cz
  mailvault migrate --from 's3://backups/kerio?endpoint=https://s3.example.net' \\
      --key /root/mailvault.key --at 2026-11-22T06:00:00Z --to /srv/kerio-new --json

The target must be new or empty. --force accepts one that is not: nothing in it is removed or
overwritten; whatever is where a migrated file goes is moved into
<target>/mailvault-migrate-displaced-<time>/ first and listed. See docs/migrate.md.

Exit codes:
  0  migrated, and the target verified equal to the source
  1  error (an empty target is left as it was)
  2  usage error (also: a target inside the source)
  3  finished, but the verification found differences (listed) or something was not migrated
  4  the backup directory is in use by another run
  6  a mail server is running (stop it, or --ignore-running)";

/// `mailvault migrate` options.
#[derive(Debug, Args)]
#[command(
    after_help = AFTER_HELP,
    group(clap::ArgGroup::new("source").required(true).args(["from", "from_install"]))
)]
pub struct MigrateArgs {
    /// Where backups are read from.
    #[command(flatten)]
    pub from: FromArgs,
    /// A live, stopped install to copy instead of backups (the old server's directory).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["from", "at"])]
    pub from_install: Option<PathBuf>,
    /// The new install directory (new or empty).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Accept a target that is not empty; nothing in it is removed or overwritten (what is in the way is moved aside).
    #[arg(long)]
    pub force: bool,
    /// Rewrite the server's hostname in mailserver.cfg: NEW (the old one read from its …Hostname variable) or OLD=NEW.
    #[arg(long, value_name = "[OLD=]NEW")]
    pub hostname: Option<String>,
    /// Rewrite paths in mailserver.cfg: values equal to OLD or below OLD/ (repeatable).
    #[arg(long, value_name = "OLD=NEW")]
    pub rewrite_path: Vec<String>,
    /// From damaged backups: migrate what is intact and list what is not (exit code 3).
    #[arg(long, conflicts_with = "from_install")]
    pub salvage: bool,
    /// Print what would be done (source, target checks, rewrites) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Go on although a mail server seems to run (a live source or a forced target is being written or read).
    #[arg(long)]
    pub ignore_running: bool,
    /// A shell command that exits 0 when the mail server runs (instead of looking for a `mailserver` process).
    #[arg(long, value_name = "CMD")]
    pub running_check: Option<String>,
    /// The server's pid file (instead of looking for a `mailserver` process).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
}

/// Runs `mailvault migrate`.
///
/// # Errors
/// Usage errors (exit 2), the library's errors (exit 1, 4).
pub fn run(a: MigrateArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let hostname = a
        .hostname
        .as_deref()
        .map(str::parse::<HostnameChange>)
        .transpose()
        .map_err(|e| UsageError(format!("--hostname {e}")))?;
    let rewrite_paths = a
        .rewrite_path
        .iter()
        .map(|s| s.parse::<PathRewrite>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(format!("--rewrite-path {e}")))?;
    let source = match (&a.from_install, &a.from.from) {
        (Some(dir), _) => MigrateSource::Install(dir.clone()),
        (None, Some(loc)) => MigrateSource::Backups {
            location: loc.clone(),
            key: a.from.key.key.clone(),
            at: a.from.at.map(|t| t.with_timezone(&chrono::Utc)),
        },
        (None, None) => return Err(UsageError("give --from or --from-install".into()).into()),
    };
    let req = MigrateRequest {
        source,
        to: a.to.clone(),
        force: a.force,
        hostname,
        rewrite_paths,
        running: match (&a.pid_file, &a.running_check) {
            (Some(p), _) => RunningCheck::PidFile(p.clone()),
            (None, Some(c)) => RunningCheck::Command(c.clone()),
            (None, None) => RunningCheck::ProcessName,
        },
        ignore_running: a.ignore_running,
        salvage: a.salvage,
    };
    let planned = match migrate::plan(req) {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    if a.dry_run {
        let p = planned.plan();
        if a.json {
            crate::cli::printer::json(p)?;
        } else if !quiet {
            print_plan(p);
        }
        for n in &p.notes {
            eprintln!("warning: {n}");
        }
        return Ok(if p.is_partial() {
            ExitCode::from(EXIT_PARTIAL)
        } else {
            ExitCode::SUCCESS
        });
    }
    let drawing = Drawer::new(quiet || a.json);
    let report = match migrate::execute(planned, &drawing) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    if a.json {
        crate::cli::printer::json(&report)?;
    } else {
        print_report(&report, quiet);
    }
    for n in &report.notes {
        eprintln!("warning: {n}");
    }
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    })
}

/// Maps the library's error to the exit code it stands for.
fn failed(e: mailvault::Error) -> anyhow::Result<ExitCode> {
    match e {
        mailvault::Error::Usage(m) => Err(UsageError(m).into()),
        mailvault::Error::Recover(mailvault_recover::Error::Usage(m)) => Err(UsageError(m).into()),
        mailvault::Error::Recover(mailvault_recover::Error::ServerRunning(why)) => {
            crate::cli::report::error(&anyhow::Error::new(
                mailvault_recover::Error::ServerRunning(why),
            ));
            eprintln!(
                "hint: stop the mail server first; a copy of a running install is not consistent (or give --ignore-running, --pid-file or --running-check)"
            );
            Ok(ExitCode::from(EXIT_RUNNING))
        }
        e => Err(e.into()),
    }
}

fn print_plan(p: &MigratePlan) {
    println!("dry run: nothing written");
    let s = &p.source;
    if s.chain.is_empty() {
        println!("  source:   install {}", s.location);
    } else {
        println!("  source:   {} ({})", s.chain.join(" + "), s.location);
    }
    for po in &s.passed_over {
        println!("  passed over: {} ({})", po.stem, po.reason);
    }
    println!(
        "            {} files, {} bytes; {} mailboxes, {} folders, {} items",
        s.files, s.bytes, s.mailboxes, s.folders, s.items
    );
    let t = &p.target;
    println!(
        "  target:   {} ({})",
        t.path.display(),
        if !t.exists {
            "new: will be created".to_string()
        } else if t.empty {
            "empty".to_string()
        } else {
            format!("NOT empty: {}", t.entries.join(", "))
        }
    );
    if let Some(d) = &t.displaced_dir {
        println!(
            "  in the way: {} (moved into {} first, never removed)",
            t.displaced.len(),
            d.display()
        );
        for x in t.displaced.iter().take(20) {
            println!("    {x}");
        }
    }
    print_rewrites(&p.rewrites);
    if p.rewrites.is_empty() {
        println!("  rewrites: none");
    }
    for n in &p.not_migrated {
        println!("  NOT migrated: {} ({})", n.path, n.reason);
    }
}

fn print_rewrites(r: &[migrate::Rewrite]) {
    for w in r {
        println!(
            "  rewrite:  {} {} / {}: `{}` -> `{}` ({})",
            w.file, w.section, w.variable, w.old, w.new, w.rule
        );
    }
}

fn print_report(r: &MigrateReport, quiet: bool) {
    let p = &r.plan;
    if !quiet {
        let from = if p.source.chain.is_empty() {
            format!("install {}", p.source.location)
        } else {
            p.source.chain.join(" + ")
        };
        println!(
            "migrated {from} -> {} ({} files, {} bytes, {:.1}s)",
            p.target.path.display(),
            r.written,
            r.bytes,
            r.seconds
        );
        for d in &r.displaced {
            println!("  moved aside: {} -> {}", d.path, d.now.display());
        }
        print_rewrites(&r.rewrites);
        println!();
        println!(
            "{:<36} {:>7} {:>9} {:>9} {:>12} {:>12}  EQUAL",
            "MAILBOX", "FOLDERS", "ITEMS SRC", "ITEMS DST", "BYTES SRC", "BYTES DST"
        );
        for m in &r.mailboxes {
            println!(
                "{:<36} {:>7} {:>9} {:>9} {:>12} {:>12}  {}",
                m.mailbox,
                m.folders_source,
                m.items_source,
                m.items_target,
                m.bytes_source,
                m.bytes_target,
                if m.equal { "yes" } else { "NO" }
            );
        }
        println!();
        println!(
            "{:<16} {:>7} {:>8} {:>9}",
            "CONFIG", "PRESENT", "PARSES", "AS SOURCE"
        );
        let yn = |b: bool| if b { "yes" } else { "NO" };
        for c in &r.config {
            println!(
                "{:<16} {:>7} {:>8} {:>9}",
                c.file,
                if c.in_source || c.present {
                    yn(c.present)
                } else {
                    "-"
                },
                if c.present { yn(c.parses) } else { "-" },
                if c.in_source { yn(c.as_expected) } else { "-" },
            );
        }
        println!();
        println!(
            "files: {} of {} in the target as in the source{}",
            r.files.equal,
            r.files.source,
            if r.files.extra > 0 {
                format!(" ({} other files in the target)", r.files.extra)
            } else {
                String::new()
            }
        );
        for f in &r.index_rebuilt {
            println!(
                "  index rebuilt: {f} (index.fld renamed to index.bad; the server rebuilds it)"
            );
        }
    }
    // What differs or is missing prints even with -q.
    for m in r.mailboxes.iter().filter(|m| !m.equal) {
        for d in &m.differences {
            println!("  DIFFERS {}: {d}", m.mailbox);
        }
    }
    for f in r.files.missing.iter().take(50) {
        println!("  MISSING: {f}");
    }
    for f in r.files.different.iter().take(50) {
        println!("  DIFFERENT: {f}");
    }
    for n in &r.not_migrated {
        println!("  NOT migrated: {} ({})", n.path, n.reason);
    }
    if r.is_complete() {
        if !quiet {
            println!("verified: the target equals the source");
        }
    } else {
        println!("NOT verified equal: see the differences above (exit code 3)");
    }
}
