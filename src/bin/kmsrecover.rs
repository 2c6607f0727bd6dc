//! `kmsrecover`: restores exactly what is asked from a full + differential
//! chain, command-line compatible with Kerio's KMSRecover, and safer: it
//! refuses while the mail server runs, shows its plan (`-l`, `--dry-run`),
//! saves what it will replace as a `C` archive first, and swaps each
//! restored root in atomically. A thin main over `mailvault-recover`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use mailvault::backup::{self, BackupOptions};
use mailvault_formats::{ArchiveKind, ByteSize};
use mailvault_recover::apply::{self, ApplyOptions};
use mailvault_recover::chain::{self, Chain, Pick};
use mailvault_recover::plan::{self, RestorePlan, Targets};
use mailvault_recover::select::{Part, RestoreRequest, Selection};
use mailvault_recover::source::LocalDir;

const AFTER_HELP: &str = "\
Examples:
  kmsrecover /opt/kerio/mailserver/store/backup                 # everything, newest backup (server stopped)
  kmsrecover -d example.com -u john -l /mnt/backup             # list John's folders with item counts
  kmsrecover -d example.com -u john -f INBOX /mnt/backup        # replace John's INBOX with its backed-up state
  kmsrecover -d example.com -u john -f INBOX --as-folder 'Restored 2026-11-20' /mnt/backup
  kmsrecover -m cfg,license,sslca,sslcert /mnt/backup/F20261122T010000Z.zip
  kmsrecover --at 2026-11-20T12:00:00Z --into /tmp/old /mnt/backup
  kmsrecover --dry-run /mnt/backup                              # what would be written and removed

Mask parts (-m): cfg (mailserver.cfg, users.cfg), mail, lists, public, license, sslca, sslcert, spam.

Exit codes:
  0  restored (or listed)
  1  error: nothing live was changed (or, during the swap, each folder is old or new: run again)
  2  usage error
  3  --salvage restored what was intact; some files could not be restored (listed)
  6  the mail server is running (use --force if you are sure)";

/// Restore mail, configuration, licences and certificates from mailvault / Kerio backups.
#[derive(Debug, Parser)]
#[command(name = "kmsrecover", version, about, after_help = AFTER_HELP)]
struct Args {
    /// A backup directory (the newest backup in it is restored) or an archive (for several volumes, any of them).
    source: PathBuf,
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
    /// Restore the folder (-d -u -f) as a new folder with this name beside the live ones.
    #[arg(long, value_name = "NAME", requires = "folder")]
    as_folder: Option<String>,
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

const EXIT_SALVAGED: u8 = 3;
const EXIT_RUNNING: u8 = 6;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            report::error(&err);
            if matches!(
                err.downcast_ref::<mailvault_recover::Error>(),
                Some(mailvault_recover::Error::ServerRunning(_))
            ) {
                ExitCode::from(EXIT_RUNNING)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (dir, pick) = if a.source.is_dir() {
        (
            a.source.clone(),
            a.at.map_or(Pick::Newest, |t| Pick::At(t.with_timezone(&chrono::Utc))),
        )
    } else {
        let file = a
            .source
            .file_name()
            .and_then(|f| f.to_str())
            .context("the archive name is not UTF-8")?
            .to_string();
        let dir = a
            .source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        (dir, Pick::Archive(file))
    };
    let src = LocalDir::new(&dir);
    // Held to the end: no rotation deletes the chain while it is read.
    let _lock = mailvault::repo::BackupDir::new(&dir).lock_shared()?;
    let chain = chain::resolve(&src, pick, a.salvage)?;
    let mask = a
        .mask
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|w| Part::parse(w))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let req = RestoreRequest {
        domain: a.domain.clone(),
        user: a.user.clone(),
        folder: a.folder.clone(),
        mask,
    };

