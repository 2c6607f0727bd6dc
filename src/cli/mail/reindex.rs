//! `mailvault reindex`: rebuild or check `index.fld` / `status.fld` of the
//! selected folders of the live store, over [`mailvault::mail::reindex`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mailvault::mail::folder::InstallLock;
use mailvault::mail::reindex::{self, FolderCheck};
use mailvault::mail::store::{self, LiveStore, MailStore as _};
use serde::Serialize;

use super::{EXIT_PARTIAL, EXIT_PROBLEMS, SelectArgs, ServerArgs};
use crate::cli::UsageError;
use crate::cli::printer;

const AFTER_HELP: &str = "\
Examples:
  mailvault reindex --check                                  # the whole store, changes nothing
  mailvault reindex --check -d example.com -u john --json
  mailvault reindex -d example.com -u john -f INBOX          # rebuild one folder (server stopped)
  mailvault reindex --install-dir /opt/kerio/mailserver       # rebuild every folder that needs it

A record is derived from its item (number, size, times, class); flags and the fields that cannot be
derived are kept from the item's existing record. Files in #msgs that are not items (names other than
eight lower-case hex digits and .eml) are reported and never touched.

Exit codes:
  0  --check: no problem found; rebuild: every selected folder is consistent now
  1  error
  2  usage error
  3  rebuild: done, but files that are not items remain in #msgs (listed)
  5  --check: problems found (listed)
  6  the mail server is running (rebuild only; use --force if you are sure)";

/// `mailvault reindex` options.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct ReindexArgs {
    /// The Kerio Connect install.
    #[arg(long, default_value = "/opt/kerio/mailserver")]
    pub install_dir: PathBuf,
    /// The store directory, if not <install-dir>/store.
    #[arg(short, long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Report mismatches, change nothing.
    #[arg(long)]
    pub check: bool,
    /// Machine-readable report.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Serialize)]
struct Report<'a> {
    check_only: bool,
    folders: usize,
    with_problems: usize,
    rebuilt: usize,
    problems: Vec<&'a FolderCheck>,
}

/// Runs `mailvault reindex`.
///
/// # Errors
/// Usage errors, a running server, I/O.
pub fn run(a: ReindexArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let (domain, mailbox) = a.select.mailbox()?;
    if a.select.folder.is_some() && mailbox.is_none() {
        return Err(UsageError("--folder needs --user".into()).into());
    }
    let live = LiveStore::new(
        a.store
            .clone()
            .unwrap_or_else(|| a.install_dir.join("store")),
    );
    if !live.store_dir().join("mail").is_dir() {
        anyhow::bail!(
            "`{}` has no mail/ directory: give the install with --install-dir (or the store with --store)",
            live.store_dir().display()
        );
    }
    let folders = store::select(
        live.folders()?,
        domain.as_deref(),
        mailbox.as_deref(),
        a.select.folder.as_deref(),
    );
    if folders.is_empty() {
        anyhow::bail!(
            "no folder in `{}` matches the selection",
            live.store_dir().display()
        );
    }
    let _lock = if a.check {
        None
    } else {
        if !a.server.force
            && let Some(why) = mailvault_recover::running::server_running(&a.server.check())?
        {
            return Err(mailvault_recover::Error::ServerRunning(why).into());
        }
        Some(InstallLock::take(&a.install_dir)?)
    };
    let mut checks = Vec::with_capacity(folders.len());
    for f in &folders {
        checks.push(if a.check {
            // One unreadable folder is a finding, not the end of the check.
            reindex::check_folder(&live, f).unwrap_or_else(|e| FolderCheck {
                folder: f.rel(),
                unreadable: Some(e.to_string()),
                ..FolderCheck::default()
            })
        } else {
            reindex::rebuild_folder(&live, f)?
        });
    }
    let problems: Vec<&FolderCheck> = checks.iter().filter(|c| c.has_problems()).collect();
    // What a rebuild cannot fix.
    let bad_names = checks
        .iter()
        .any(|c| !c.bad_names.is_empty() || c.no_number_left);
    let report = Report {
        check_only: a.check,
        folders: checks.len(),
        with_problems: problems.len(),
        rebuilt: if a.check {
            0
        } else {
            problems
                .iter()
                .filter(|c| c.has_problems() && !(only_bad_names(c)))
                .count()
        },
        problems,
    };
    if a.json {
        printer::json(&report)?;
    } else if !quiet {
        for c in &report.problems {
            print_check(c);
        }
        if a.check {
            println!(
                "{} folder(s) checked, {} with problems",
                report.folders, report.with_problems
            );
        } else {
            println!(
                "{} folder(s) checked, {} rebuilt",
                report.folders, report.rebuilt
            );
        }
    }
    Ok(if a.check && report.with_problems > 0 {
        ExitCode::from(EXIT_PROBLEMS)
    } else if !a.check && bad_names {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

fn only_bad_names(c: &FolderCheck) -> bool {
    let mut rest = (*c).clone();
    rest.bad_names.clear();
    rest.no_number_left = false;
    !rest.has_problems()
}

fn uids(v: &[u32]) -> String {
    let shown: Vec<String> = v.iter().take(10).map(|u| format!("{u:08x}")).collect();
    let more = v.len().saturating_sub(10);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn print_check(c: &FolderCheck) {
    if let Some(why) = &c.unreadable {
        println!("{}: NOT checked: {why}", c.folder);
        return;
    }
    println!("{} ({} items, {} records)", c.folder, c.items, c.records);
    if c.no_index {
        println!("  no index.fld");
    }
    if !c.items_without_records.is_empty() {
        println!(
            "  {} item(s) without a record: {}",
            c.items_without_records.len(),
            uids(&c.items_without_records)
        );
    }
    if !c.records_without_items.is_empty() {
        println!(
            "  {} record(s) without an item: {}",
            c.records_without_items.len(),
            uids(&c.records_without_items)
        );
    }
    if !c.wrong_sizes.is_empty() {
        println!("  size differs: {}", uids(&c.wrong_sizes));
    }
    if !c.duplicate_records.is_empty() {
        println!("  several records: {}", uids(&c.duplicate_records));
    }
    for (line, why) in c.bad_lines.iter().take(10) {
        println!("  index.fld line {line}: {why}");
    }
    for n in &c.bad_names {
        println!("  not an item (left alone): #msgs/{n}");
    }
    if c.no_number_left {
        println!(
            "  an item is numbered ffffffff: no number is left after it, nothing can be added to this folder (move its items to a new folder)"
        );
    }
    if c.status_behind {
        println!("  status.fld missing, or its next number is not past every item");
    }
    if !c.leftover_temporaries.is_empty() {
        println!(
            "  {} temporary file(s) of an interrupted merge-eml or give-back in #msgs (a rebuild removes them)",
            c.leftover_temporaries.len()
        );
    }
    for n in &c.leftover_folder_temporaries {
        println!(
            "  {n}: left by a run killed while replacing index.fld or status.fld (a rebuild removes it)"
        );
    }
}
