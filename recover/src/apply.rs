//! Carries out a [`RestorePlan`] so that a crash at any moment leaves every
//! root (folder, mailbox, domain, config file) either as it was or as
//! restored, never mixed, and a re-run converges:
//!
//! 1. **stage**: each root with changes is built complete beside itself as
//!    `.kmsrecover-new-<name>`: files that stay are hard-linked from the live
//!    tree, files to write are extracted from the archives with their CRC-32
//!    checked and their mtime set; nothing live is touched yet;
//! 2. the caller's `before_swap` hook runs (the safety copy);
//! 3. **swap**: the filesystem is synced, then each staged root is exchanged
//!    with the live one in one atomic `renameat2(RENAME_EXCHANGE)` (or renamed
//!    into place when the root did not exist), and the old tree is removed.
//!
//! Leftover `.kmsrecover-*` directories of an interrupted run are removed
//! before staging.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use mailvault_formats::Mtime;
use mailvault_formats::layout::entry_name;
use serde::Serialize;

use crate::chain::{Chain, open_volume};
use crate::error::{Error, Result};
use crate::plan::{RestorePlan, Root, Write};
use crate::progress::Progress;
use crate::source::ArchiveSource;

/// Prefix of staging directories and files.
pub const STAGING_PREFIX: &str = ".kmsrecover-";

/// Options of [`apply`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Restore what is intact and list what is not, instead of stopping at the first damaged entry.
    pub salvage: bool,
}

/// A file that could not be restored (with `--salvage`).
#[derive(Debug, Clone, Serialize)]
pub struct NotRestored {
    /// Install-relative path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplySummary {
    /// Files written.
    pub written: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files deleted.
    pub deleted: u64,
    /// Files already identical.
    pub unchanged: u64,
    /// Roots swapped in.
    pub roots: Vec<String>,
    /// With `--salvage`: what could not be restored.
    pub not_restored: Vec<NotRestored>,
}

fn staging_path(dest: &Path, what: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!("{STAGING_PREFIX}{what}-{name}"))
}

/// Removes leftovers of interrupted restores beside the roots.
fn remove_leftovers(roots: &[Root]) -> Result<()> {
    for r in roots {
        for what in ["new", "old"] {
            let p = staging_path(&r.dest, what);
            if let Ok(meta) = fs::symlink_metadata(&p) {
                if meta.is_dir() {
                    fs::remove_dir_all(&p).map_err(Error::io("cannot remove leftover", &p))?;
                } else {
                    fs::remove_file(&p).map_err(Error::io("cannot remove leftover", &p))?;
                }
            }
        }
    }
    Ok(())
}

