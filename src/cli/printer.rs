//! All output of the `mailvault` binary: human text on stdout, `--json` as
//! one JSON document on stdout, errors and hints on stderr.

use std::fmt::Write as _;

use mailvault::backup::{Action, BackupPlan, BackupSummary};
use mailvault::rotation::RotationPlan;
use mailvault::schedule::{DueRun, ScheduleStatus};
use mailvault_formats::ByteSize;
use mailvault_repo::ProblemKind;
use mailvault_repo::chain::group;
use mailvault_repo::check::VerifyReport;
use mailvault_repo::repository::Listing;
use mailvault_repo::set::{SetInfo, SetStatus};
use serde::Serialize;

/// Prints a value as pretty JSON.
pub fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A key file and its id (`key generate`, `key show`); never the key.
pub fn key_info(
    info: &mailvault_repo::crypt::KeyInfo,
    generated: bool,
    json_out: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if json_out {
        return json(info);
    }
    if quiet {
        return Ok(());
    }
    if generated {
        println!("key written to {} (mode 0600)", info.file.display());
        println!("key id: {}", info.key_id);
        println!("keep a copy of this file off the server: without it the backups cannot be read");
    } else {
        println!("key id: {}", info.key_id);
        println!("file:   {}", info.file.display());
    }
    Ok(())
}

/// The result of `encrypt` / `decrypt`.
pub fn crypt_summary(
    s: &mailvault_repo::crypt::CryptSummary,
    verb: &str,
    json_out: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if json_out {
        return json(s);
    }
    if !quiet {
        println!(
            "{verb} {} -> {} with key {}: {} plaintext, {} encrypted, {} chunks",
            s.input.display(),
            s.output.display(),
            s.key_id,
            ByteSize(s.plain_bytes),
            ByteSize(s.encrypted_bytes),
            s.chunks
        );
    }
    Ok(())
}

/// Output size as a share of input, when that means something: a small
/// differential's archive is mostly headers and catalog, and "4075%" would
/// only mislead.
fn ratio(i: u64, o: u64) -> String {
    if i == 0 || o > i {
        "-".into()
    } else {
        format!("{:.0}% of the input", 100.0 * o as f64 / i as f64)
    }
}

/// The end-of-backup summary.
pub fn backup_summary(s: &BackupSummary) {
    let mut out = String::new();
    let _ = writeln!(out, "{} backup written: {}", s.kind, s.archive);
    if s.kind != s.requested {
        let _ = writeln!(out, "  (requested: {})", s.requested);
    }
    if let Some(b) = &s.base {
        let _ = writeln!(
            out,
            "  base full:   {b} ({} files unchanged, {} deleted since)",
            s.unchanged, s.deleted
        );
    }
    let _ = writeln!(out, "  volumes:     {}", s.volumes.len());
    for v in &s.volumes {
        let _ = writeln!(out, "               {}", v);
    }
    let _ = writeln!(
        out,
        "  stored:      {} files, {} in, {} out ({}), {:.1}s, {}/s",
        s.files,
        ByteSize(s.bytes_in),
        ByteSize(s.bytes_out),
        ratio(s.bytes_in, s.bytes_out),
        s.seconds,
        ByteSize((s.bytes_in as f64 / s.seconds.max(0.001)) as u64)
    );
    let _ = writeln!(out, "  state:       {} files", s.state_files);
    for n in &s.notes {
        let _ = writeln!(out, "  note:        {n}");
    }
    if !s.skipped.is_empty() {
        let _ = writeln!(out, "  skipped:     {}", s.skipped.len());
        for k in s.skipped.iter().take(20) {
            let _ = writeln!(out, "               {} {}", k.reason, k.path);
        }
        if s.skipped.len() > 20 {
            let _ = writeln!(
                out,
                "               ... and {} more (see .summary.txt)",
                s.skipped.len() - 20
            );
        }
    }
    if !s.removed_leftovers.is_empty() {
        let _ = writeln!(
            out,
            "  cleaned:     {} leftover(s) of interrupted runs",
            s.removed_leftovers.len()
        );
    }
    for d in &s.rotation.delete {
        let _ = writeln!(
            out,
            "  rotated out: {} ({}, {})",
            d.stem,
            ByteSize(d.bytes),
            d.reason
        );
    }
    print!("{out}");
}

/// JSON form of a plan.
#[derive(Serialize)]
pub struct PlanJson<'a> {
    archive: String,
    #[serde(rename = "type")]
    kind: String,
    requested: String,
    base: Option<&'a str>,
    store_files: u64,
    store_bytes: u64,
    unchanged_files: u64,
    deleted: Vec<&'a str>,
    skipped: Vec<mailvault::backup::SkippedItem>,
    notes: &'a [String],
    items: Vec<PlanItemJson<'a>>,
}

/// One planned file.
#[derive(Serialize)]
pub struct PlanItemJson<'a> {
    path: &'a str,
    size: u64,
    action: &'static str,
}

