//! Putting files into the target without ever replacing anything: what
//! lies where a migrated file goes is moved aside into the displaced
//! directory (`--force`), each file arrives by a hard link from a complete,
//! synced temporary (a link never replaces). The live copy (what it takes
//! from an install, and how each file is copied with its mtime, mode and
//! owner) and the move out of a forced restore's staging area live here.

use std::fs;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use mailvault_formats::layout::{self, EXCLUDED_STORE_DIRS, enclosed_path};
use mailvault_recover::request::{LOCK_FILE, STAGING_DIR};
use serde::Serialize;

use super::{MigrateReport, NotMigrated, STAGING, SourceFile, refused, ser_path};
use crate::error::{Error, Result};
use crate::mail::folder::InstallLock;
use crate::progress::Progress;

/// A thing that was in the target's way, moved aside.
#[derive(Debug, Clone, Serialize)]
pub struct Displaced {
    /// Install-relative path.
    pub path: String,
    /// Where it is now.
    #[serde(serialize_with = "ser_path")]
    pub now: PathBuf,
}

/// The install-relative path of whatever blocks writing `rel` in `to`: an
/// existing entry at `rel`, or a non-directory (or link) where one of its
/// parent directories belongs.
pub(super) fn in_the_way(to: &Path, rel: &str) -> Result<Option<String>> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut p = to.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        p.push(part);
        match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot read", &p)(e)),
            Ok(m) => {
                let last = i + 1 == parts.len();
                if last || !m.is_dir() {
                    return Ok(Some(parts[..=i].join("/")));
                }
            }
        }
    }
    Ok(None)
}

/// Lists what a live copy takes below `top` (`license`, `store`…): the
/// directories (empty ones too), the regular files, and what it cannot
/// copy. The store's logs, queue, tmp, archive and backup are left out, as
/// a backup leaves them out, and so are a restore's leftovers.
pub(super) fn walk_source(
    install: &Path,
    top: &str,
    dirs: &mut Vec<String>,
    files: &mut Vec<SourceFile>,
    not: &mut Vec<NotMigrated>,
) -> Result<()> {
    let root = install.join(top);
    if !root.exists() {
        return Ok(());
    }
    let mut walker = walkdir::WalkDir::new(&root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(|e| {
            let path = e.path().map_or_else(|| root.clone(), Path::to_path_buf);
            Error::Unreadable {
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            }
        })?;
        let Ok(below) = entry.path().strip_prefix(install) else {
            continue;
        };
        let Some(rel) = below.to_str().map(str::to_string) else {
            not.push(NotMigrated {
                path: below.to_string_lossy().into_owned(),
                reason: "a name that is not UTF-8: not copied".into(),
            });
            if entry.file_type().is_dir() {
                walker.skip_current_dir();
            }
            continue;
        };
        let ft = entry.file_type();
        // Left out whatever they are (`store/logs` is often a link to /var/log).
        let excluded = rel
            .strip_prefix("store/")
            .is_some_and(|sub| !sub.contains('/') && EXCLUDED_STORE_DIRS.contains(&sub));
        if excluded {
            if ft.is_dir() {
                walker.skip_current_dir();
            }
            continue;
        }
        // A top-level part that is a link (`store` on a disk of its own) is
        // a deployment: taken as if the directory were there. Links below
        // it are not followed.
        if ft.is_dir() || (entry.depth() == 0 && entry.path().is_dir()) {
            if entry.depth() > 0 && entry.file_name() == STAGING_DIR {
                walker.skip_current_dir();
                continue;
            }
            if layout::check_relative(&rel).is_err() {
                not.push(NotMigrated {
                    path: rel,
                    reason: "a name that cannot be copied safely: not copied".into(),
                });
                walker.skip_current_dir();
                continue;
            }
            dirs.push(rel);
        } else if ft.is_file() {
            if layout::check_relative(&rel).is_err() {
                not.push(NotMigrated {
                    path: rel,
                    reason: "a name that cannot be copied safely: not copied".into(),
                });
                continue;
            }
            let m = entry.metadata().map_err(|e| Error::Unreadable {
                path: entry.path().to_path_buf(),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("vanished")),
            })?;
            files.push(SourceFile {
                rel,
                size: m.len(),
                crc: None,
            });
        } else {
            not.push(NotMigrated {
                path: rel,
                reason: "a symbolic link or special file: not copied (recreate it by hand if it is needed)".into(),
            });
        }
    }
    Ok(())
}

