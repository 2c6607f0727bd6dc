//! `kmsrecover`: restores exactly what is asked from a full + differential
//! chain, command-line compatible with Kerio's KMSRecover, and safer: it
//! refuses while the mail server runs, shows its plan (`-l`, `--dry-run`),
//! saves what it will replace as a `C` archive first, and swaps each
//! restored root in atomically. A thin main over `mailvault-recover`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use mailvault::restore::ArchiveSafetyCopy;
use mailvault_formats::ByteSize;
use mailvault_recover::plan::RestorePlan;
use mailvault_recover::{
    Destination, ExecuteOptions, Inventory, Part, RestoreReport, RestoreRequest, RunningCheck,
};
use mailvault_repo::chain;
use mailvault_repo::storage::LockMode;

const AFTER_HELP: &str = "\
Examples:
  kmsrecover /opt/kerio/mailserver/store/backup                 # everything, newest backup (server stopped)
  kmsrecover -d example.com -u john -l /mnt/backup             # list John's folders with item counts
  kmsrecover -d example.com -u john -f INBOX /mnt/backup        # replace John's INBOX with its backed-up state
  kmsrecover -d example.com -u john -f INBOX --as-folder 'Restored 2026-11-20' /mnt/backup
  kmsrecover -m cfg,license,sslca,sslcert /mnt/backup/F20261122T010000Z.zip
  kmsrecover --at 2026-11-20T12:00:00Z --into /tmp/old /mnt/backup
  kmsrecover --dry-run /mnt/backup                              # what would be written and removed
  kmsrecover -d example.com -u john --key /root/mailvault.key 's3://backups/kerio?endpoint=https://s3.example.net'

Single messages found with `mailvault search`, added beside the live ones (nothing replaced):
  kmsrecover --message 'store/mail/example.com/john/INBOX/#msgs/0000002a.eml' /mnt/backup
  kmsrecover --message PATH /mnt/backup/F20261122T010000Z.zip    # an archive search listed
  kmsrecover --message PATH1 --message PATH2 --as-folder Restored --dry-run /mnt/backup

Mask parts (-m): cfg (mailserver.cfg, users.cfg), mail, lists, public, license, sslca, sslcert, spam.

Exit codes:
  0  restored exactly what was asked (or listed)
  1  error: nothing live was changed (or, during the swap, each folder is old or new: run again)
  2  usage error
  3  finished, but not everything: files not restored (listed), a salvage, or a damaged
     newer backup passed over for an older one (--message: a message that could not be read)
  4  the backup directory or target is in use by another run (a backup or rotation: the holder is named)
  6  the mail server is running (use --force if you are sure)";

/// Restore mail, configuration, licences and certificates from mailvault / Kerio backups.
#[derive(Debug, Parser)]
#[command(name = "kmsrecover", version, about, after_help = AFTER_HELP)]
#[command(group(clap::ArgGroup::new("as_folder_of").args(["folder", "message"]).multiple(true)))]
struct Args {
    /// A backup directory (the newest backup in it is restored), an archive (for several volumes, any of them),
    /// or a target URL (s3://bucket/prefix?endpoint=URL, ftp://user@host/dir or ftps://…).
    source: String,
    /// Key file of encrypted backups (default: the file named by MAILVAULT_KEY_FILE).
    #[arg(
        long,
        value_name = "FILE",
        env = "MAILVAULT_KEY_FILE",
        hide_env_values = true
    )]
    key: Option<PathBuf>,
    /// Recover (or with -l list) this domain.
    #[arg(short, long)]
    domain: Option<String>,
    /// Recover (or list) this user (login name without domain).
    #[arg(short, long)]
    user: Option<String>,
    /// Recover this folder of the user, subfolders included (needs -d and -u; nested as A/B).
    #[arg(short, long)]
    folder: Option<String>,
    /// Where store data is unpacked (default: the install's store).
    #[arg(short, long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Where configuration files, SSL certificates and licences go (default: the install directory).
    #[arg(short, long, value_name = "DIR")]
    cfgdir: Option<PathBuf>,
    /// Restore only these parts: comma list of cfg, mail, lists, public, license, sslca, sslcert, spam.
    #[arg(short, long, value_delimiter = ',')]
    mask: Option<Vec<String>>,
    /// List domains, users (with -d) or folders (with -d -u) with item counts and sizes; restore nothing.
    #[arg(short, long)]
    list: bool,
    /// The install directory (the default for -s and -c).
    #[arg(long, default_value = "/opt/kerio/mailserver")]
    install_dir: PathBuf,
    /// Restore the newest state at or before this time (RFC 3339, e.g. 2026-11-20T12:00:00Z).
    #[arg(long)]
    at: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Print what would be written and removed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Restore into this empty directory instead of the install (nothing live is touched).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["store", "cfgdir"])]
    into: Option<PathBuf>,
    /// Restore the folder (-d -u -f) as a new folder with this name beside the live ones;
    /// with --message: put the messages into this folder (top level of the same mailbox) instead of their own.
    #[arg(long, value_name = "NAME", requires = "as_folder_of")]
    as_folder: Option<String>,
    /// Give this message back (repeatable): its path as `mailvault search` prints it
    /// (store/mail/DOMAIN/USER/FOLDER/#msgs/NNNNNNNN.eml). Added under the next free number
    /// beside the live messages; one whose exact bytes are already there is skipped.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["domain", "user", "folder", "mask", "list", "into", "salvage", "cfgdir"]
    )]
    message: Vec<String>,
    /// Do not save what will be replaced or removed as a C archive first.
    #[arg(long)]
    no_safety_copy: bool,
    /// Where the safety copy goes (default: `safety-copies/` in the backup directory, outside every chain).
    #[arg(long, value_name = "DIR")]
    safety_dir: Option<PathBuf>,
    /// Restore what is intact from a damaged archive and list what is not.
    #[arg(long)]
    salvage: bool,
    /// Restore even though the mail server seems to be running.
    #[arg(long)]
    force: bool,
    /// Command whose exit status 0 means the mail server is running (default: look for a `mailserver` process).
    #[arg(long, value_name = "CMD")]
    running_check: Option<String>,
    /// The mail server's pid file: running if it names a live process.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
}

