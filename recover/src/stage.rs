//! Carries out a [`RestorePlan`] so that a crash at any moment leaves every
//! root (folder, mailbox, domain, config file) either as it was or as
//! restored, never mixed, and a re-run converges:
//!
//! 1. **stage**: each root with changes is built complete in a staging area
//!    where the mail server never looks (`<store>/.kmsrecover-staging/`,
//!    `<install>/.kmsrecover-staging/`): files that stay are hard-linked from
//!    the live tree (directories only where something lands in them, so
//!    folders the backup did not have vanish), files to write are extracted
//!    through the chain reader with size and CRC-32 checked and their mtime
//!    set; nothing live is touched yet;
//! 2. the caller's hook runs (the safety copy);
//! 3. **swap**: the filesystem is synced, then each staged root is exchanged
//!    with the live one in one `renameat2(RENAME_EXCHANGE)` (or renamed into
//!    place when the root did not exist), and the old tree is removed.
//!
//! The install's restore lock (`.kmsrecover.lock`) keeps two restores apart;
//! whoever holds it first removes the staging areas an interrupted run left.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use mailvault_formats::Mtime;
use mailvault_repo::chain::{EntryError, RestoreChain, SetRole};
use mailvault_repo::progress::Progress;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::plan::{RestorePlan, Root, Write};
use crate::request::Destination;

pub use crate::request::{INTO_MARKER, LOCK_FILE, STAGING_DIR, is_ours};

/// A file that could not be restored.
#[derive(Debug, Clone, Serialize)]
pub struct NotRestored {
    /// Install-relative path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// A live file that appeared after the restore was planned (mail delivered
/// while it ran): never deleted; put back where it was or kept aside.
#[derive(Debug, Clone, Serialize)]
pub struct Arrived {
    /// Where it was.
    #[serde(serialize_with = "crate::serde_path::path")]
    pub path: PathBuf,
    /// Where it is now.
    #[serde(serialize_with = "crate::serde_path::path")]
    pub now: PathBuf,
}

/// What staging and swapping did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub written: u64,
    pub bytes: u64,
    pub roots: Vec<(String, PathBuf)>,
    pub not_restored: Vec<NotRestored>,
    pub index_bad: Vec<PathBuf>,
    pub arrived: Vec<Arrived>,
}

/// The write lock of an install (or `--into` directory): held by a restore
/// while staging and swapping, and by every mail tool that writes the live
/// store. The kernel drops it when its holder dies.
pub struct TargetLock {
    _file: fs::File,
}

impl TargetLock {
    /// Takes the lock of the install at `anchor` (creating the directory).
    ///
    /// # Errors
    /// [`Error::Busy`] naming the holder's pid, or I/O.
    pub fn take(anchor: &Path) -> Result<Self> {
        fs::create_dir_all(anchor).map_err(Error::io("cannot create", anchor))?;
        let path = anchor.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("cannot open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Busy {
                    path: anchor.to_path_buf(),
                    holder: fs::read_to_string(&path)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("cannot lock", &path)(e)),
        }
        // Best effort: the holder's pid, for the message above.
        let _ = fs::write(&path, format!("pid {}\n", std::process::id()));
        Ok(Self { _file: file })
    }
}

/// Takes the target's restore lock and removes what interrupted restores left.
pub(crate) fn lock_target(dest: &Destination, roots: &[Root]) -> Result<TargetLock> {
    let lock = TargetLock::take(dest.anchor())?;
    for area in [
        dest.cfg_dir.join(STAGING_DIR),
        dest.store_dir.join(STAGING_DIR),
    ] {
        remove_any(&area)?;
    }
    // Staging beside a root (older versions; a root on a filesystem of its own).
    for r in roots {
        if let (Some(parent), Some(name)) = (r.dest.parent(), r.dest.file_name()) {
            for what in ["new", "old"] {
                remove_any(&parent.join(format!(".kmsrecover-{what}-{}", name.to_string_lossy())))?;
            }
            remove_any(&parent.join(STAGING_DIR))?;
        }
    }
    Ok(lock)
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(p).map_err(Error::io("cannot remove leftover", p))
        }
        Ok(_) => fs::remove_file(p).map_err(Error::io("cannot remove leftover", p)),
        Err(_) => Ok(()),
    }
}