/// The `--dry-run` plan.
pub fn plan(p: &BackupPlan, as_json: bool) -> anyhow::Result<()> {
    let (files, bytes) = p.to_store();
    if as_json {
        return json(&PlanJson {
            archive: p.name.to_string(),
            kind: p.name.kind.to_string(),
            requested: p.requested.to_string(),
            base: p.base.as_ref().map(|b| b.stem.as_str()),
            store_files: files,
            store_bytes: bytes,
            unchanged_files: p.unchanged(),
            deleted: p.deleted.iter().map(|d| d.path.as_str()).collect(),
            skipped: p.skipped.iter().map(Into::into).collect(),
            notes: &p.notes,
            items: p
                .items
                .iter()
                .map(|i| PlanItemJson {
                    path: &i.file.rel,
                    size: i.file.size,
                    action: if i.action == Action::Store {
                        "store"
                    } else {
                        "unchanged"
                    },
                })
                .collect(),
        });
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dry run: would write {} ({}), nothing written",
        p.name, p.name.kind
    );
    if let Some(b) = &p.base {
        let _ = writeln!(out, "  base full: {}", b.stem);
    }
    let _ = writeln!(out, "  store:     {files} files, {}", ByteSize(bytes));
    let _ = writeln!(
        out,
        "  unchanged: {} files (left in the base full)",
        p.unchanged()
    );
    let _ = writeln!(
        out,
        "  deleted:   {} files since the base full",
        p.deleted.len()
    );
    for d in p.deleted.iter().take(20) {
        let _ = writeln!(out, "             {}", d.path);
    }
    for n in &p.notes {
        let _ = writeln!(out, "  note:      {n}");
    }
    for s in &p.skipped {
        let _ = writeln!(out, "  skip:      {} {}", s.reason, s.path);
    }
    print!("{out}");
    Ok(())
}

/// JSON form of one set in `list`.
#[derive(Serialize)]
pub struct SetJson {
    archive: String,
    #[serde(rename = "type")]
    kind: String,
    started: String,
    base: Option<String>,
    volumes: usize,
    bytes: u64,
    files: Option<u64>,
    status: String,
    in_future: bool,
}

fn set_json(i: &SetInfo) -> SetJson {
    SetJson {
        archive: i.set.name.to_string(),
        kind: i.set.name.kind.to_string(),
        started: mailvault_formats::version::format_time(i.set.name.started),
        base: i.base().map(str::to_string),
        volumes: i.set.volumes.len(),
        bytes: i.bytes,
        files: i
            .summary
            .as_ref()
            .and_then(|s| s.totals.as_ref())
            .map(|t| t.files),
        status: i.status.to_string(),
        in_future: i.in_future,
    }
}

/// JSON form of a chain.
#[derive(Serialize)]
pub struct ChainJson {
    full: SetJson,
    differentials: Vec<SetJson>,
}

/// `mailvault list`.
/// `busy`: who holds the repository for writing right now (its temporaries
/// are then work in progress, not leftovers).
pub fn list(l: &Listing, busy: Option<&str>, as_json: bool) -> anyhow::Result<()> {
    let c = group(l.sets.clone());
    let leftovers = l.leftovers();
    let future: Vec<&SetInfo> = l.sets.iter().filter(|s| s.in_future).collect();
    if as_json {
        #[derive(Serialize)]
        struct L<'a> {
            chains: Vec<ChainJson>,
            orphans: Vec<SetJson>,
            not_backups: Vec<SetJson>,
            leftovers: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            in_use_by: Option<&'a str>,
        }
        return json(&L {
            chains: c
                .chains
                .iter()
                .map(|ch| ChainJson {
                    full: set_json(&ch.base),
                    differentials: ch.differentials.iter().map(set_json).collect(),
                })
                .collect(),
            orphans: c.orphans.iter().map(set_json).collect(),
            not_backups: c
                .other
                .iter()
                .filter(|s| matches!(s.status, SetStatus::Foreign(_)))
                .map(set_json)
                .collect(),
            leftovers: &leftovers,
            in_use_by: busy,
        });
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<13} {:<21} {:>7} {:>11} {:>9}  STATUS",
        "CHAIN", "TYPE", "STARTED (UTC)", "VOLUMES", "SIZE", "FILES"
    );
    let row = |out: &mut String, chain: &str, i: &SetInfo| {
        let j = set_json(i);
        let files = j.files.map_or_else(|| "-".to_string(), |f| f.to_string());
        let future = if j.in_future {
            " (dated in the future)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{chain:<6} {:<13} {:<21} {:>7} {:>11} {files:>9}  {}{future}",
            j.kind,
            j.started,
            j.volumes,
            ByteSize(j.bytes).to_string(),
            j.status
        );
    };
    for (n, ch) in c.chains.iter().enumerate() {
        row(&mut out, &(n + 1).to_string(), &ch.base);
        for d in &ch.differentials {
            row(&mut out, "", d);
        }
    }
    for o in &c.orphans {
        row(&mut out, "orphan", o);
    }
    for o in c
        .other
        .iter()
        .filter(|s| matches!(s.status, SetStatus::Foreign(_)))
    {
        row(&mut out, "-", o);
    }
    if c.chains.is_empty() && c.orphans.is_empty() {
        let _ = writeln!(out, "(no backups)");
    }
    if let Some(holder) = busy {
        let _ = writeln!(
            out,
            "in use by another run: {holder}; what it is writing is not a backup yet{}",
            if leftovers.is_empty() {
                String::new()
            } else {
                format!(" ({})", leftovers.join(", "))
            }
        );
    } else if !leftovers.is_empty() {
        let _ = writeln!(
            out,
            "leftovers of interrupted runs (not backups; the next backup or rotation removes them): {}",
            leftovers.join(", ")
        );
    }
    print!("{out}");
    for f in future {
        eprintln!(
            "warning: {} is dated in the future: a wrong clock when it was written, or a stray file; restores pass it over unless it is named",
            f.set.name
        );
    }
    Ok(())
}