// The same drawer as `mailvault`: a bar on a terminal, plain lines otherwise.
#[path = "../cli/progress.rs"]
#[allow(dead_code)]
mod progress;
#[path = "../cli/report.rs"]
mod report;

const EXIT_PARTIAL: u8 = 3;
const EXIT_LOCKED: u8 = 4;
const EXIT_RUNNING: u8 = 6;

fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            report::error(&err);
            let locked = matches!(
                err.downcast_ref::<mailvault_repo::Error>(),
                Some(mailvault_repo::Error::Locked { .. })
            ) || matches!(
                err.downcast_ref::<mailvault_recover::Error>(),
                Some(mailvault_recover::Error::Repo(
                    mailvault_repo::Error::Locked { .. }
                ))
            );
            let code: u8 = match err.downcast_ref::<mailvault_recover::Error>() {
                _ if locked => EXIT_LOCKED,
                Some(mailvault_recover::Error::ServerRunning(_)) => EXIT_RUNNING,
                Some(e) if e.is_usage() => 2,
                _ => 1,
            };
            if json {
                // A machine reading stdout gets a document there too.
                let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "error": err.to_string(),
                        "causes": causes,
                        "hint": report::hint(&err),
                        "exit_code": code,
                    })
                );
            }
            ExitCode::from(code)
        }
    }
}