#[cfg(unix)]
fn device(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    p.ancestors()
        .find_map(|a| fs::metadata(a).ok())
        .map(|m| m.dev())
}

/// Where root `i` is staged: the staging area of the store or of the
/// install, or beside the root when it lies on another filesystem (a rename
/// cannot cross filesystems).
fn staging_path(dest: &Destination, root: &Root, i: usize) -> PathBuf {
    let anchor = if root.dest.starts_with(&dest.store_dir) {
        &dest.store_dir
    } else {
        &dest.cfg_dir
    };
    let parent = root.dest.parent().unwrap_or(anchor);
    if device(anchor) == device(parent) {
        anchor.join(STAGING_DIR).join(i.to_string())
    } else {
        parent.join(STAGING_DIR).join(format!("beside-{i}"))
    }
}

/// Stages, runs `before_swap`, swaps.
pub(crate) fn apply(
    chain: &RestoreChain,
    plan: &RestorePlan,
    dest: &Destination,
    progress: &dyn Progress,
    before_swap: &mut dyn FnMut() -> Result<()>,
) -> Result<Applied> {
    let mut done = Applied::default();
    let changed: Vec<(usize, &Root)> = plan
        .roots
        .iter()
        .enumerate()
        .filter(|(_, r)| r.changes)
        .collect();
    let staged_root: Vec<(PathBuf, &Root)> = changed
        .iter()
        .map(|(i, r)| (staging_path(dest, r, *i), *r))
        .collect();
    let result = stage_and_swap(chain, plan, &staged_root, progress, before_swap, &mut done);
    // Staging areas are ours alone and are removed, unless a swap failed
    // half-way: then an old tree there may still hold what was live, and it
    // stays for the admin (the error names it; the next run clears it).
    if result.is_ok() || done.roots.is_empty() {
        for (s, _) in &staged_root {
            if let Some(area) = s.parent() {
                let _ = remove_any(area);
            }
        }
    }
    result.map(|()| done)
}

