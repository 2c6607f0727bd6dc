//! [`prepare`]: from a request to a [`RestorePlan`], touching nothing. It
//! resolves the chain (newest usable, `--at`, or a file), turns Kerio's
//! options into roots, and for each root decides file by file what is
//! written (new or replacing a different file), left alone (already as
//! backed up), removed, or **kept**.
//!
//! A live file is removed only when the chain's catalogs prove it absent at
//! backup time ([`RestoreChain::proves_absence`]). Whatever the archive
//! cannot restore stays in place and is listed: files the backup skipped,
//! names it cannot store (not UTF-8, backslashes, control characters),
//! special files, and everything a salvage or a catalog-less (Kerio) archive
//! cannot vouch for. `-l`, `--dry-run` and `--json` print the plan;
//! [`crate::execute()`] carries it out.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use mailvault_formats::layout;
use mailvault_formats::{Mtime, SkipReason};
use mailvault_repo::chain::{RestoreChain, SetRole, StateFile, Unrestorable, resolve};
use mailvault_repo::storage::{Lock, LockMode};
use mailvault_repo::{PassedOver, Repository};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::request::RestoreRequest;
use crate::request::{INTO_MARKER, LOCK_FILE, is_ours};
use crate::select::Selection;

/// One file to write.
#[derive(Debug, Clone, Serialize)]
pub struct Write {
    /// Install-relative path (as in the backup).
    pub rel: String,
    /// Destination.
    #[serde(serialize_with = "crate::serde_path::path")]
    pub dest: PathBuf,
    /// Which set holds it.
    pub set: SetRole,
    /// Volume in that set.
    pub volume: u32,
    /// Size from the catalog.
    pub size: u64,
    /// Whether a different file is there now.
    pub replace: bool,
    /// Where the content is (read by the executor).
    #[serde(skip)]
    pub source: StateFile,
}

/// Why a live item stays although it is not in the restored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepReason {
    /// A symlink, socket, FIFO or device: backups do not take these.
    SpecialFile,
    /// A name a backup cannot store (not UTF-8, a backslash, a control character).
    UnsafeName,
    /// The backup skipped it (unreadable, vanished, …): the archive cannot restore it.
    SkippedByBackup,
    /// No intact catalog proves it was absent at backup time (Kerio archive,
    /// salvage, damaged catalog).
    NotProvenAbsent,
    /// The backup directory being read, or where safety copies go.
    Backups,
    /// A salvage removes nothing.
    Salvage,
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SpecialFile => "a special file, not backed up",
            Self::UnsafeName => "a name a backup cannot store",
            Self::SkippedByBackup => "skipped by the backup, so not in the archive",
            Self::NotProvenAbsent => "no intact catalog proves it absent at backup time",
            Self::Backups => "the backups being read, or the safety copies",
            Self::Salvage => "a salvage removes nothing",
        })
    }
}

/// A live item left in place.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    /// The item (a file, or a directory kept whole).
    #[serde(serialize_with = "crate::serde_path::path")]
    pub path: PathBuf,
    /// Why.
    pub reason: KeepReason,
}

/// One selected root.
#[derive(Debug, Clone, Serialize)]
pub struct Root {
    /// Install-relative root (as in the backup).
    pub rel: String,
    /// Its destination.
    #[serde(serialize_with = "crate::serde_path::path")]
    pub dest: PathBuf,
    /// Whether the root is a single file (`users.cfg`) rather than a directory.
    pub is_file: bool,
    /// Whether it has anything to change.
    pub changes: bool,
}