    if a.list {
        return list(&chain, &req, a.json);
    }
    let sel = Selection::new(&req, &chain)?;
    let mut targets = match &a.into {
        Some(into) => {
            if into.exists() && std::fs::read_dir(into)?.next().is_some() {
                anyhow::bail!(
                    "`{}` is not empty: --into needs an empty or new directory",
                    into.display()
                );
            }
            Targets::install(into)
        }
        None => {
            let mut t = Targets::install(&a.install_dir);
            if let Some(s) = &a.store {
                t.store_dir.clone_from(s);
            }
            if let Some(c) = &a.cfgdir {
                t.cfg_dir.clone_from(c);
            }
            t
        }
    };
    if let Some(name) = &a.as_folder {
        let (Some(d), Some(u), Some(f)) = (&a.domain, &a.user, &a.folder) else {
            anyhow::bail!("--as-folder needs -d, -u and -f");
        };
        let from = format!("store/mail/{d}/{u}/{f}");
        let parent = Path::new(f)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty());
        let to = match parent {
            Some(p) => format!("store/mail/{d}/{u}/{p}/{name}"),
            None => format!("store/mail/{d}/{u}/{name}"),
        };
        if targets.dest(&to)?.exists() {
            anyhow::bail!(
                "folder `{name}` already exists in {u}@{d}: choose another --as-folder name"
            );
        }
        targets.rename = Some((from, to));
    }
    let p = plan::plan(&chain, &sel, &targets)?;
    if a.dry_run {
        print_plan(&chain, &p, a.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let live = a.into.is_none() && a.as_folder.is_none();
    if live
        && !a.force
        && let Some(why) = server_running(a.running_check.as_deref(), a.pid_file.as_deref())?
    {
        return Err(mailvault_recover::Error::ServerRunning(why).into());
    }
    let t0 = std::time::Instant::now();
    let mut safety: Option<String> = None;
    let take_copy = live
        && !a.no_safety_copy
        && (!p.writes.iter().all(|w| !w.replace) || !p.deletes.is_empty());
    // Not the backup directory itself: a partial copy there would become its newest "full".
    let safety_dir = a
        .safety_dir
        .clone()
        .unwrap_or_else(|| dir.join("safety-copies"));
    let mut before_swap = |plan: &RestorePlan| -> mailvault_recover::Result<()> {
        if !take_copy {
            return Ok(());
        }
        let s = safety_copy(&targets, plan, &safety_dir, &chain).map_err(|e| {
            mailvault_recover::Error::Request(format!(
                "safety copy failed, nothing was changed: {e}"
            ))
        })?;
        safety = Some(s);
        Ok(())
    };
    let drawing = progress::Drawer::new(a.quiet || a.json);
    let summary = apply::apply(
        &src,
        &chain,
        &p,
        ApplyOptions { salvage: a.salvage },
        &drawing,
        &mut before_swap,
    )?;
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        #[derive(serde::Serialize)]
        struct J<'a> {
            chain: Vec<String>,
            #[serde(flatten)]
            summary: &'a apply::ApplySummary,
            safety_copy: Option<String>,
            seconds: f64,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&J {
                chain: chain_names(&chain),
                summary: &summary,
                safety_copy: safety,
                seconds: secs
            })?
        );
    } else if !a.quiet {
        println!("restored from {}", chain_names(&chain).join(" + "));
        println!(
            "  written:   {} files, {}",
            summary.written,
            ByteSize(summary.bytes)
        );
        println!("  deleted:   {} files", summary.deleted);
        println!("  unchanged: {} files", summary.unchanged);
        println!("  time:      {secs:.1}s");
        for r in &summary.roots {
            println!("  replaced:  {r}");
        }
        if let Some(s) = &safety {
            println!("  safety copy: {s} (undo: kmsrecover with the same options on this archive)");
        }
        for n in &summary.not_restored {
            println!("  NOT restored: {} ({})", n.path, n.reason);
        }
    }
    Ok(if summary.not_restored.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SALVAGED)
    })
}

fn chain_names(c: &Chain) -> Vec<String> {
    std::iter::once(&c.full)
        .chain(c.differential.as_ref())
        .map(|s| s.name.to_string())
        .collect()
}