fn run(a: Args) -> anyhow::Result<ExitCode> {
    if !a.message.is_empty() {
        return give_back(&a);
    }
    let mailvault_recover::Source {
        repo,
        pick,
        local_dir: local,
    } = mailvault_recover::source::open(
        &a.source,
        a.key.as_deref(),
        a.at.map(|t| t.with_timezone(&chrono::Utc)),
    )?;
    // Safety copies stay on this machine: beside a local backup directory,
    // or in the install's default backup directory for a remote source.
    let safety_base = local
        .clone()
        .unwrap_or_else(|| a.install_dir.join("store").join("backup"));
    let mask = a
        .mask
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|w| Part::parse(w))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let destination = match &a.into {
        Some(into) => Destination::into_dir(into),
        None => {
            let mut d = Destination::install(&a.install_dir);
            if let Some(s) = &a.store {
                d.store_dir.clone_from(s);
            }
            if let Some(c) = &a.cfgdir {
                d.cfg_dir.clone_from(c);
            }
            d
        }
    };
    let safety = ArchiveSafetyCopy {
        dir: a
            .safety_dir
            .clone()
            .unwrap_or_else(|| ArchiveSafetyCopy::beside(&safety_base).dir),
    };
    let same_dir = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    };
    // (A safety-copies directory holds partial archives anyway: an undo's
    // own safety copy goes beside the one it restores.)
    let undo = same_dir(&ArchiveSafetyCopy::beside(&safety_base).dir, &safety_base);
    if !a.no_safety_copy && !undo && local.as_deref().is_some_and(|d| same_dir(&safety.dir, d)) {
        return Err(mailvault_recover::Error::Usage(
            "--safety-dir is the backup directory: a partial safety copy there would sit among the backups; give another directory"
                .into(),
        )
        .into());
    }
    let req = RestoreRequest {
        pick,
        domain: a.domain.clone(),
        user: a.user.clone(),
        folder: a.folder.clone(),
        mask,
        destination,
        as_folder: a.as_folder.clone(),
        salvage: a.salvage,
        // The backups and the safety copies are never restored over, even
        // where they lie inside what is restored.
        untouchable: local
            .iter()
            .cloned()
            .chain((!a.no_safety_copy).then(|| safety.dir.clone()))
            .collect(),
        // -s / -c name their places explicitly, as --into does.
        require_install: a.store.is_none() && a.cfgdir.is_none(),
    };
    req.check()?;

    if a.list {
        let _lock = repo.lock(LockMode::Shared, "kmsrecover -l")?;
        let chain = chain::resolve(&repo, &req.pick, a.salvage)?;
        let inv = mailvault_recover::inventory(&chain, &req)?;
        print_inventory(&inv, a.json)?;
        // As a restore would: an older state than the newest backup is listed.
        return Ok(if inv.passed_over.iter().any(|p| p.damaged) {
            ExitCode::from(EXIT_PARTIAL)
        } else {
            ExitCode::SUCCESS
        });
    }
    let prepared = mailvault_recover::prepare(&repo, req)?;
    if a.dry_run {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&prepared.plan)?);
        } else if !a.quiet {
            print_plan(&prepared.plan);
        }
        // The exit code the restore itself would have for what is known now.
        let p = &prepared.plan;
        let partial = p.passed_over.iter().any(|x| x.damaged)
            || !p.not_restorable.is_empty()
            || !p.problems.is_empty();
        return Ok(if partial {
            ExitCode::from(EXIT_PARTIAL)
        } else {
            ExitCode::SUCCESS
        });
    }
    let opts = ExecuteOptions {
        safety: (!a.no_safety_copy).then_some(&safety as &dyn mailvault_recover::SafetyCopier),
        running: match (&a.pid_file, &a.running_check) {
            (Some(p), _) => RunningCheck::PidFile(p.clone()),
            (None, Some(c)) => RunningCheck::Command(c.clone()),
            (None, None) => RunningCheck::ProcessName,
        },
        force: a.force,
    };
    let drawing = progress::Drawer::new(a.quiet || a.json);
    let report = mailvault_recover::execute(prepared, &opts, &drawing)?;
    // What a restore from a target cost in transfer (0 for local sources).
    let fetched = mailvault_repo::storage::remote::bytes_fetched();
    if a.json {
        let mut doc = serde_json::to_value(&report)?;
        if let Some(o) = doc.as_object_mut() {
            o.insert("fetched_bytes".into(), fetched.into());
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_report(&report, a.quiet);
        if !a.quiet && fetched > 0 {
            println!(
                "  fetched:   {} from {}",
                ByteSize(fetched),
                repo.storage().describe("")
            );
        }
    }
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    })
}

/// What was done, and (always, even with -q) what was not.
fn print_report(r: &RestoreReport, quiet: bool) {
    if !quiet {
        println!("restored from {}", r.chain.join(" + "));
        println!("  written:   {} files, {}", r.written, ByteSize(r.bytes));
        println!("  removed:   {} files", r.deleted);
        println!("  unchanged: {} files", r.unchanged);
        println!("  time:      {:.1}s", r.seconds);
        for root in &r.restored {
            println!("  restored:  {} -> {}", root.rel, root.dest.display());
        }
        if let Some(s) = &r.safety_copy {
            println!("  safety copy: {s} (undo: kmsrecover with the same options on this archive)");
        }
        for n in &r.notes {
            println!("  note:      {n}");
        }
        let kept = r.kept.len();
        for k in r.kept.iter().take(20) {
            println!("  kept:      {} ({})", k.path.display(), k.reason);
        }
        if kept > 20 {
            println!(
                "  kept:      … and {} more (--json lists them all)",
                kept - 20
            );
        }
    }
    for p in r.passed_over.iter().filter(|p| p.damaged) {
        eprintln!(
            "warning: passed over {} ({}): an older backup was restored",
            p.stem, p.reason
        );
    }
    for p in r.problems.iter().take(20) {
        println!("  damage:    {p}");
    }
    for a in &r.arrived {
        println!(
            "  ARRIVED while restoring: {} (not in the plan: kept at {})",
            a.path.display(),
            a.now.display()
        );
    }
    for n in &r.not_restored {
        println!("  NOT restored: {} ({})", n.path, n.reason);
    }
    for f in &r.index_bad {
        println!(
            "  index rebuilt: {} (index.fld renamed to index.bad; the server rebuilds it)",
            f.display()
        );
    }
}