/// Everything a restore will do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestorePlan {
    /// First-volume names of the chain, full first.
    pub chain: Vec<String>,
    /// Newer sets passed over, with why.
    pub passed_over: Vec<PassedOver>,
    /// Whether this is a salvage.
    pub salvaging: bool,
    /// Problems found in the chain (a salvage goes on past them; anything
    /// else refuses them before planning).
    pub problems: Vec<mailvault_repo::Problem>,
    /// Whether the plan removes live files (only when catalogs prove them absent).
    pub removes: bool,
    /// The roots restored.
    pub roots: Vec<Root>,
    /// Files to write.
    pub writes: Vec<Write>,
    /// Files to remove.
    #[serde(serialize_with = "crate::serde_path::paths")]
    pub deletes: Vec<PathBuf>,
    /// Live items left in place although not in the restored state.
    pub kept: Vec<Kept>,
    /// Files of the backed-up state that cannot be restored (salvage).
    pub not_restorable: Vec<Unrestorable>,
    /// Files already as backed up.
    pub unchanged: u64,
    /// Bytes to write.
    pub bytes: u64,
    /// Remarks for the admin.
    pub notes: Vec<String>,
    /// Directories inside the roots kept exactly as they are (protected
    /// mailboxes, skipped or unnamable directories), empty ones included.
    #[serde(skip)]
    pub keep_whole: Vec<PathBuf>,
    /// The live files the plan replaces or removes, as it saw them: after
    /// the swap, one that is no longer the same file arrived meanwhile and
    /// is kept.
    #[serde(skip)]
    pub seen: HashMap<PathBuf, FileId>,
}

/// What identifies a live file between planning and the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    ino: u64,
    size: u64,
    mtime: Option<std::time::SystemTime>,
}

impl FileId {
    /// The identity of a file from its (not followed) metadata.
    #[cfg(unix)]
    #[must_use]
    pub fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self {
            ino: m.ino(),
            size: m.len(),
            mtime: m.modified().ok(),
        }
    }
}

/// Records what a file the plan will replace or remove looks like now.
fn saw(out: &mut RestorePlan, path: &Path) {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        out.seen.insert(path.to_path_buf(), FileId::of(&m));
    }
}

/// A plan with what executing it needs.
#[derive(Debug)]
pub struct Prepared {
    /// The request.
    pub request: RestoreRequest,
    /// The chain read.
    pub chain: RestoreChain,
    /// The roots.
    pub selection: Selection,
    /// What will be done.
    pub plan: RestorePlan,
    /// The repository.
    pub repo: Repository,
    /// Held until the restore ends: no rotation deletes the chain meanwhile.
    pub lock: Lock,
}

fn same_file(path: &Path, f: &StateFile) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file()
        || meta.len() != f.entry.size
        || meta.modified().map(Mtime::from_system).ok() != Some(f.entry.mtime)
    {
        return false;
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return h.finalize() == f.entry.crc32,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return false,
        }
    }
}

/// Resolves, selects and plans a restore; takes the repository's shared lock
/// (held in [`Prepared::lock`]) so the chain stays while it is read.
///
/// # Errors
/// Usage errors, no usable backup, a refused archive (unless salvaging),
/// selections the backup does not hold, unsafe destinations, unreadable
/// target directories.
pub fn prepare(repo: &Repository, mut request: RestoreRequest) -> Result<Prepared> {
    request.check()?;
    if !repo.storage().exists()? {
        return Err(mailvault_repo::Error::NotFound(repo.storage().describe("")).into());
    }
    let lock = repo.lock(LockMode::Shared, "kmsrecover")?;
    let chain = resolve(repo, &request.pick, request.salvage)?;
    let (state, lost) = chain.state()?;
    // What the chain holds as a whole (a Kerio differential's own entries
    // are only what changed: the parts only its full holds count too).
    let whole = mailvault_formats::Catalog {
        entries: state
            .iter()
            .map(|f| f.entry.clone())
            // Files a salvage cannot restore are still what the backup held.
            .chain(lost.iter().filter_map(|l| {
                Some(mailvault_formats::CatalogEntry {
                    path: mailvault_formats::RelPath::new(l.path.as_str()).ok()?,
                    size: 0,
                    mtime: Mtime::default(),
                    crc32: 0,
                    location: mailvault_formats::Location::Volume(0),
                })
            }))
            .collect(),
    };
    let selection = Selection::new(&request, &whole, &chain.skipped(), &chain.scope())?;
    drop(whole);
    if let Some(name) = &request.as_folder {
        let (Some(d), Some(u), Some(f)) = (&request.domain, &request.user, &request.folder) else {
            return Err(Error::Usage("--as-folder needs -d, -u and -f".into()));
        };
        let from = format!("store/mail/{d}/{u}/{f}");
        let to = match f.rsplit_once('/') {
            Some((parent, _)) => format!("store/mail/{d}/{u}/{parent}/{name}"),
            None => format!("store/mail/{d}/{u}/{name}"),
        };
        if request.destination.dest(&to)?.exists() {
            return Err(Error::Request(format!(
                "folder `{name}` already exists in {u}@{d}: choose another --as-folder name"
            )));
        }
        request.destination.rename = Some((from, to));
    }
    if request.destination.into {
        check_empty(request.destination.anchor())?;
    } else if request.require_install {
        check_install(&request.destination)?;
    }
    let plan = make_plan(&request, &chain, &selection, state, lost)?;
    Ok(Prepared {
        request,
        chain,
        selection,
        plan,
        repo: repo.clone(),
        lock,
    })
}

