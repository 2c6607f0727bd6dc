//! `mailvault merge-eml`: arguments, the target folder and sources as the
//! admin names them, then [`mailvault::mail::merge::Merger`], then the report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mailvault::mail::giveback;
use mailvault::mail::merge::{self, Action, MergeReport, MergeRequest, Merger};
use mailvault::mail::store::{ChainStore, FolderRef, ItemRef, LiveStore, MailStore as _};
use mailvault_formats::{ByteSize, layout};
use mailvault_repo::chain;
use mailvault_repo::storage::LockMode;

use super::{EXIT_PARTIAL, FromArgs, ServerArgs};
use crate::cli::UsageError;
use crate::cli::printer;

const AFTER_HELP: &str = "\
Examples:
  mailvault merge-eml -d example.com -u john -f 'Old mail' ~/exported/*.eml
  mailvault merge-eml -d example.com -u john -f INBOX /tmp/saved-messages/ archive.mbox --dry-run
  mailvault merge-eml -d example.com -u john -f 'Restored INBOX' --from /mnt/backup --source-folder INBOX
  mailvault merge-eml --from /mnt/backup --message 'store/mail/example.com/john/INBOX/#msgs/0000002a.eml'
  mailvault merge-eml --public -d example.com -f Announcements notes/ --json

Inputs are .eml files, directories of them (walked; symbolic links inside are not followed), and mbox
files (recognised by their first `From ` line). With --from, the items come out of a backup: a whole
folder (--source-folder, of the same mailbox) or single messages (--message PATH, as `mailvault search`
prints them; without -d/-u/-f they go back into their own folder). Nothing live is replaced or removed:
new items get the next free numbers, and index.fld/status.fld are updated so the server sees them.
A message equal to one already in the folder (same Message-ID and content) is skipped unless
--allow-duplicates; what is not a mail message is reported and skipped.

Exit codes:
  0  every input was added or was already there
  1  error: nothing was added under a final name by the failing step (added items stay, whole)
  2  usage error
  3  finished, but some inputs were not messages or could not be read (listed)
  4  --from: the backup directory is in use by a backup or rotation
  6  the mail server is running (use --force if you are sure)";

/// `mailvault merge-eml` options.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct MergeArgs {
    /// .eml files, directories of them, or mbox files.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// The Kerio Connect install.
    #[arg(long, default_value = "/opt/kerio/mailserver")]
    pub install_dir: PathBuf,
    /// The store directory, if not <install-dir>/store.
    #[arg(short, long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The domain of the mailbox.
    #[arg(short, long)]
    pub domain: Option<String>,
    /// The user: `john` (with --domain) or `john@example.com`.
    #[arg(short, long, conflicts_with = "public")]
    pub user: Option<String>,
    /// The domain's public folders instead of a user's mailbox.
    #[arg(long)]
    pub public: bool,
    /// The folder to add to (`INBOX`, `Projects/2026`); created when missing.
    #[arg(short, long)]
    pub folder: Option<String>,
    #[command(flatten)]
    pub from: FromArgs,
    /// With --from: the backed-up folder of the same mailbox to merge.
    #[arg(long, requires = "from", value_name = "FOLDER")]
    pub source_folder: Option<String>,
    /// With --from: one backed-up message (as `mailvault search` prints its path); repeatable.
    #[arg(long, requires = "from", value_name = "PATH")]
    pub message: Vec<String>,
    /// Add messages even when the folder already holds them.
    #[arg(long)]
    pub allow_duplicates: bool,
    /// Mark added loose messages as read (items from a backup keep their flags).
    #[arg(long)]
    pub mark_seen: bool,
    /// Show what would be added, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable report.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn usage(m: impl Into<String>) -> anyhow::Error {
    UsageError(m.into()).into()
}

/// The domain of `--user user@domain`, if given that way.
fn user_domain_given(a: &MergeArgs) -> Option<String> {
    a.user
        .as_deref()
        .and_then(|u| u.split_once('@'))
        .map(|(_, d)| d.to_string())
}

/// The folder named on the command line, or (single messages without
/// -d/-u/-f) the folder of the first message.
fn target_folder(a: &MergeArgs) -> anyhow::Result<FolderRef> {
    let from_message = a.message.first().and_then(|m| FolderRef::of_rel(m));
    let (user, user_domain) = match a.user.as_deref().map(|u| u.split_once('@')) {
        Some(Some((u, d))) => (Some(u.to_string()), Some(d.to_string())),
        Some(None) => (a.user.clone(), None),
        None => (None, None),
    };
    let domain = a
        .domain
        .clone()
        .or(user_domain)
        .or_else(|| from_message.as_ref().map(|(f, _)| f.domain.clone()))
        .ok_or_else(|| usage("give the mailbox: --domain and --user (or --public)"))?;
    let mailbox = if a.public {
        "#public".to_string()
    } else {
        user.or_else(|| from_message.as_ref().map(|(f, _)| f.mailbox.clone()))
            .ok_or_else(|| usage("give --user (or --public for the domain's public folders)"))?
    };
    let path = a
        .folder
        .clone()
        .or_else(|| a.source_folder.clone())
        .or_else(|| from_message.as_ref().map(|(f, _)| f.path.clone()))
        .ok_or_else(|| usage("give --folder: the folder to add to"))?;
    let path = path.trim_end_matches('/').to_string();
    // What was taken from the first message must hold for every message:
    // one run has one target folder, and another user's message must never
    // land in this mailbox.
    let derived_domain = a.domain.is_none() && user_domain_given(a).is_none();
    let derived_mailbox = !a.public && a.user.is_none();
    let derived_path = a.folder.is_none() && a.source_folder.is_none();
    for m in &a.message {
        let Some((f, _)) = FolderRef::of_rel(m) else {
            continue;
        };
        if (derived_domain && f.domain != domain)
            || (derived_mailbox && f.mailbox != mailbox)
            || (derived_path && f.path != path)
        {
            return Err(usage(format!(
                "the --message paths are in more than one folder (`{}` and `{}`): without -d/-u/-f all would go into the first; give each folder's messages in a run of its own, or use `kmsrecover --message`, which puts each back into its own folder",
                from_message
                    .as_ref()
                    .map(|(f, _)| f.rel())
                    .unwrap_or_default(),
                f.rel()
            )));
        }
    }
    if let (Some(d), Some(ud)) = (&a.domain, user_domain_given(a))
        && *d != ud
    {
        return Err(usage(format!(
            "--user {} and --domain {d} name different domains",
            a.user.as_deref().unwrap_or_default()
        )));
    }
    for (what, v) in [("domain", &domain), ("user", &mailbox), ("folder", &path)] {
        let bad_mailbox = what == "user" && v != "#public" && v.starts_with('#');
        if layout::check_relative(v).is_err()
            || (what != "folder" && v.contains('/'))
            || bad_mailbox
            || (what == "folder" && v.split('/').any(|c| c.starts_with('#')))
        {
            return Err(usage(format!("bad {what} `{v}`")));
        }
    }
    Ok(FolderRef {
        domain,
        mailbox,
        path,
    })
}

/// Runs `mailvault merge-eml`.
///
/// # Errors
/// Usage errors, a refused merge, I/O.
pub fn run(a: MergeArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    if a.inputs.is_empty() && a.from.from.is_none() {
        return Err(usage(
            "give inputs (.eml files, directories, mbox files) or --from with --source-folder or --message",
        ));
    }
    if a.from.from.is_some() && a.source_folder.is_none() && a.message.is_empty() {
        return Err(usage(
            "--from needs --source-folder FOLDER or --message PATH",
        ));
    }
    let folder = target_folder(&a)?;
    let req = MergeRequest {
        store_dir: a
            .store
            .clone()
            .unwrap_or_else(|| a.install_dir.join("store")),
        install_dir: a.install_dir.clone(),
        folder: folder.clone(),
        allow_duplicates: a.allow_duplicates,
        mark_seen: a.mark_seen,
        dry_run: a.dry_run,
        running: a.server.check(),
        force: a.server.force,
    };
    if let Some(location) = &a.from.from {
        if !a.inputs.is_empty() {
            return Err(usage(
                "give either files to merge or --from with --source-folder/--message, not both",
            ));
        }
        let report = from_backup(&a, location, &req)?;
        print(&report, a.json, quiet)?;
        return Ok(exit(&report));
    }
    let mut merger = Merger::open(req)?;
    for input in &a.inputs {
        merger.offer_path(input)?;
    }
    if merger.report().items.is_empty() {
        anyhow::bail!(
            "found no file to merge in {}: give .eml files, directories holding them, or mbox files",
            a.inputs
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let report = merger.finish()?;
    print(&report, a.json, quiet)?;
    Ok(exit(&report))
}

fn exit(report: &MergeReport) -> ExitCode {
    if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    }
}

/// Items of a backup (a folder, or single messages) given back into the
/// live folder through [`giveback`]: the same rules as `kmsrecover --message`.
fn from_backup(a: &MergeArgs, location: &str, req: &MergeRequest) -> anyhow::Result<MergeReport> {
    let live = LiveStore::new(&req.store_dir);
    merge::check_mailbox(&live, &req.folder)?;
    let _install = merge::guard(&req.install_dir, &req.running, req.force, req.dry_run)?;
    let source = mailvault_recover::source::open(
        location,
        a.from.key.key.as_deref(),
        a.from.at.map(|t| t.with_timezone(&chrono::Utc)),
    )?;
    let _lock = source.repo.lock(LockMode::Shared, "merge-eml")?;
    let chain = chain::resolve(&source.repo, &source.pick, false)?;
    let mut store = ChainStore::new(&chain)?;
    let mut items: Vec<ItemRef> = Vec::new();
    if let Some(sf) = &a.source_folder {
        let src = FolderRef {
            path: sf.trim_end_matches('/').to_string(),
            ..req.folder.clone()
        };
        if !store.folders()?.contains(&src) {
            anyhow::bail!(
                "{} holds no folder `{}`: list the mailbox's folders with `kmsrecover -l -d {} -u {} {location}`",
                store.describe(),
                src.rel(),
                src.domain,
                src.mailbox
            );
        }
        items.extend(store.items(&src)?);
    }
    for found in giveback::locate(&store, &a.message, None)?.into_values() {
        items.extend(found);
    }
    let r = if req.dry_run {
        giveback::plan_give_back(&mut store, &items, &live, &req.folder)?
    } else {
        giveback::give_back(&mut store, &items, &live, &req.folder)?
    };
    Ok(MergeReport::from_give_back(r))
}

fn print(r: &MergeReport, json: bool, quiet: bool) -> anyhow::Result<()> {
    if json {
        return printer::json(r);
    }
    let list_added = r.added <= 20;
    for o in &r.items {
        match &o.action {
            Action::Added { uid, size, .. } if list_added && !quiet => {
                println!(
                    "  added      {uid:08x}.eml  {}  <- {}",
                    ByteSize(*size),
                    o.source
                );
            }
            Action::Duplicate { of } if !quiet => {
                println!("  duplicate  {}  (same as {of})", o.source);
            }
            Action::Rejected { reason } => {
                eprintln!("  skipped    {}: {reason}", o.source);
            }
            _ => {}
        }
    }
    if !quiet {
        let verb = if r.dry_run { "would add" } else { "added" };
        println!(
            "{}{}: {verb} {}, {} duplicate(s) skipped, {} input(s) not added{}",
            r.folder,
            if r.created { " (new folder)" } else { "" },
            r.added,
            r.duplicates,
            r.rejected,
            if r.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
        if r.indexed_orphans > 0 {
            println!(
                "  {} item(s) already in #msgs without an index.fld record got one",
                r.indexed_orphans
            );
        }
    }
    Ok(())
}
