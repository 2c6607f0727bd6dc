//! `mailvault export`: arguments, the store to read (the live install, or
//! a backup chain through the same source resolution as kmsrecover), the
//! plan (`--dry-run`), the run and its summary (human or `--json`).

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use mailvault::mail::export::{self, ExportFormat, ExportPlan, ExportReport, ExportRequest};
use mailvault::mail::store::{ChainIndex, ChainStore, LiveStore, MailStore};
use mailvault_formats::ByteSize;
use mailvault_repo::chain;
use mailvault_repo::storage::LockMode;

use super::{EXIT_PARTIAL, FromArgs, SelectArgs};
use crate::cli::UsageError;
use crate::cli::progress::Drawer;

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Maildir++ (Dovecot, Courier): flags in the file names.
    Maildir,
    /// One mboxrd file per folder (`<Folder>.mbox`).
    Mbox,
    /// One `<8 hex>.eml` file per message, a directory per folder.
    Eml,
}

/// `mailvault export` options.
#[derive(Debug, Args)]
#[command(
    after_help = "Layout: <out>/<domain>/<user>/ per mailbox: the Maildir itself (INBOX) with \
.Sub.Folders, or <Folder>.mbox files, or <Folder>/<8 hex>.eml; calendars and contacts as \
<Folder>.ics / <Folder>.vcf beside them. Existing mailbox directories are never written into.

Examples:
  mailvault export --out /srv/export
  mailvault export --user john@example.com --format mbox --out /tmp/john
  mailvault export --from /mnt/backup --at 2026-11-20T12:00:00Z --user john@example.com --folder 'Sent Items' --out /tmp/x
  mailvault export --from s3://bucket/kerio?region=eu-central-1 --key /root/backup.key --domain example.com --out /srv/x
  mailvault export --dry-run --json --out /srv/export

Exit codes:
  0  everything selected was exported
  1  error (nothing left half-written under a final name)
  2  usage error
  3  exported, but some items were not (listed, with why)
  4  --from a backup directory or target in use by a backup or rotation"
)]
pub struct ExportArgs {
    /// Where to write: one directory per mailbox, <out>/<domain>/<user>.
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// Format of mail.
    #[arg(long, value_enum, default_value_t = FormatArg::Maildir)]
    pub format: FormatArg,
    /// The Kerio Connect install whose live store is exported (when --from is not given).
    #[arg(long, default_value = "/opt/kerio/mailserver", conflicts_with = "from")]
    pub install_dir: std::path::PathBuf,
    #[command(flatten)]
    pub from: FromArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Leave calendar and contact items out (listed as skipped) instead of writing .ics/.vcf files.
    #[arg(long)]
    pub skip_calendars_contacts: bool,
    /// Print what would be exported; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan (--dry-run) or the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Mailboxes exported at once (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Runs `mailvault export`.
///
/// # Errors
/// Usage errors, an unknown mailbox or folder, an unreadable source, a
/// failing output.
pub fn run(a: ExportArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    if a.select.folder.is_some() && a.select.user.is_none() {
        return Err(UsageError("--folder needs --user (a folder of one mailbox)".into()).into());
    }
    if a.threads == Some(0) {
        return Err(UsageError("--threads must be at least 1".into()).into());
    }
    let req = ExportRequest {
        out: a.out.clone(),
        format: match a.format {
            FormatArg::Maildir => ExportFormat::Maildir,
            FormatArg::Mbox => ExportFormat::Mbox,
            FormatArg::Eml => ExportFormat::Eml,
        },
        domain: a.select.domain.clone(),
        user: a.select.user.clone(),
        folder: a.select.folder.clone(),
        skip_groupware: a.skip_calendars_contacts,
    };
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let drawer = Drawer::new(quiet || a.json);
    let mut notes = Vec::new();
    let outcome = if let Some(from) = &a.from.from {
        let source = mailvault_recover::source::open(
            from,
            a.from.key.key.as_deref(),
            a.from.at.map(|t| t.with_timezone(&chrono::Utc)),
        )?;
        let _lock = source.repo.lock(LockMode::Shared, "mailvault export")?;
        let chain = chain::resolve(&source.repo, &source.pick, false)?;
        for p in &chain.passed {
            notes.push((
                p.damaged,
                format!("backup {} passed over: {}", p.stem, p.reason),
            ));
        }
        // One index of the chain for the plan and every worker.
        let index = ChainIndex::new(&chain)?;
        let mut first = ChainStore::with_index(&chain, &index);
        let plan = export::plan(&mut first, &req)?;
        drop(first);
        if a.dry_run {
            Outcome::Planned(plan)
        } else {
            let stores = || -> mailvault::Result<Box<dyn MailStore + '_>> {
                Ok(Box::new(ChainStore::with_index(&chain, &index)))
            };
            Outcome::Done(export::execute(&stores, &plan, threads, &drawer)?)
        }
    } else {
        let store_dir = a.install_dir.join("store");
        if !store_dir.join("mail").is_dir() {
            return Err(mailvault::Error::NotAnInstall(a.install_dir.clone()).into());
        }
        if inside(&a.out, &store_dir) {
            return Err(UsageError(format!(
                "--out `{}` is inside the store `{}` being exported: the mail server would see the export as mail; give a directory outside it",
                a.out.display(),
                store_dir.display()
            ))
            .into());
        }
        let mut store = LiveStore::new(&store_dir);
        let plan = export::plan(&mut store, &req)?;
        if a.dry_run {
            Outcome::Planned(plan)
        } else {
            let stores = || -> mailvault::Result<Box<dyn MailStore + '_>> {
                Ok(Box::new(LiveStore::new(&store_dir)))
            };
            Outcome::Done(export::execute(&stores, &plan, threads, &drawer)?)
        }
    };
    let older = notes.iter().any(|(damaged, _)| *damaged);
    match outcome {
        Outcome::Planned(plan) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else if !quiet {
                print_plan(&plan);
            }
            for (_, n) in &notes {
                eprintln!("note: {n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Done(report) => {
            if a.json {
                let mut v = serde_json::to_value(&report)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("complete".into(), report.complete().into());
                    o.insert(
                        "notes".into(),
                        notes.iter().map(|(_, n)| n.clone()).collect(),
                    );
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if !quiet {
                print_report(&report, &a.out);
            }
            for (_, n) in &notes {
                eprintln!("note: {n}");
            }
            if !report.not_exported.is_empty() {
                eprintln!("{} item(s) not exported:", report.not_exported.len());
                for n in &report.not_exported {
                    eprintln!(
                        "  {} ({} / {}): {}",
                        safe(&n.path),
                        safe(&n.mailbox),
                        safe(&n.folder),
                        safe(&n.reason)
                    );
                }
            }
            Ok(if report.complete() && !older {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_PARTIAL)
            })
        }
    }
}