fn print_plan(p: &RestorePlan) {
    println!(
        "dry run: restoring from {}, nothing changed",
        p.chain.join(" + ")
    );
    for r in &p.roots {
        println!(
            "  root:    {} -> {}{}",
            r.rel,
            r.dest.display(),
            if r.changes {
                ""
            } else {
                " (already as backed up)"
            }
        );
    }
    println!(
        "  write:   {} files, {} ({} replacing)",
        p.writes.len(),
        ByteSize(p.bytes),
        p.writes.iter().filter(|w| w.replace).count()
    );
    for w in p.writes.iter().take(50) {
        println!(
            "           {} {}",
            if w.replace { "replace" } else { "new    " },
            w.dest.display()
        );
    }
    println!("  remove:  {} files", p.deletes.len());
    for d in p.deletes.iter().take(50) {
        println!("           {}", d.display());
    }
    println!("  keep:    {} items not in the backup", p.kept.len());
    for k in p.kept.iter().take(50) {
        println!("           {} ({})", k.path.display(), k.reason);
    }
    println!("  same:    {} files already as backed up", p.unchanged);
    for n in &p.not_restorable {
        println!("  NOT restorable: {} ({})", n.path, n.reason);
    }
    for n in &p.notes {
        println!("  note:    {n}");
    }
}

/// `-l`: domains, users of a domain, or folders of a user, from the catalog alone.
fn print_inventory(inv: &Inventory, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&inv.rows)?);
        return Ok(());
    }
    let what = match inv.level {
        mailvault_recover::inventory::Level::Domain => "DOMAIN",
        mailvault_recover::inventory::Level::Mailbox => "MAILBOX",
        mailvault_recover::inventory::Level::Folder => "FOLDER",
    };
    println!("backup: {}", inv.chain.join(" + "));
    for p in &inv.passed_over {
        eprintln!("note: passed over {} ({})", p.stem, p.reason);
    }
    println!("{what:<40} {:>8} {:>11}", "ITEMS", "SIZE");
    for r in &inv.rows {
        println!(
            "{:<40} {:>8} {:>11}",
            r.name,
            r.items,
            ByteSize(r.bytes).to_string()
        );
    }
    Ok(())
}