/// Saves the current state of every root that will change as a `C` archive.
fn safety_copy(
    targets: &Targets,
    plan: &RestorePlan,
    dir: &Path,
    chain: &Chain,
) -> anyhow::Result<String> {
    let mut opts = BackupOptions::new(ArchiveKind::Copy, &targets.cfg_dir);
    opts.store_dir = Some(targets.store_dir.clone());
    opts.backup_dir = dir.to_path_buf();
    opts.only = Some(
        plan.roots
            .iter()
            .filter(|r| r.changes)
            .map(|r| r.rel.clone())
            .collect(),
    );
    opts.notes = vec![format!(
        "safety copy taken by kmsrecover before restoring {} from {}",
        opts.only.as_ref().map(|o| o.join(", ")).unwrap_or_default(),
        chain_names(chain).join(" + ")
    )];
    let s = backup::run_backup(&opts, &mailvault::NoProgress)?;
    Ok(s.volumes
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or(s.archive))
}

/// Whether the mail server runs: `check` exits 0, the pid file names a live
/// process, or (by default) a process named `mailserver` exists.
fn server_running(check: Option<&str>, pid_file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(pf) = pid_file {
        let pid = std::fs::read_to_string(pf)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        return Ok(pid
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .map(|p| format!("pid file `{}` names live process {p}", pf.display())));
    }
    if let Some(cmd) = check {
        let st = std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .with_context(|| format!("cannot run --running-check `{cmd}`"))?;
        return Ok(st.success().then(|| format!("`{cmd}` says so")));
    }
    for e in std::fs::read_dir("/proc")?.flatten() {
        if let Ok(comm) = std::fs::read_to_string(e.path().join("comm"))
            && comm.trim() == "mailserver"
        {
            return Ok(Some(format!(
                "process `mailserver`, pid {}",
                e.file_name().to_string_lossy()
            )));
        }
    }
    Ok(None)
}

fn print_plan(chain: &Chain, p: &RestorePlan, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(p)?);
        return Ok(());
    }
    println!(
        "dry run: restoring from {}, nothing changed",
        chain_names(chain).join(" + ")
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
    println!("  delete:  {} files", p.deletes.len());
    for d in p.deletes.iter().take(50) {
        println!("           {}", d.display());
    }
    println!("  same:    {} files already as backed up", p.unchanged);
    Ok(())
}

/// `-l`: domains, users of a domain, or folders of a user, from the catalog alone.
fn list(chain: &Chain, req: &RestoreRequest, json: bool) -> anyhow::Result<ExitCode> {
    use std::collections::BTreeMap;
    let state = chain.state()?;
    let mut rows: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for f in &state {
        let Some(m) = mailvault_formats::layout::MailboxPath::parse(&f.entry.path) else {
            continue;
        };
        let key = match (&req.domain, &req.user) {
            (None, _) => m.domain.to_string(),
            (Some(d), None) if m.domain == d => m.mailbox.to_string(),
            (Some(d), Some(u)) if m.domain == d && m.mailbox == u => {
                match m.rest.split_once("/#msgs/") {
                    Some((folder, _)) => folder.to_string(),
                    None => continue,
                }
            }
            _ => continue,
        };
        let is_item = f.entry.path.contains("/#msgs/");
        let r = rows.entry(key).or_default();
        r.0 += u64::from(is_item);
        r.1 += f.entry.size;
    }
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(k, (n, b))| serde_json::json!({"name": k, "items": n, "bytes": b}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let what = match (&req.domain, &req.user) {
            (None, _) => "DOMAIN",
            (Some(_), None) => "MAILBOX",
            _ => "FOLDER",
        };
        println!("backup: {}", chain_names(chain).join(" + "));
        println!("{what:<40} {:>8} {:>11}", "ITEMS", "SIZE");
        for (k, (n, b)) in &rows {
            println!("{k:<40} {n:>8} {:>11}", ByteSize(*b).to_string());
        }
    }
    Ok(ExitCode::SUCCESS)
}