/// Carries out `plan`. `before_swap` runs after everything is staged and
/// before the first live change (it takes the safety copy).
///
/// # Errors
/// Damaged entries (without `salvage`), I/O errors. Before the swap nothing
/// live has changed; during the swap each root is old or new.
pub fn apply(
    src: &dyn ArchiveSource,
    chain: &Chain,
    plan: &RestorePlan,
    opts: ApplyOptions,
    progress: &dyn Progress,
    before_swap: &mut dyn FnMut(&RestorePlan) -> Result<()>,
) -> Result<ApplySummary> {
    let mut summary = ApplySummary {
        unchanged: plan.unchanged,
        ..ApplySummary::default()
    };
    remove_leftovers(&plan.roots)?;
    let changed: Vec<&Root> = plan.roots.iter().filter(|r| r.changes).collect();

    // 1. Stage: mirror kept files by hard link, then extract.
    let deletes: std::collections::HashSet<&Path> =
        plan.deletes.iter().map(PathBuf::as_path).collect();
    let replaced: std::collections::HashSet<&Path> =
        plan.writes.iter().map(|w| w.dest.as_path()).collect();
    for root in &changed {
        let new = staging_path(&root.dest, "new");
        if root.is_file {
            continue;
        }
        fs::create_dir_all(&new).map_err(Error::io("cannot create", &new))?;
        if root.dest.is_dir() {
            link_tree(&root.dest, &new, &|p| {
                !deletes.contains(p) && !replaced.contains(p)
            })?;
        }
    }
    let staged = |w: &Write| -> PathBuf {
        let root = changed
            .iter()
            .filter(|r| w.dest.starts_with(&r.dest))
            .max_by_key(|r| r.dest.as_os_str().len());
        match root {
            Some(r) if r.is_file => staging_path(&r.dest, "new"),
            Some(r) => {
                staging_path(&r.dest, "new").join(w.dest.strip_prefix(&r.dest).unwrap_or(&w.dest))
            }
            None => w.dest.clone(),
        }
    };
    progress.start("restoring", plan.writes.len() as u64, plan.bytes);
    let mut by_volume: BTreeMap<(u8, u32), Vec<&Write>> = BTreeMap::new();
    for w in &plan.writes {
        by_volume.entry((w.set, w.volume)).or_default().push(w);
    }
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    for ((set, volume), writes) in by_volume {
        let meta = chain.set(set);
        let Some(vol_name) = meta.volumes.get(&volume) else {
            let e = Error::MissingVolume {
                stem: meta.stem(),
                volume,
                name: meta.name.with_volume(volume).to_string(),
            };
            if !opts.salvage {
                remove_leftovers(&plan.roots)?;
                return Err(e);
            }
            summary
                .not_restored
                .extend(writes.iter().map(|w| NotRestored {
                    path: w.rel.clone(),
                    reason: e.to_string(),
                }));
            continue;
        };
        // Contiguous runs of entries per worker, each with its own reader, so
        // every worker reads the volume front to back. Small sets stay on one thread.
        let workers = if writes.len() < 256 { 1 } else { threads };
        let chunk = writes.len().div_ceil(workers).max(1);
        let results: Vec<Result<Extracted>> = std::thread::scope(|s| {
            let handles: Vec<_> = writes
                .chunks(chunk)
                .map(|part| {
                    s.spawn(|| extract_run(src, vol_name, part, &staged, opts.salvage, progress))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Request(
                            "internal: an extraction worker panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        for r in results {
            match r {
                Ok(x) => {
                    summary.written += x.written;
                    summary.bytes += x.bytes;
                    summary.not_restored.extend(x.not_restored);
                }
                Err(e) => {
                    remove_leftovers(&plan.roots)?;
                    return Err(e);
                }
            }
        }
    }

    progress.finish();
    // A folder that could not be restored whole gets its index rebuilt the
    // Kerio way: index.fld renamed to index.bad. Folders restored whole keep
    // the index.fld from the archive.
    for n in &summary.not_restored {
        if let Some((folder, _)) = n.path.split_once("/#msgs/")
            && let Some(w) = plan.writes.iter().find(|w| w.rel == n.path)
        {
            let staged_msg = staged(w);
            let depth = n.path[folder.len()..].matches('/').count();
            let staged_folder = staged_msg.ancestors().nth(depth).map(Path::to_path_buf);
            if let Some(f) = staged_folder {
                let _ = fs::rename(f.join("index.fld"), f.join("index.bad"));
            }
        }
    }

    // 2. The caller's last word before anything live changes.
    if let Err(e) = before_swap(plan) {
        remove_leftovers(&plan.roots)?;
        return Err(e);
    }

    // 3. Swap. Before live data is replaced, the staged data must be on disk:
    // otherwise a power cut right after the exchange could lose both the old
    // and the new state. Roots placed where nothing was (--into, a deleted
    // mailbox) replace nothing, so they need no sync.
    if let Some(live) = changed
        .iter()
        .find(|r| fs::symlink_metadata(&r.dest).is_ok())
    {
        sync_fs(&live.dest);
    }
    for root in plan.roots.iter().filter(|r| r.changes) {
        let new = staging_path(&root.dest, "new");
        let staged_exists = fs::symlink_metadata(&new).is_ok();
        if root.is_file && !staged_exists {
            // The file is deleted by the restore.
            fs::remove_file(&root.dest).map_err(Error::io("cannot delete", &root.dest))?;
        } else if fs::symlink_metadata(&root.dest).is_ok() && !root.is_file {
            exchange(&new, &root.dest)?;
            fs::remove_dir_all(&new).map_err(Error::io("cannot remove the old tree", &new))?;
        } else {
            if let Some(parent) = root.dest.parent() {
                fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
            }
            fs::rename(&new, &root.dest)
                .map_err(Error::io("cannot move into place", &root.dest))?;
        }
        summary.roots.push(root.rel.clone());
    }
    summary.deleted = plan.deletes.len() as u64;
    Ok(summary)
}

/// What one extraction worker did.
#[derive(Default)]
struct Extracted {
    written: u64,
    bytes: u64,
    not_restored: Vec<NotRestored>,
}

/// Extracts a run of entries of one volume with its own reader and buffer.
fn extract_run(
    src: &dyn ArchiveSource,
    vol_name: &str,
    writes: &[&Write],
    staged: &(dyn Fn(&Write) -> PathBuf + Sync),
    salvage: bool,
    progress: &dyn Progress,
) -> Result<Extracted> {
    let mut out = Extracted::default();
    let mut zip = match open_volume(src, vol_name) {
        Ok(z) => z,
        Err(e) if salvage => {
            out.not_restored.extend(writes.iter().map(|w| NotRestored {
                path: w.rel.clone(),
                reason: e.to_string(),
            }));
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut made_dir: Option<PathBuf> = None;
    for w in writes {
        let target = staged(w);
        if let Some(parent) = target.parent()
            && made_dir.as_deref() != Some(parent)
        {
            fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
            made_dir = Some(parent.to_path_buf());
        }
        match extract(&mut zip, src, vol_name, w, &target, &mut buf) {
            Ok(()) => {
                out.written += 1;
                out.bytes += w.size;
                progress.inc(1, w.size);
            }
            Err(e) if salvage => {
                let _ = fs::remove_file(&target);
                // Keep the live file, if any, rather than lose it.
                if w.replace {
                    let _ = fs::hard_link(&w.dest, &target);
                }
                out.not_restored.push(NotRestored {
                    path: w.rel.clone(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Mirrors `from` into `to`: directories recreated, files hard-linked when `keep` says so.
fn link_tree(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<()> {
    for e in fs::read_dir(from).map_err(Error::io("cannot list", from))? {
        let e = e.map_err(Error::io("cannot list", from))?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with(STAGING_PREFIX) {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        let t = e.file_type().map_err(Error::io("cannot stat", &src))?;
        if t.is_dir() {
            fs::create_dir_all(&dst).map_err(Error::io("cannot create", &dst))?;
            link_tree(&src, &dst, keep)?;
        } else if keep(&src) {
            fs::hard_link(&src, &dst).map_err(Error::io("cannot link", &dst))?;
        }
    }
    Ok(())
}

/// Extracts one entry to `target`, checking size and CRC-32 against the catalog.
fn extract(
    zip: &mut zip::ZipArchive<Box<dyn crate::source::ReadSeek>>,
    src: &dyn ArchiveSource,
    vol: &str,
    w: &Write,
    target: &Path,
    buf: &mut [u8],
) -> Result<()> {
    let damaged = |reason: String| Error::Damaged {
        archive: src.describe(vol),
        reason,
    };
    let name = entry_name(&w.rel);
    let idx = zip
        .index_for_name(&name)
        .or_else(|| zip.index_for_name(&w.rel));
    let Some(idx) = idx else {
        return Err(damaged(format!(
            "entry `{name}` listed in the catalog is missing"
        )));
    };
    let mut entry = zip
        .by_index(idx)
        .map_err(|e| damaged(format!("entry `{name}`: {e}")))?;
    let mut out = fs::File::create(target).map_err(Error::io("cannot create", target))?;
    let mut h = crc32fast::Hasher::new();
    let mut size = 0u64;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(damaged(format!("entry `{name}`: {e}"))),
        };
        h.update(&buf[..n]);
        size += n as u64;
        out.write_all(&buf[..n])
            .map_err(Error::io("cannot write", target))?;
    }
    let crc = h.finalize();
    if crc != w.crc32 || size != w.size {
        return Err(damaged(format!(
            "entry `{name}`: catalog says {} bytes crc {:08x}, archive gave {size} bytes crc {crc:08x}",
            w.size, w.crc32
        )));
    }
    let t = Mtime {
        secs: w.mtime.0,
        nanos: w.mtime.1,
    }
    .to_system();
    out.set_modified(t)
        .map_err(Error::io("cannot set mtime", target))?;
    Ok(())
}

/// Atomically exchanges two paths (renameat2 RENAME_EXCHANGE); where the
/// filesystem cannot, falls back to two renames, which a re-run completes.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(_) => {
            let old = staging_path(b, "old");
            fs::rename(b, &old).map_err(Error::io("cannot move aside", b))?;
            fs::rename(a, b).map_err(Error::io("cannot move into place", b))?;
            fs::rename(&old, a).map_err(Error::io("cannot move aside", a))
        }
    }
}

/// Makes staged data durable before it is swapped in.
fn sync_fs(p: &Path) {
    let dir = if p.is_dir() {
        p
    } else {
        p.parent().unwrap_or(p)
    };
    if let Ok(f) = fs::File::open(dir) {
        let _ = rustix::fs::syncfs(&f);
    }
}