/// `--message`: single messages added back to the live store (nothing
/// replaced, so no safety copy is needed).
fn give_back(a: &Args) -> anyhow::Result<ExitCode> {
    use mailvault::mail::giveback;
    use mailvault::mail::store::{ChainStore, LiveStore};
    let usage = |e: mailvault::Error| mailvault_recover::Error::Usage(e.to_string());
    // Malformed paths and names are refused before anything is opened.
    for p in &a.message {
        giveback::message_path(p).map_err(usage)?;
    }
    if let Some(n) = &a.as_folder {
        let any = giveback::message_path(&a.message[0]).map_err(usage)?.0;
        giveback::target_folder(&any, Some(n)).map_err(usage)?;
    }
    let src = mailvault_recover::source::open(
        &a.source,
        a.key.as_deref(),
        a.at.map(|t| t.with_timezone(&chrono::Utc)),
    )?;
    let _lock = src.repo.lock(LockMode::Shared, "kmsrecover --message")?;
    let chain = chain::resolve(&src.repo, &src.pick, false)?;
    let passed_damaged: Vec<_> = chain.passed.iter().filter(|p| p.damaged).collect();
    let mut store = ChainStore::new(&chain)?;
    let groups = giveback::locate(&store, &a.message, a.as_folder.as_deref())?;
    let store_dir = a
        .store
        .clone()
        .unwrap_or_else(|| a.install_dir.join("store"));
    if !store_dir.join("mail").is_dir() {
        return Err(mailvault::Error::NotAnInstall(a.install_dir.clone()).into());
    }
    let live = LiveStore::new(&store_dir);
    for into in groups.keys() {
        let mailbox = live.path_of(&format!("store/mail/{}/{}", into.domain, into.mailbox))?;
        if !mailbox.is_dir() {
            return Err(mailvault_recover::Error::Request(format!(
                "mailbox {} is not in the live store `{}`: restore it first (kmsrecover -d {} -u {})",
                into.address(),
                store_dir.display(),
                into.domain,
                into.mailbox
            ))
            .into());
        }
    }
    let mut reports = Vec::new();
    if a.dry_run {
        for (into, items) in &groups {
            reports.push(giveback::plan_give_back(&mut store, items, &live, into)?);
        }
    } else {
        if !a.force {
            let check = match (&a.pid_file, &a.running_check) {
                (Some(p), _) => RunningCheck::PidFile(p.clone()),
                (None, Some(c)) => RunningCheck::Command(c.clone()),
                (None, None) => RunningCheck::ProcessName,
            };
            if let Some(why) = mailvault_recover::running::server_running(&check)? {
                return Err(mailvault_recover::Error::ServerRunning(why).into());
            }
        }
        let _install = mailvault::mail::folder::InstallLock::take(&a.install_dir)?;
        // Every folder is opened (links refused, files read) before any is
        // written: a refused folder stops the run with nothing changed.
        for into in groups.keys() {
            mailvault::mail::folder::LiveFolder::open(&live, into, 0)?;
        }
        for (into, items) in &groups {
            match giveback::give_back(&mut store, items, &live, into) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    // Folders done before the error keep their messages:
                    // say which, so "error" is not read as "nothing changed".
                    let done: Vec<String> = reports
                        .iter()
                        .flat_map(|r| &r.items)
                        .filter_map(|i| match &i.outcome {
                            giveback::Outcome::Added { path, .. } => {
                                Some(format!("{} -> {path}", i.source))
                            }
                            _ => None,
                        })
                        .collect();
                    for d in &done {
                        eprintln!("given back before the error: {d}");
                    }
                    let e = anyhow::Error::from(e);
                    return Err(if done.is_empty() {
                        e
                    } else {
                        e.context(format!(
                            "{} message(s) were given back before the error (listed above)",
                            done.len()
                        ))
                    });
                }
            }
        }
    }
    let failed: usize = reports.iter().map(giveback::GiveBackReport::failed).sum();
    // From a target: what the messages cost in transfer (as a restore says).
    let fetched = mailvault_repo::storage::remote::bytes_fetched();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "chain": chain.names(),
                "dry_run": a.dry_run,
                "passed_over": chain.passed,
                "folders": reports,
                "fetched_bytes": fetched,
            }))?
        );
    } else {
        print_given(&chain.names(), &reports, a.dry_run, a.quiet);
        if !a.quiet && fetched > 0 {
            println!(
                "  fetched:   {} from {}",
                ByteSize(fetched),
                src.repo.storage().describe("")
            );
        }
    }
    for p in &passed_damaged {
        eprintln!(
            "warning: passed over {} ({}): an older backup was read",
            p.stem, p.reason
        );
    }
    Ok(if failed > 0 || !passed_damaged.is_empty() {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `--message` did (or would do); failures always, even with -q.
fn print_given(
    chain: &[String],
    reports: &[mailvault::mail::giveback::GiveBackReport],
    dry_run: bool,
    quiet: bool,
) {
    use mailvault::mail::giveback::Outcome;
    if !quiet {
        if dry_run {
            println!(
                "dry run: giving back from {}, nothing changed",
                chain.join(" + ")
            );
        } else {
            println!("given back from {}", chain.join(" + "));
        }
    }
    let verb = if dry_run { "would add" } else { "added" };
    for r in reports {
        for i in &r.items {
            match &i.outcome {
                Outcome::Added { path, .. } if !quiet => {
                    println!("  {verb}:     {} -> {path}", i.source);
                }
                Outcome::AlreadyThere { path } if !quiet => {
                    println!(
                        "  already there: {} (the same bytes are {path}): not added again",
                        i.source
                    );
                }
                Outcome::Failed { reason } => {
                    println!("  NOT given back: {} ({reason})", i.source);
                }
                _ => {}
            }
        }
    }
    if !quiet {
        let added: usize = reports.iter().map(|r| r.added()).sum();
        let there: usize = reports.iter().map(|r| r.already_there()).sum();
        println!("  {verb} {added}, already there {there}");
    }
}