/// `mailvault verify`.
pub fn verify(r: &VerifyReport, as_json: bool, quiet: bool) -> anyhow::Result<()> {
    if as_json {
        return json(r);
    }
    for s in &r.sets {
        if s.problems.is_empty() {
            if !quiet {
                println!(
                    "ok       {}: {} volume(s), {} entries, {} checked",
                    s.archive,
                    s.volumes,
                    s.entries,
                    ByteSize(s.bytes)
                );
            }
        } else {
            println!("DAMAGED  {}: {} problem(s)", s.archive, s.problems.len());
            for p in &s.problems {
                println!("         {p}");
            }
        }
    }
    if !r.leftovers.is_empty() && !quiet {
        println!(
            "leftover {} file(s) of interrupted runs (not damage; the next backup or rotation removes them)",
            r.leftovers.len()
        );
    }
    Ok(())
}

/// What to do about the problems `verify` found.
#[must_use]
pub fn verify_hint(r: &VerifyReport) -> String {
    let kinds: Vec<ProblemKind> = r.problems().map(|p| p.kind).collect();
    if kinds.iter().all(|k| *k == ProblemKind::Foreign) {
        return "files named like backups that are not backups: move them out of the backup directory".into();
    }
    if kinds.iter().all(|k| *k == ProblemKind::Missing) {
        return "copy the missing volumes (or a differential's base full) back into the directory; \
                until then restore from another chain (kmsrecover --at, or an archive file), or take a new full backup"
            .into();
    }
    "take a new full backup now; to get back what a damaged archive still holds, run kmsrecover --salvage on it".into()
}

/// `mailvault rotate`.
pub fn rotation(
    p: &RotationPlan,
    removed: &[String],
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if as_json {
        #[derive(Serialize)]
        struct R<'a> {
            #[serde(flatten)]
            plan: &'a RotationPlan,
            removed_leftovers: &'a [String],
        }
        return json(&R {
            plan: p,
            removed_leftovers: removed,
        });
    }
    if quiet {
        return Ok(());
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    if !removed.is_empty() {
        println!("removed {} leftover(s) of interrupted runs", removed.len());
    }
    if p.delete.is_empty() {
        println!("nothing to delete; {} set(s) kept", p.keep.len());
    }
    for d in &p.delete {
        println!(
            "{verb} {} ({} volume(s), {}): {}",
            d.stem,
            d.volumes.len(),
            ByteSize(d.bytes),
            d.reason
        );
    }
    Ok(())
}

/// `mailvault schedule list`.
pub fn schedules(list: &[ScheduleStatus], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&list);
    }
    println!(
        "{:<22} {:<13} {:<14} {:<27} LAST RUN",
        "NAME", "TYPE", "CRON", "NEXT RUN"
    );
    for s in list {
        let next = if s.enabled {
            s.next_run.clone().unwrap_or_else(|| "-".into())
        } else {
            "disabled".into()
        };
        println!(
            "{:<22} {:<13} {:<14} {:<27} {}",
            s.name,
            s.kind,
            s.cron,
            next,
            s.last_run.as_deref().unwrap_or("never")
        );
    }
    Ok(())
}

/// `mailvault schedule run-due`.
pub fn due_runs(runs: &[DueRun], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&runs);
    }
    if runs.is_empty() {
        println!("nothing due");
    }
    for r in runs {
        match (&r.summary, &r.error) {
            (Some(s), _) => {
                println!("schedule `{}` (slot {}):", r.name, r.slot);
                backup_summary(s);
            }
            (None, Some(e)) => println!("schedule `{}` (slot {}) FAILED: {e}", r.name, r.slot),
            _ => {}
        }
    }
    Ok(())
}