pub(super) fn with_displaced(e: Error, placer: &Placer) -> Error {
    if placer.displaced.is_empty() {
        return e;
    }
    let dir = placer
        .aside
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    Error::Refused {
        reason: format!(
            "the migration stopped: {e}; {} things that were in the way are in `{dir}`",
            placer.displaced.len()
        ),
        hint: "nothing was removed: fix the cause and run the migration again with --force, or move the displaced files back by hand".into(),
    }
}

/// A failed copy onto a new or empty target leaves it as it was: all that
/// is in it is this run's.
pub(super) fn undo_new_target(to: &Path, existed: bool) {
    if let Ok(rd) = fs::read_dir(to) {
        for e in rd.flatten() {
            let p = e.path();
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
    if !existed {
        let _ = fs::remove_dir(to);
    }
}

/// Puts files into the target, never over anything: what is in the way is
/// moved aside first.
pub(super) struct Placer {
    pub(super) to: PathBuf,
    pub(super) aside: Option<PathBuf>,
    pub(super) displaced: Vec<Displaced>,
}

impl Placer {
    /// Moves whatever is at `rel` (or blocks a parent directory of it) out
    /// of the way, then makes the parent directories.
    fn clear(&mut self, rel: &str) -> Result<PathBuf> {
        let dest =
            enclosed_path(&self.to, rel).map_err(|e| Error::Invalid(format!("`{rel}`: {e}")))?;
        while let Some(block) = in_the_way(&self.to, rel)? {
            self.move_aside(&block)?;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
        }
        Ok(dest)
    }

    fn move_aside(&mut self, rel: &str) -> Result<()> {
        let Some(aside) = &self.aside else {
            return Err(refused(
                format!("`{}` appeared in the target while migrating", rel),
                "run again with --force, or onto an empty directory",
            ));
        };
        let from = enclosed_path(&self.to, rel).map_err(|e| Error::Invalid(e.to_string()))?;
        let now = enclosed_path(aside, rel).map_err(|e| Error::Invalid(e.to_string()))?;
        if let Some(p) = now.parent() {
            fs::create_dir_all(p).map_err(Error::io("cannot create", p))?;
        }
        if now.exists() {
            return Err(refused(
                format!("`{}` is already taken", now.display()),
                "run again (a new displaced directory is used)",
            ));
        }
        fs::rename(&from, &now).map_err(Error::io("cannot move aside", &from))?;
        self.displaced.push(Displaced {
            path: rel.to_string(),
            now,
        });
        Ok(())
    }

    /// Links `tmp` (a complete, synced file beside the destination or in
    /// the staging area) to `rel`, never replacing, then removes `tmp`.
    fn link(&mut self, tmp: &Path, rel: &str) -> Result<()> {
        let dest = self.clear(rel)?;
        match fs::hard_link(tmp, &dest) {
            Ok(()) => fs::remove_file(tmp).map_err(Error::io("cannot remove", tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(refused(
                format!(
                    "`{}` appeared while migrating: not replaced",
                    dest.display()
                ),
                "stop whatever writes into the target and run again",
            )),
            Err(e) => Err(Error::io("cannot create", &dest)(e)),
        }
    }
}

/// A forced migration from backups: the restore went to the staging area
/// inside the target; each file it wrote (the index.bad of a folder it
/// could not restore whole too) is linked into place from there, then the
/// emptied directories are removed (never a file).
pub(super) fn move_from_staging(staging: &Path, placer: &mut Placer) -> Result<()> {
    let mut staged = Vec::new();
    for e in walkdir::WalkDir::new(staging).follow_links(false) {
        let e = e.map_err(|e| Error::Unreadable {
            path: e
                .path()
                .map_or_else(|| staging.to_path_buf(), Path::to_path_buf),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
        })?;
        if e.file_type().is_file()
            && let Some(rel) = e.path().strip_prefix(staging).ok().and_then(Path::to_str)
        {
            staged.push((e.path().to_path_buf(), rel.to_string()));
        }
    }
    for (from, rel) in staged {
        placer.link(&from, &rel)?;
    }
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(staging)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_dir())
        .map(walkdir::DirEntry::into_path)
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = fs::remove_dir(&d);
    }
    Ok(())
}

/// Copies a live install: every file into the staging area inside the
/// target (mtime, mode and, as root, owner kept), one `syncfs` for all of
/// them, then each linked to its name, the directories (empty ones too)
/// made, and a second `syncfs` for the names. So no final name ever holds
/// a file whose data could still be lost, without an fsync per file.
/// Returns the files with the CRC-32 of what was copied. `lock` (a target
/// that was empty) is released and its file removed at the end.
#[allow(clippy::too_many_arguments)]
pub(super) fn copy_install(
    dir: &Path,
    dirs: &[String],
    files: Vec<SourceFile>,
    lock: Option<InstallLock>,
    placer: &mut Placer,
    progress: &dyn Progress,
    report: &mut MigrateReport,
) -> Result<Vec<SourceFile>> {
    fs::create_dir_all(&placer.to).map_err(Error::io("cannot create", &placer.to))?;
    let staging = placer.to.join(STAGING);
    fs::create_dir(&staging).map_err(Error::io("cannot create", &staging))?;
    progress.start(
        "copying",
        files.len() as u64,
        files.iter().map(|f| f.size).sum(),
    );
    let mut out = Vec::with_capacity(files.len());
    let mut buf = vec![0u8; 256 << 10];
    for f in files {
        let src = enclosed_path(dir, &f.rel).map_err(|e| Error::Invalid(e.to_string()))?;
        let staged = enclosed_path(&staging, &f.rel).map_err(|e| Error::Invalid(e.to_string()))?;
        if let Some(p) = staged.parent() {
            fs::create_dir_all(p).map_err(Error::io("cannot create", p))?;
        }
        let (size, crc) = match copy_file(&src, &staged, &mut buf) {
            Ok(x) => x,
            Err(CopyError::Vanished) => {
                report.not_migrated.push(NotMigrated {
                    path: f.rel.clone(),
                    reason: "vanished from the source while copying".into(),
                });
                continue;
            }
            Err(CopyError::Source(e)) => {
                return Err(Error::Unreadable {
                    path: src,
                    source: e,
                });
            }
            Err(CopyError::Target(e)) => return Err(Error::io("cannot write", &staged)(e)),
        };
        report.written += 1;
        report.bytes += size;
        progress.inc(1, size);
        out.push(SourceFile {
            rel: f.rel,
            size,
            crc: Some(crc),
        });
    }
    progress.finish();
    sync_fs(&staging)?;
    for d in dirs {
        let p = enclosed_path(&placer.to, d).map_err(|e| Error::Invalid(e.to_string()))?;
        if !fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            placer.clear(d)?;
            fs::create_dir_all(&p).map_err(Error::io("cannot create", &p))?;
        }
    }
    move_from_staging(&staging, placer)?;
    sync_fs(&placer.to)?;
    if let Some(l) = lock {
        drop(l);
        let _ = fs::remove_file(placer.to.join(LOCK_FILE));
    }
    Ok(out)
}

/// Makes everything written on the target's filesystem durable.
fn sync_fs(p: &Path) -> Result<()> {
    mailvault_recover::stage::sync_filesystem(p).map_err(Error::io("cannot sync", p))
}

enum CopyError {
    Vanished,
    Source(std::io::Error),
    Target(std::io::Error),
}

/// Copies `src` to a new `tmp` (mtime, permissions and, as root, owner
/// kept); returns its size and CRC-32. Not synced: the caller syncs the
/// filesystem once before anything gets its final name.
fn copy_file(src: &Path, tmp: &Path, buf: &mut [u8]) -> std::result::Result<(u64, u32), CopyError> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let mut input = match fs::File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CopyError::Vanished),
        Err(e) => return Err(CopyError::Source(e)),
    };
    let meta = input.metadata().map_err(CopyError::Source)?;
    let _ = fs::remove_file(tmp);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(CopyError::Target)?;
    let mut h = crc32fast::Hasher::new();
    let mut size = 0u64;
    loop {
        let n = match input.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Source(e)),
        };
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(CopyError::Target)?;
        size += n as u64;
    }
    let _ = std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()));
    out.set_permissions(meta.permissions())
        .map_err(CopyError::Target)?;
    out.set_modified(meta.modified().map_err(CopyError::Source)?)
        .map_err(CopyError::Target)?;
    Ok((size, h.finalize()))
}
