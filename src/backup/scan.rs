//! Walks an install and lists what a backup takes: `mailserver.cfg`,
//! `users.cfg`, `license/`, `sslca/`, `sslcert/` and `store/`, minus the store's
//! logs, queue, tmp, archive and backup directories, the backup directory
//! itself wherever it lies, and the mailboxes of temporarily disabled users
//! (recorded as skipped, as Kerio does). Order is deterministic (sorted by
//! name) so that archives of the same state list entries the same way.
//! It reads metadata only; file contents are read by the writer.
//!
//! A scan can be limited to some install-relative roots (`only`): the safety
//! copy kmsrecover takes before a restore walks just what it will replace.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use mailvault_formats::layout::{
    self, CONFIG_DIRS, CONFIG_FILES, EXCLUDED_STORE_DIRS, MailboxPath,
};
use mailvault_formats::{Mtime, SkipReason, Skipped};
use walkdir::WalkDir;

use crate::error::{Error, Result};

/// kmsrecover's staging area (a reserved name; see docs/kmsrecover.md).
const STAGING_DIR: &str = ".kmsrecover-staging";

/// Where an install's parts are: the install directory, and its store
/// (normally `<install>/store`; Kerio's `-s` can put it elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPaths {
    /// Configuration files, licences, certificates.
    pub install: PathBuf,
    /// The message store.
    pub store: PathBuf,
}

impl InstallPaths {
    /// The Kerio layout under `install`.
    pub fn new(install: impl Into<PathBuf>) -> Self {
        let install = install.into();
        Self {
            store: install.join("store"),
            install,
        }
    }

    /// The file an install-relative path names.
    #[must_use]
    pub fn abs(&self, rel: &str) -> PathBuf {
        match rel.strip_prefix("store/") {
            Some(rest) => self.store.join(rest),
            None if rel == "store" => self.store.clone(),
            None => self.install.join(rel),
        }
    }

    /// The install-relative path of a file, if it is UTF-8 and inside.
    fn rel(&self, path: &Path) -> Option<String> {
        let (base, prefix) = match path.strip_prefix(&self.store) {
            Ok(r) => (r, "store"),
            Err(_) => (path.strip_prefix(&self.install).ok()?, ""),
        };
        let mut s = prefix.to_string();
        for c in base.components() {
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(c.as_os_str().to_str()?);
        }
        Some(s)
    }

    /// The install-relative path of a file that is not UTF-8, undecodable
    /// bytes replaced (what a summary's `not-utf8` line names).
    fn rel_lossy(&self, path: &Path) -> String {
        let (base, prefix) = match path.strip_prefix(&self.store) {
            Ok(r) => (r, "store"),
            Err(_) => match path.strip_prefix(&self.install) {
                Ok(r) => (r, ""),
                Err(_) => return path.to_string_lossy().into_owned(),
            },
        };
        let mut s = prefix.to_string();
        for c in base.components() {
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(&c.as_os_str().to_string_lossy());
        }
        s
    }
}

/// A file the backup will take.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Install-relative path, `/`-separated.
    pub rel: String,
    /// Size when scanned.
    pub size: u64,
    /// Modification time when scanned.
    pub mtime: Mtime,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files to take, in archive order.
    pub files: Vec<SourceFile>,
    /// What was left out, with reasons.
    pub skipped: Vec<Skipped>,
    /// Remarks for the summary (e.g. users.cfg unreadable).
    pub notes: Vec<String>,
    /// Skips that are problems (vanished, unreadable) rather than policy.
    pub problems: usize,
}

/// Checks that `paths` looks like a Kerio Connect install: its
/// configuration files or a mail store. (A bare `store/` does not count: a
/// backup directory created at the default `<install>/store/backup` would
/// make any path look like an install.)
///
/// # Errors
/// [`Error::NotAnInstall`].
pub fn check_install(paths: &InstallPaths) -> Result<()> {
    let looks_real = paths.install.join("mailserver.cfg").is_file()
        || paths.install.join("users.cfg").is_file()
        || paths.store.join("mail").is_dir();
    if looks_real {
        Ok(())
    } else {
        Err(Error::NotAnInstall(paths.install.clone()))
    }
}