/// `--into` needs an empty or new directory. One that holds the marker of
/// an `--into` restore that was killed (and whose lock nobody holds) may be
/// cleared of exactly what that run created, as its marker lists it, so the
/// restore can run again; anything else in it, a marker that is not one, or
/// a directory that looks like a live install (`store/logs`, `store/queue`)
/// is refused as not empty.
fn check_empty(dir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let names: Vec<std::ffi::OsString> = rd.flatten().map(|e| e.file_name()).collect();
    if names.iter().all(|n| is_ours(n)) {
        return Ok(());
    }
    let not_empty = || {
        Error::Request(format!(
            "`{}` is not empty: --into needs an empty or new directory",
            dir.display()
        ))
    };
    let marker = std::fs::read(dir.join(INTO_MARKER)).unwrap_or_default();
    let marker = String::from_utf8_lossy(&marker[..marker.len().min(64 * 1024)]).into_owned();
    let mut lines = marker.lines();
    if lines.next() != Some(crate::request::INTO_MARKER_MAGIC) {
        return Err(not_empty());
    }
    let created: Vec<&str> = lines.filter_map(|l| l.strip_prefix("created ")).collect();
    let foreign = names.iter().any(|n| {
        !is_ours(n)
            && !created
                .iter()
                .any(|c| std::ffi::OsStr::new(c) == n.as_os_str())
    });
    let live = ["store/logs", "store/queue"]
        .iter()
        .any(|d| dir.join(d).exists());
    // A restore only ever creates the install's top-level parts.
    let restorable = |c: &&str| {
        layout::CONFIG_FILES.contains(c) || layout::CONFIG_DIRS.contains(c) || *c == "store"
    };
    if foreign || live || !created.iter().all(restorable) {
        return Err(not_empty());
    }
    let lock = dir.join(LOCK_FILE);
    match std::fs::File::open(&lock).ok().map(|f| f.try_lock()) {
        Some(Err(std::fs::TryLockError::WouldBlock)) => Err(Error::Busy {
            path: dir.to_path_buf(),
            holder: std::fs::read_to_string(&lock)
                .unwrap_or_default()
                .trim()
                .to_string(),
        }),
        Some(Err(std::fs::TryLockError::Error(_))) => Err(not_empty()),
        Some(Ok(())) | None => {
            for c in created {
                let p = dir.join(c);
                let r = match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                    Ok(_) => std::fs::remove_file(&p),
                    Err(_) => Ok(()),
                };
                r.map_err(Error::io(
                    "cannot remove what an interrupted --into left",
                    &p,
                ))?;
            }
            Ok(())
        }
    }
}