/// Whether `path` (which may not exist yet) lies inside `dir`, links resolved.
fn inside(path: &Path, dir: &Path) -> bool {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return false;
    };
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // The nearest existing ancestor, resolved; the rest appended as given.
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            let full = rest
                .iter()
                .rev()
                .fold(real, |p: std::path::PathBuf, c| p.join(c));
            return full.starts_with(&dir);
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return false,
        }
    }
}

enum Outcome {
    Planned(ExportPlan),
    Done(ExportReport),
}

/// Text from the store (folder names decoded from modified UTF-7 can hold
/// any character) made safe for a terminal: control characters, such as
/// the escape sequences of a hostile folder name, shown as `?`.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn format_name(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::Maildir => "Maildir++",
        ExportFormat::Mbox => "mbox",
        ExportFormat::Eml => ".eml files",
    }
}

fn print_plan(plan: &ExportPlan) {
    println!(
        "would export {} mailbox(es), {} items ({}) from {} to {} as {}",
        plan.mailboxes.len(),
        plan.items,
        ByteSize(plan.bytes),
        plan.source,
        plan.out.display(),
        format_name(plan.format)
    );
    for m in &plan.mailboxes {
        println!(
            "  {} -> {} ({} folders, {} items, {})",
            safe(&m.address),
            safe(&m.dir.display().to_string()),
            m.folders.len(),
            m.items,
            ByteSize(m.bytes)
        );
        for f in &m.folders {
            let mut to = Vec::new();
            let mail = f.items - f.calendar_items - f.contact_items;
            if mail > 0 || f.items == 0 {
                let at = if f.mail.is_empty() {
                    "the Maildir itself"
                } else {
                    f.mail.as_str()
                };
                to.push(format!("{at} ({mail} messages)"));
            }
            for (n, file, what) in [
                (f.calendar_items, &f.calendar, "calendar items"),
                (f.contact_items, &f.contacts, "contacts"),
            ] {
                if n > 0 && plan.skip_calendars_contacts {
                    to.push(format!("skipped ({n} {what})"));
                } else if n > 0 {
                    to.push(format!("{file} ({n} {what})"));
                }
            }
            let note = f
                .note
                .as_ref()
                .map_or_else(String::new, |n| format!("  [{n}]"));
            println!(
                "    {} -> {}{}",
                safe(&f.name),
                safe(&to.join(", ")),
                safe(&note)
            );
        }
        for n in &m.not_exportable {
            println!(
                "    cannot be exported: {}: {}",
                safe(&n.path),
                safe(&n.reason)
            );
        }
    }
}

fn print_report(r: &ExportReport, out: &Path) {
    println!(
        "exported {} mailbox(es): {} messages ({}), {} calendar items, {} contacts to {} as {}",
        r.mailboxes.len(),
        r.messages,
        ByteSize(r.bytes),
        r.calendar_items,
        r.contact_items,
        out.display(),
        format_name(r.format)
    );
    for m in &r.mailboxes {
        println!(
            "  {}: {} folders, {} messages ({}){}",
            safe(&m.address),
            m.folders,
            m.messages,
            ByteSize(m.bytes),
            if m.not_exported.is_empty() {
                String::new()
            } else {
                format!(", {} not exported", m.not_exported.len())
            }
        );
    }
    for s in &r.skipped {
        println!(
            "  skipped {} item(s) of {} / {}: {}",
            s.items,
            safe(&s.mailbox),
            safe(&s.folder),
            s.reason
        );
    }
}