/// Scans an install, leaving out `backup_dir` if it lies inside; with `only`,
/// just those install-relative roots (files or directories).
///
/// # Errors
/// Not an install; an unreadable directory unless `skip_unreadable`.
pub fn scan(
    paths: &InstallPaths,
    backup_dir: &Path,
    skip_unreadable: bool,
    only: Option<&[String]>,
) -> Result<Scan> {
    check_install(paths)?;
    let mut out = Scan::default();
    let disabled = disabled_mailboxes(&paths.install, &mut out);
    let backup_id = std::fs::metadata(backup_dir).ok().map(|m| file_id(&m));
    let default_roots: Vec<String> = CONFIG_FILES
        .iter()
        .chain(CONFIG_DIRS.iter())
        .chain(std::iter::once(&"store"))
        .map(|s| (*s).to_string())
        .collect();
    let roots: Vec<String> = match only {
        Some(o) => {
            let mut r = o.to_vec();
            r.sort();
            r
        }
        None => default_roots,
    };
    for root in &roots {
        let mut units = Vec::new();
        walk(
            paths,
            &paths.abs(root),
            backup_id,
            &disabled,
            skip_unreadable,
            &mut out,
            Some(&mut units),
        )?;
        splice_units(
            paths,
            units,
            backup_id,
            &disabled,
            skip_unreadable,
            &mut out,
        )?;
    }
    Ok(out)
}

/// A mailbox directory whose walk is deferred to run in parallel; its files
/// belong at `pos` in the archive order.
struct Unit {
    start: PathBuf,
    pos: usize,
}

/// Walks the deferred mailboxes on all cores and splices their files in at
/// their places, so the order is the same as a sequential walk's.
fn splice_units(
    paths: &InstallPaths,
    units: Vec<Unit>,
    backup: Option<(u64, u64)>,
    disabled: &HashSet<(String, String)>,
    skip_unreadable: bool,
    out: &mut Scan,
) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .min(units.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<Scan>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(u) = units.get(i) else { break };
                        let mut part = Scan::default();
                        let r = walk(
                            paths,
                            &u.start,
                            backup,
                            disabled,
                            skip_unreadable,
                            &mut part,
                            None,
                        )
                        .map(|()| part);
                        mine.push((i, r));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if results.len() != units.len() {
        return Err(Error::Invalid("internal: a scan worker stopped".into()));
    }
    results.sort_by_key(|(i, _)| *i);
    let before = std::mem::take(&mut out.files);
    let mut files = Vec::with_capacity(
        before.len()
            + results
                .iter()
                .map(|(_, r)| r.as_ref().map_or(0, |p| p.files.len()))
                .sum::<usize>(),
    );
    let mut taken = 0;
    let mut rest = before.into_iter();
    for ((_, r), u) in results.into_iter().zip(&units) {
        let part = r?;
        files.extend(rest.by_ref().take(u.pos - taken));
        taken = u.pos;
        files.extend(part.files);
        out.skipped.extend(part.skipped);
        out.notes.extend(part.notes);
        out.problems += part.problems;
    }
    files.extend(rest);
    out.files = files;
    Ok(())
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Walks one tree in name order. With `units`, mailbox directories are not
/// descended into but recorded for a parallel walk.
fn walk(
    paths: &InstallPaths,
    start: &Path,
    backup: Option<(u64, u64)>,
    disabled: &HashSet<(String, String)>,
    skip_unreadable: bool,
    out: &mut Scan,
    mut units: Option<&mut Vec<Unit>>,
) -> Result<()> {
    let start = start.to_path_buf();
    if std::fs::symlink_metadata(&start).is_err() {
        return Ok(());
    }
    let mut walker = WalkDir::new(&start)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().map_or_else(|| start.clone(), Path::to_path_buf);
                let rel = paths
                    .rel(&path)
                    .unwrap_or_else(|| path.display().to_string());
                let io = e.into_io_error();
                if io
                    .as_ref()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                {
                    out.skipped.push(Skipped {
                        reason: SkipReason::Vanished,
                        path: rel,
                    });
                    out.problems += 1;
                    continue;
                }
                if skip_unreadable {
                    out.skipped.push(Skipped {
                        reason: SkipReason::Unreadable,
                        path: rel,
                    });
                    out.problems += 1;
                    continue;
                }
                return Err(Error::Unreadable {
                    path,
                    source: io.unwrap_or_else(|| std::io::Error::other("filesystem loop")),
                });
            }
        };
        let path = entry.path();
        // A restore's staging area left by a killed restore is not data (the
        // exact, reserved name: a user's `.kmsrecover notes` folder is).
        if entry.depth() > 0 && entry.file_type().is_dir() && entry.file_name() == STAGING_DIR {
            walker.skip_current_dir();
            continue;
        }
        let Some(rel) = paths.rel(path) else {
            out.skipped.push(Skipped {
                reason: SkipReason::NotUtf8,
                path: paths.rel_lossy(path),
            });
            out.problems += 1;
            if entry.file_type().is_dir() {
                walker.skip_current_dir();
            }
            continue;
        };
        if entry.file_type().is_dir() {
            let mailbox =
                MailboxPath::parse(&rel).filter(|m| m.rest.is_empty() && !m.mailbox.is_empty());
            if excluded_dir(&rel, &entry, backup) {
                walker.skip_current_dir();
            } else if let Some(m) = mailbox
                && disabled.contains(&(m.domain.to_lowercase(), m.mailbox.to_lowercase()))
            {
                out.skipped.push(Skipped {
                    reason: SkipReason::DisabledUser,
                    path: rel,
                });
                walker.skip_current_dir();
            } else if mailbox.is_some()
                && path != start
                && let Some(units) = units.as_deref_mut()
            {
                units.push(Unit {
                    start: path.to_path_buf(),
                    pos: out.files.len(),
                });
                walker.skip_current_dir();
            }
            continue;
        }
        if !entry.file_type().is_file() {
            out.skipped.push(Skipped {
                reason: SkipReason::SpecialFile,
                path: rel,
            });
            continue;
        }
        if layout::check_relative(&rel).is_err() {
            out.skipped.push(Skipped {
                reason: SkipReason::UnsafeName,
                path: rel,
            });
            out.problems += 1;
            continue;
        }
        match entry.metadata() {
            Ok(meta) => out.files.push(SourceFile {
                rel,
                size: meta.len(),
                mtime: mtime_of(&meta),
            }),
            Err(_) => {
                out.skipped.push(Skipped {
                    reason: SkipReason::Vanished,
                    path: rel,
                });
                out.problems += 1;
            }
        }
    }
    Ok(())
}