fn stage_and_swap(
    chain: &RestoreChain,
    plan: &RestorePlan,
    staged_root: &[(PathBuf, &Root)],
    progress: &dyn Progress,
    before_swap: &mut dyn FnMut() -> Result<()>,
    done: &mut Applied,
) -> Result<()> {
    // 1. Stage: kept files by hard link, then extraction.
    let deletes: HashSet<&Path> = plan.deletes.iter().map(PathBuf::as_path).collect();
    let whole: HashSet<PathBuf> = plan.keep_whole.iter().cloned().collect();
    let replaced: HashSet<&Path> = plan.writes.iter().map(|w| w.dest.as_path()).collect();
    for (staged, root) in staged_root {
        if let Some(p) = staged.parent() {
            fs::create_dir_all(p).map_err(Error::io("cannot create", p))?;
        }
        if root.is_file {
            continue;
        }
        fs::create_dir(staged).map_err(Error::io("cannot create", staged))?;
        // Never through a link: a root that is a symlink is replaced, not followed.
        if fs::symlink_metadata(&root.dest).is_ok_and(|m| m.is_dir()) {
            let keep = |p: &Path| !deletes.contains(p) && !replaced.contains(p);
            link_tree(&root.dest, staged, &keep, &whole, !plan.removes)?;
        }
    }
    let staged_of = |w: &Write| -> PathBuf {
        let root = staged_root
            .iter()
            .filter(|(_, r)| w.dest.starts_with(&r.dest))
            .max_by_key(|(_, r)| r.dest.as_os_str().len());
        match root {
            Some((s, r)) if r.is_file => s.clone(),
            Some((s, r)) => s.join(w.dest.strip_prefix(&r.dest).unwrap_or(&w.dest)),
            None => w.dest.clone(),
        }
    };
    progress.start("restoring", plan.writes.len() as u64, plan.bytes);
    let mut by_volume: BTreeMap<(SetRole, u32), Vec<&Write>> = BTreeMap::new();
    for w in &plan.writes {
        by_volume.entry((w.set, w.volume)).or_default().push(w);
    }
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    for writes in by_volume.values() {
        // Contiguous runs of entries per worker, each with its own reader, so
        // every worker reads the volume front to back. Small sets stay on one thread.
        let workers = if writes.len() < 256 { 1 } else { threads };
        let chunk = writes.len().div_ceil(workers).max(1);
        let results: Vec<Result<Extracted>> = std::thread::scope(|s| {
            let handles: Vec<_> = writes
                .chunks(chunk)
                .map(|part| {
                    s.spawn(|| extract_run(chain, part, &staged_of, chain.salvaging, progress))
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
            let x = r?;
            done.written += x.written;
            done.bytes += x.bytes;
            done.not_restored.extend(x.not_restored);
        }
    }
    progress.finish();
    // A folder not restored whole gets its index rebuilt the Kerio way:
    // index.fld renamed to index.bad. Folders restored whole keep theirs.
    let lost: Vec<&str> = done
        .not_restored
        .iter()
        .map(|n| n.path.as_str())
        .chain(plan.not_restorable.iter().map(|u| u.path.as_str()))
        .collect();
    let mut folders: Vec<&str> = lost
        .iter()
        .filter_map(|p| p.split_once("/#msgs/").map(|(f, _)| f))
        .collect();
    folders.sort_unstable();
    folders.dedup();
    for folder in folders {
        let Some(w) = plan
            .writes
            .iter()
            .find(|w| w.rel.starts_with(&format!("{folder}/")))
        else {
            continue;
        };
        let depth = w.rel[folder.len()..].matches('/').count();
        if let Some(f) = staged_of(w).ancestors().nth(depth)
            && fs::rename(f.join("index.fld"), f.join("index.bad")).is_ok()
        {
            done.index_bad.push(
                w.dest
                    .ancestors()
                    .nth(depth)
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            );
        }
    }

    // The live index.fld of those folders is now index.bad in the staged
    // tree: after the swap, the old name is expected to go.
    let reindexed: HashSet<PathBuf> = done.index_bad.iter().map(|f| f.join("index.fld")).collect();

    // Where what the restore must not delete goes: beside each root's
    // staging area, so on the root's filesystem (a rename, never a copy).
    // Made now, while there is room; removed at the end if left empty.
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut rescues: Vec<PathBuf> = Vec::new();
    for (staged, root) in staged_root {
        if fs::symlink_metadata(&root.dest).is_ok() {
            let r = rescue_root_for(staged, &stamp);
            if !rescues.contains(&r) {
                fs::create_dir_all(&r).map_err(Error::io("cannot create", &r))?;
                rescues.push(r);
            }
        }
    }
    let result = swap_all(staged_root, plan, &reindexed, &stamp, before_swap, done);
    for r in &rescues {
        let _ = fs::remove_dir(r);
    }
    result
}

/// The rescue directory for a root staged at `staged`: in the directory
/// that holds its staging area (the store or the install directory, named
/// plainly; the root's own parent when it lies on a filesystem of its own,
/// named with a leading dot so that a domain directory never seems to gain
/// a mailbox).
fn rescue_root_for(staged: &Path, stamp: &str) -> PathBuf {
    let area_parent = staged.parent().and_then(Path::parent).unwrap_or(staged);
    // Staging beside a root (its own filesystem) is marked by the area's
    // index name: see `staging_path`.
    let beside_root = staged
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|n| n.starts_with("beside-"));
    if beside_root {
        area_parent.join(format!(".kmsrecover-rescued-{stamp}"))
    } else {
        area_parent.join(format!("kmsrecover-rescued-{stamp}"))
    }
}

/// The caller's hook, then every staged root swapped in and settled.
fn swap_all(
    staged_root: &[(PathBuf, &Root)],
    plan: &RestorePlan,
    reindexed: &HashSet<PathBuf>,
    stamp: &str,
    before_swap: &mut dyn FnMut() -> Result<()>,
    done: &mut Applied,
) -> Result<()> {
    // 2. The caller's last word before anything live changes.
    before_swap()?;

    // 3. Swap. The staged data must be on disk before live data is replaced,
    // or a power cut right after the exchange could lose both states.
    if let Some((s, _)) = staged_root
        .iter()
        .find(|(_, r)| fs::symlink_metadata(&r.dest).is_ok())
    {
        sync_fs(s);
    }
    // A file the plan replaces or removes may go only as the plan saw it.
    let expected = |p: &Path, m: &fs::Metadata| {
        reindexed.contains(p)
            || plan
                .seen
                .get(p)
                .is_some_and(|id| *id == crate::plan::FileId::of(m))
    };
    for (staged, root) in staged_root {
        let staged_exists = fs::symlink_metadata(staged).is_ok();
        if fs::symlink_metadata(&root.dest).is_err() {
            // Nothing there: the restored root is moved into place (a rename
            // onto something that appeared meanwhile fails, and loses nothing).
            if staged_exists {
                if let Some(parent) = root.dest.parent() {
                    fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
                }
                fs::rename(staged, &root.dest)
                    .map_err(Error::io("cannot move into place", &root.dest))?;
            }
            done.roots.push((root.rel.clone(), root.dest.clone()));
            continue;
        }
        let rescue_root = rescue_root_for(staged, stamp);
        let rescue = rescue_root.join(&root.rel);
        let before = done.arrived.len();
        let settled = if staged_exists {
            // One atomic exchange, for a folder or a file alike; the old
            // state is then where the staged one was.
            exchange(staged, &root.dest)?;
            done.roots.push((root.rel.clone(), root.dest.clone()));
            settle(staged, &root.dest, &expected, &rescue, done)
        } else {
            // A file the restored state does not have.
            done.roots.push((root.rel.clone(), root.dest.clone()));
            settle(
                &root.dest,
                Path::new(""),
                &|_: &Path, m: &fs::Metadata| expected(&root.dest, m),
                &rescue,
                done,
            )
        };
        if !settled && fs::symlink_metadata(staged).is_ok() {
            // Something could not be moved: the whole old tree goes aside,
            // out of the staging area (one rename on the same filesystem).
            let aside = rescue_root.join(format!("old-tree-{}", root.rel.replace('/', "_")));
            if fs::rename(staged, &aside).is_ok() {
                for a in &mut done.arrived[before..] {
                    if let Ok(rest) = a.now.strip_prefix(staged) {
                        a.now = aside.join(rest);
                    }
                }
            } else {
                let restored: Vec<&str> = done.roots.iter().map(|(r, _)| r.as_str()).collect();
                return Err(Error::Request(format!(
                    "restored {}; but files that arrived during the restore could not be moved out of the old tree of {}: \
                     it is kept at `{}`: move them back by hand before running kmsrecover again (it clears its staging area)",
                    restored.join(", "),
                    root.rel,
                    staged.display()
                )));
            }
        }
        // A message put back into a restored folder is not in its index:
        // the server rebuilds it from #msgs (renamed only now, when the old
        // tree is gone through).
        let mut folders: Vec<PathBuf> = done.arrived[before..]
            .iter()
            .filter(|a| a.now == a.path)
            .filter_map(|a| {
                a.now
                    .parent()
                    .filter(|p| p.file_name() == Some(OsStr::new("#msgs")))
            })
            .filter_map(Path::parent)
            .map(Path::to_path_buf)
            .collect();
        folders.sort();
        folders.dedup();
        for f in folders {
            if fs::rename(f.join("index.fld"), f.join("index.bad")).is_ok() {
                done.index_bad.push(f);
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_inode(a: &fs::Metadata, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    fs::symlink_metadata(b).is_ok_and(|m| m.dev() == a.dev() && m.ino() == a.ino())
}

/// Goes through the old state after the swap and removes it, one checked
/// file at a time: a file hard-linked into the new tree, or one the plan
/// replaced or removed *as the plan saw it*, is removed; anything else
/// arrived (or changed) after planning and is moved back to its place in
/// the live tree (if the restored tree has nothing there) or into `rescue`,
/// and reported. A directory is removed only once empty; one that keeps
/// filling (a writer inside it) is gone through again. Returns whether the
/// old state is gone entirely; what could not be moved stays where it is.
fn settle(
    old: &Path,
    live: &Path,
    expected: &dyn Fn(&Path, &fs::Metadata) -> bool,
    rescue: &Path,
    done: &mut Applied,
) -> bool {
    let Ok(m) = fs::symlink_metadata(old) else {
        return true;
    };
    if m.is_dir() {
        for _ in 0..8 {
            let Ok(rd) = fs::read_dir(old) else {
                return false;
            };
            let mut all = true;
            for e in rd {
                let Ok(e) = e else {
                    all = false;
                    continue;
                };
                let name = e.file_name();
                all &= settle(
                    &e.path(),
                    &live.join(&name),
                    expected,
                    &rescue.join(&name),
                    done,
                );
            }
            if !all {
                return false;
            }
            match fs::remove_dir(old) {
                Ok(()) => return true,
                // Something was created in it meanwhile: go through it again.
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {}
                Err(_) => return false,
            }
        }
        return false;
    }
    if same_inode(&m, live) || expected(live, &m) {
        return fs::remove_file(old).is_ok();
    }
    let put_back = !live.as_os_str().is_empty()
        && fs::symlink_metadata(live).is_err()
        && live
            .parent()
            .is_some_and(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()));
    let to = if put_back {
        live.to_path_buf()
    } else {
        rescue.to_path_buf()
    };
    let moved =
        to.parent().is_none_or(|p| fs::create_dir_all(p).is_ok()) && fs::rename(old, &to).is_ok();
    done.arrived.push(Arrived {
        path: if live.as_os_str().is_empty() {
            old.to_path_buf()
        } else {
            live.to_path_buf()
        },
        now: if moved { to } else { old.to_path_buf() },
    });
    moved
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
    chain: &RestoreChain,
    writes: &[&Write],
    staged_of: &(dyn Fn(&Write) -> PathBuf + Sync),
    salvage: bool,
    progress: &dyn Progress,
) -> Result<Extracted> {
    let mut out = Extracted::default();
    let mut reader = chain.reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut made_dir: Option<PathBuf> = None;
    for w in writes {
        let target = staged_of(w);
        if let Some(parent) = target.parent()
            && made_dir.as_deref() != Some(parent)
        {
            fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
            no_links_between(staging_root(&target), parent)?;
            made_dir = Some(parent.to_path_buf());
        }
        // A new file, never an existing one (nor through a link).
        let mut file =
            fs::File::create_new(&target).map_err(Error::io("cannot create", &target))?;
        match reader.read(&w.source, &mut file, &mut buf) {
            Ok(()) => {
                let t = Mtime {
                    secs: w.source.entry.mtime.secs,
                    nanos: w.source.entry.mtime.nanos,
                }
                .to_system();
                file.set_modified(t)
                    .map_err(Error::io("cannot set mtime", &target))?;
                out.written += 1;
                out.bytes += w.size;
                progress.inc(1, w.size);
            }
            Err(EntryError::Write(e)) => return Err(Error::io("cannot write", &target)(e)),
            Err(EntryError::Archive(p)) if salvage => {
                drop(file);
                let _ = fs::remove_file(&target);
                // Keep the live file, if any, rather than lose it.
                if w.replace {
                    let _ = fs::hard_link(&w.dest, &target);
                }
                out.not_restored.push(NotRestored {
                    path: w.rel.clone(),
                    reason: p.to_string(),
                });
                progress.inc(1, 0);
            }
            Err(EntryError::Archive(p)) => return Err(Error::Damaged(p)),
        }
    }
    Ok(out)
}

/// The staged root a staged path lies in (`…/.kmsrecover-staging/<n>`).
fn staging_root(p: &Path) -> &Path {
    let mut prev = p;
    for a in p.ancestors() {
        if a.file_name() == Some(OsStr::new(STAGING_DIR)) {
            return prev;
        }
        prev = a;
    }
    p
}

/// Checks that no directory from `root` down to `dir` is a symbolic link:
/// staged content is written only into directories the restore made.
fn no_links_between(root: &Path, dir: &Path) -> Result<()> {
    let Ok(rest) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut p = root.to_path_buf();
    for c in rest.components() {
        p.push(c);
        let m = fs::symlink_metadata(&p).map_err(Error::io("cannot stat", &p))?;
        if !m.is_dir() {
            return Err(Error::Unsafe {
                path: p.display().to_string(),
                reason:
                    "a staged folder is not a directory (a link?): nothing is written through it"
                        .into(),
            });
        }
    }
    Ok(())
}

/// Mirrors `from` into `to`: files hard-linked when `keep` says so;
/// directories created only where something lands in them, except inside
/// `whole` directories (kept as they are, empty ones included) and
/// everywhere with `all_dirs` (a restore that removes nothing keeps empty
/// folders too). Names are copied as they are (not UTF-8 included).
fn link_tree(
    from: &Path,
    to: &Path,
    keep: &dyn Fn(&Path) -> bool,
    whole: &HashSet<PathBuf>,
    all_dirs: bool,
) -> Result<()> {
    let all_dirs = all_dirs || whole.contains(from);
    let mut made = false;
    let ensure = |made: &mut bool| -> Result<()> {
        if !*made {
            fs::create_dir_all(to).map_err(Error::io("cannot create", to))?;
            *made = true;
        }
        Ok(())
    };
    if all_dirs {
        ensure(&mut made)?;
    }
    for e in fs::read_dir(from).map_err(Error::io("cannot list", from))? {
        let e = e.map_err(Error::io("cannot list", from))?;
        let name = e.file_name();
        let (src, dst) = (e.path(), to.join(&name));
        let t = e.file_type().map_err(Error::io("cannot stat", &src))?;
        if t.is_dir() {
            link_tree(&src, &dst, keep, whole, all_dirs)?;
        } else if keep(&src) {
            ensure(&mut made)?;
            fs::hard_link(&src, &dst).map_err(Error::io("cannot link", &dst))?;
        }
    }
    Ok(())
}

/// Atomically exchanges two paths (renameat2 RENAME_EXCHANGE); where the
/// filesystem cannot, falls back to two renames, which a re-run completes.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(_) => {
            let old = a.with_extension("old");
            fs::rename(b, &old).map_err(Error::io("cannot move aside", b))?;
            fs::rename(a, b).map_err(Error::io("cannot move into place", b))?;
            fs::rename(&old, a).map_err(Error::io("cannot move aside", a))
        }
    }
}

/// Makes staged data durable before it is swapped in.
fn sync_fs(p: &Path) {
    if let Some(a) = p.ancestors().find(|a| fs::File::open(a).is_ok()) {
        let _ = sync_filesystem(a);
    }
}

/// Makes everything written on `p`'s filesystem durable: one `syncfs` for
/// many files instead of an fsync each (restores, exports, migrations).
///
/// # Errors
/// `p` cannot be opened, or the sync fails.
pub fn sync_filesystem(p: &Path) -> std::io::Result<()> {
    let f = fs::File::open(p)?;
    rustix::fs::syncfs(&f).map_err(Into::into)
}