/// Refuses a root reached through a symbolic link below the store (or
/// install) directory: restoring `john/INBOX` where `john` links to `jane`
/// would replace Jane's INBOX. (The store, `store/mail` and the install
/// directory themselves may be links: that is a deployment, not a mailbox.)
fn no_link_above(dest: &crate::request::Destination, root: &Path) -> Result<()> {
    let mail = dest.store_dir.join("mail");
    let anchor = if root.starts_with(&mail) {
        mail.as_path()
    } else if root.starts_with(&dest.store_dir) {
        dest.store_dir.as_path()
    } else {
        dest.cfg_dir.as_path()
    };
    let Ok(between) = root.strip_prefix(anchor) else {
        return Ok(());
    };
    let mut p = anchor.to_path_buf();
    let parts: Vec<_> = between.components().collect();
    // The root itself may be a link: it is replaced, never followed.
    for c in parts.iter().take(parts.len().saturating_sub(1)) {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::Unsafe {
                    path: p.display().to_string(),
                    reason: format!(
                        "it is a symbolic link, and `{}` lies below it: a restore never writes through a link \
                         (restore the mailbox or domain it stands for, which replaces the link, or remove the link)",
                        root.display()
                    ),
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// A root that is a mount point (a domain on a disk of its own) cannot be
/// swapped in one rename: refused before anything changes.
#[cfg(unix)]
fn not_a_mount_point(root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(root), root.parent()) else {
        return Ok(());
    };
    let Ok(p) = std::fs::metadata(parent) else {
        return Ok(());
    };
    if m.is_dir() && m.dev() != p.dev() {
        return Err(Error::Request(format!(
            "`{}` is a mount point: a restore replaces a folder by swapping it whole, which a mount point cannot be; \
             restore what it holds one level down (-u for a domain), or --into a directory and move it",
            root.display()
        )));
    }
    Ok(())
}

/// A restore in place needs an install there: a mistyped --install-dir must
/// not grow a new one.
fn check_install(dest: &crate::request::Destination) -> Result<()> {
    let looks_real = dest.cfg_dir.join("mailserver.cfg").is_file()
        || dest.cfg_dir.join("users.cfg").is_file()
        || dest.store_dir.join("mail").is_dir();
    if looks_real {
        Ok(())
    } else {
        Err(Error::Request(format!(
            "`{}` is not a Kerio Connect install (no mailserver.cfg, users.cfg or store/mail/): \
             check --install-dir (-c, -s), or restore into a new directory with --into",
            dest.cfg_dir.display()
        )))
    }
}

fn make_plan(
    req: &RestoreRequest,
    chain: &RestoreChain,
    sel: &Selection,
    state: Vec<StateFile>,
    lost: Vec<Unrestorable>,
) -> Result<RestorePlan> {
    let dest = &req.destination;
    let removes = chain.proves_absence();
    let mut out = RestorePlan {
        chain: chain.names(),
        passed_over: chain.passed.clone(),
        salvaging: chain.salvaging,
        problems: chain.problems().cloned().collect(),
        removes,
        ..RestorePlan::default()
    };
    out.not_restorable = lost.into_iter().filter(|l| sel.contains(&l.path)).collect();
    let mut wanted: HashSet<PathBuf> = HashSet::new();
    let mut state_paths: HashMap<String, ()> = HashMap::new();
    for f in state.into_iter().filter(|f| sel.contains(&f.entry.path)) {
        let d = dest.dest(&f.entry.path)?;
        wanted.insert(d.clone());
        state_paths.insert(f.entry.path.to_string(), ());
        if same_file(&d, &f) {
            out.unchanged += 1;
            continue;
        }
        out.bytes += f.entry.size;
        let replace = std::fs::symlink_metadata(&d).is_ok();
        if replace {
            saw(&mut out, &d);
        }
        out.writes.push(Write {
            rel: f.entry.path.to_string(),
            replace,
            dest: d,
            set: f.role,
            volume: f.volume,
            size: f.entry.size,
            source: f,
        });
    }
    // Every directory the restored state needs, so each check is one lookup.
    let mut needed: HashSet<PathBuf> = HashSet::new();
    for w in &wanted {
        for a in w.ancestors().skip(1) {
            if !needed.insert(a.to_path_buf()) {
                break;
            }
        }
    }
    let untouchable = untouchable_ids(&req.untouchable);
    let mut w = Walk {
        sel,
        wanted: Wanted {
            files: &wanted,
            dirs: &needed,
        },
        removes,
        untouchable: &untouchable,
        blocked: Vec::new(),
        unproven: if chain.salvaging {
            KeepReason::Salvage
        } else {
            KeepReason::NotProvenAbsent
        },
    };
    for root in &sel.roots {
        let rdest = dest.dest(root)?;
        no_link_above(dest, &rdest)?;
        not_a_mount_point(&rdest)?;
        let is_file = state_paths.contains_key(root.as_str());
        let before = out.deletes.len();
        let mut vanishing_dirs = false;
        match std::fs::symlink_metadata(&rdest) {
            Ok(m) if m.is_dir() && !is_file => {
                let (_, vanish) = walk(&rdest, root, &mut w, &mut out)?;
                vanishing_dirs = vanish;
            }
            Ok(m) if m.is_dir() => {
                // A directory where the backup holds a file: never removed
                // wholesale; the file is not restored.
                w.blocked.push(rdest.clone());
                out.kept.push(Kept {
                    path: rdest.clone(),
                    reason: KeepReason::NotProvenAbsent,
                });
            }
            Ok(_) if !is_file && removes => {
                saw(&mut out, &rdest);
                out.deletes.push(rdest.clone());
            }
            Ok(_) if !is_file => {
                w.blocked.push(rdest.clone());
                out.kept.push(Kept {
                    path: rdest.clone(),
                    reason: KeepReason::NotProvenAbsent,
                });
            }
            Ok(m) if m.is_file() && !wanted.contains(&rdest) => {
                if removes {
                    saw(&mut out, &rdest);
                    out.deletes.push(rdest.clone());
                } else {
                    out.kept.push(Kept {
                        path: rdest.clone(),
                        reason: KeepReason::NotProvenAbsent,
                    });
                }
            }
            _ => {}
        }
        let changes = out.deletes.len() > before
            || vanishing_dirs
            || out.writes.iter().any(|x| x.dest.starts_with(&rdest));
        out.roots.push(Root {
            rel: root.clone(),
            dest: rdest,
            is_file,
            changes,
        });
    }
    // Nothing is written below a live item that blocks a folder.
    if !w.blocked.is_empty() {
        let blocked = std::mem::take(&mut w.blocked);
        let (keep, drop): (Vec<Write>, Vec<Write>) = std::mem::take(&mut out.writes)
            .into_iter()
            .partition(|x| !blocked.iter().any(|b| x.dest.starts_with(b)));
        out.writes = keep;
        for x in drop {
            out.bytes -= x.size;
            let b = blocked.iter().find(|b| x.dest.starts_with(b));
            out.not_restorable.push(Unrestorable {
                path: x.rel,
                reason: format!(
                    "`{}` is not the folder the backup holds (a file, link or special file that no catalog proves absent): kept",
                    b.map_or_else(String::new, |b| b.display().to_string())
                ),
            });
        }
        for r in &mut out.roots {
            r.changes = out.deletes.iter().any(|d| d.starts_with(&r.dest))
                || out.writes.iter().any(|x| x.dest.starts_with(&r.dest))
                || r.changes && !blocked.iter().any(|b| r.dest.starts_with(b));
        }
    }
    for p in &out.passed_over {
        out.notes
            .push(format!("passed over {}: {}", p.stem, p.reason));
    }
    // A mailbox disabled since the full: not in this state, but the full
    // holds it. Say where it is rather than leave it silently out.
    if let Some(diff) = &chain.differential {
        for k in chain
            .skipped()
            .iter()
            .filter(|k| k.reason == SkipReason::DisabledUser)
        {
            let prefix = format!("{}/", k.path);
            if sel.roots.iter().any(|r| layout::within(&k.path, r))
                && chain
                    .full
                    .catalog
                    .state()
                    .any(|e| e.path.starts_with(&prefix))
            {
                out.notes.push(format!(
                    "`{}` was disabled when {} was taken, so this state leaves it out (and leaves the live one alone); {} holds it: restore it from that archive with -d and -u",
                    k.path,
                    diff.stem(),
                    chain.full.name()
                ));
            }
        }
    }
    for set in std::iter::once(&chain.full).chain(chain.differential.as_ref()) {
        if chain.salvaging
            && !set.catalog_read
            && set.info.flavor == mailvault_repo::set::Flavor::Mailvault
        {
            out.notes.push(format!(
                "the catalog of {} is lost (its last volume is missing or damaged): files stored only in missing volumes cannot be named; everything the other volumes hold intact is restored",
                set.stem()
            ));
        }
    }
    let unproven = out
        .kept
        .iter()
        .filter(|k| matches!(k.reason, KeepReason::NotProvenAbsent | KeepReason::Salvage))
        .count();
    if unproven > 0 {
        let why = if chain.salvaging {
            "salvage removes nothing"
        } else {
            "the archive has no catalog that proves what was absent at backup time"
        };
        out.notes.push(format!(
            "{why}: {unproven} live file(s) not in the archive were kept"
        ));
    }
    Ok(out)
}

/// The destinations of the restored state, and every directory holding one.
struct Wanted<'a> {
    files: &'a HashSet<PathBuf>,
    dirs: &'a HashSet<PathBuf>,
}

/// What a walk of the live roots needs besides the plan it fills.
struct Walk<'a> {
    sel: &'a Selection,
    wanted: Wanted<'a>,
    removes: bool,
    /// Directories never touched wherever they are (the backup directory,
    /// the safety copies), by device and inode.
    untouchable: &'a HashSet<(u64, u64)>,
    /// Live non-directories where the restored state needs a folder, kept
    /// (nothing proves them absent): nothing is restored below them.
    blocked: Vec<PathBuf>,
    /// Why a file not in the state is kept when nothing may be removed.
    unproven: KeepReason,
}