fn excluded_dir(rel: &str, entry: &walkdir::DirEntry, backup: Option<(u64, u64)>) -> bool {
    if let Some(sub) = rel.strip_prefix("store/")
        && !sub.contains('/')
        && EXCLUDED_STORE_DIRS.contains(&sub)
    {
        return true;
    }
    // The backup directory, wherever it lies: same device and inode.
    backup.is_some_and(|b| std::fs::metadata(entry.path()).is_ok_and(|m| file_id(&m) == b))
}

/// `(domain, user)` pairs, lower-cased, of users with `Account_enabled` 0.
fn disabled_mailboxes(install: &Path, out: &mut Scan) -> HashSet<(String, String)> {
    let path = install.join("users.cfg");
    let Ok(bytes) = std::fs::read(&path) else {
        return HashSet::new();
    };
    match mailvault_formats::config::users::users(&bytes) {
        Ok(users) => users
            .into_iter()
            .filter(|u| !u.enabled)
            .map(|u| (u.domain.to_lowercase(), u.name.to_lowercase()))
            .collect(),
        Err(e) => {
            out.notes.push(format!(
                "users.cfg could not be read ({e}); disabled users were backed up like the others"
            ));
            out.problems += 1;
            HashSet::new()
        }
    }
}

pub(crate) fn mtime_of(meta: &std::fs::Metadata) -> Mtime {
    meta.modified().map(Mtime::from_system).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_mailbox_walk_keeps_the_sequential_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("mailserver.cfg"), b"<config/>").unwrap();
        for d in ["a.cz", "b.cz", "c.cz"] {
            for u in ["#public", "anna", "bob", "zed"] {
                for f in ["INBOX", "Sent Items"] {
                    let dir = root
                        .join("store/mail")
                        .join(d)
                        .join(u)
                        .join(f)
                        .join("#msgs");
                    std::fs::create_dir_all(&dir).unwrap();
                    for i in 0..5 {
                        std::fs::write(dir.join(format!("{i:08x}.eml")), b"x").unwrap();
                    }
                }
            }
            std::fs::write(root.join("store/mail").join(d).join("domain.dat"), b"x").unwrap();
        }
        std::fs::create_dir_all(root.join("store/spamassassin")).unwrap();
        std::fs::write(root.join("store/spamassassin/bayes_toks"), b"x").unwrap();
        let paths = InstallPaths::new(root);
        let parallel = scan(&paths, &root.join("store/backup"), false, None).unwrap();
        let mut sequential = Scan::default();
        for r in [
            "mailserver.cfg",
            "users.cfg",
            "license",
            "sslca",
            "sslcert",
            "store",
        ] {
            walk(
                &paths,
                &paths.abs(r),
                None,
                &HashSet::new(),
                false,
                &mut sequential,
                None,
            )
            .unwrap();
        }
        let names = |s: &Scan| s.files.iter().map(|f| f.rel.clone()).collect::<Vec<_>>();
        assert_eq!(names(&parallel), names(&sequential));
        assert_eq!(parallel.files.len(), 1 + 3 * (4 * 2 * 5 + 1) + 1);
    }
}