/// Walks a live root directory and sorts its items into deletes and kept.
/// Returns (whether anything survives in `dir`, whether some directory under
/// it will vanish because nothing in it survives).
fn walk(dir: &Path, rel: &str, w: &mut Walk<'_>, out: &mut RestorePlan) -> Result<(bool, bool)> {
    let mut survives = false;
    let mut vanish = false;
    let rd = std::fs::read_dir(dir).map_err(Error::io("cannot list", dir))?;
    let mut entries: Vec<_> = rd
        .collect::<std::io::Result<_>>()
        .map_err(Error::io("cannot list", dir))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let os_name = e.file_name();
        let path = e.path();
        let t = e.file_type().map_err(Error::io("cannot stat", &path))?;
        let name = os_name
            .to_str()
            .filter(|n| layout::check_relative(n).is_ok() && !n.contains('/'));
        let Some(name) = name else {
            if t.is_dir() {
                out.keep_whole.push(path.clone());
            }
            out.kept.push(Kept {
                path,
                reason: KeepReason::UnsafeName,
            });
            survives = true;
            continue;
        };
        let child = format!("{rel}/{name}");
        if t.is_dir() {
            if w.sel.is_protected(&child) {
                out.keep_whole.push(path);
                survives = true;
                continue;
            }
            if is_untouchable(&e, w.untouchable) {
                // Kept whole and said so; what the backup holds there (if
                // anything) cannot be restored over it.
                out.keep_whole.push(path.clone());
                if w.wanted.dirs.contains(&path) {
                    w.blocked.push(path.clone());
                }
                out.kept.push(Kept {
                    path,
                    reason: KeepReason::Backups,
                });
                survives = true;
                continue;
            }
            if w.sel.was_skipped(&child) && !w.wanted.dirs.contains(&path) {
                out.keep_whole.push(path.clone());
                out.kept.push(Kept {
                    path,
                    reason: KeepReason::SkippedByBackup,
                });
                survives = true;
                continue;
            }
            let (s, v) = walk(&path, &child, w, out)?;
            survives |= s;
            vanish |= v || !s;
            continue;
        }
        if w.wanted.dirs.contains(&path) {
            // A file, symlink or special file where the backup holds a
            // folder. The catalog proves it absent at backup time: it goes,
            // and the folder comes back (never written through a link).
            // Otherwise it stays, and nothing is restored below it.
            survives = true;
            if w.removes {
                saw(out, &path);
                out.deletes.push(path);
            } else {
                w.blocked.push(path.clone());
                out.kept.push(Kept {
                    path,
                    reason: KeepReason::NotProvenAbsent,
                });
            }
        } else if w.wanted.files.contains(&path) {
            survives = true;
        } else if !t.is_file() {
            out.kept.push(Kept {
                path,
                reason: KeepReason::SpecialFile,
            });
            survives = true;
        } else if w.sel.was_skipped(&child) {
            out.kept.push(Kept {
                path,
                reason: KeepReason::SkippedByBackup,
            });
            survives = true;
        } else if w.removes {
            saw(out, &path);
            out.deletes.push(path);
        } else {
            out.kept.push(Kept {
                path,
                reason: w.unproven,
            });
            survives = true;
        }
    }
    // Directories the restored state needs are created by the writes.
    survives |= w.wanted.dirs.contains(dir);
    Ok((survives, vanish && w.removes))
}

#[cfg(unix)]
fn is_untouchable(e: &std::fs::DirEntry, ids: &HashSet<(u64, u64)>) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    !ids.is_empty()
        && e.metadata()
            .is_ok_and(|m| ids.contains(&(m.dev(), m.ino())))
}

/// Device and inode of the directories a restore must never touch.
#[cfg(unix)]
fn untouchable_ids(paths: &[PathBuf]) -> HashSet<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}
