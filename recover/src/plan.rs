//! The restore plan: for each selected root, which files will be written
//! (new or replacing a different one), which left alone (same size, mtime and
//! CRC-32 already), and which deleted (present, in scope, absent from the
//! backup). `-l`/`--dry-run` print it; [`crate::apply`] carries it out.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use mailvault_formats::layout::enclosed_path;
use mailvault_formats::{Location, Mtime};
use serde::Serialize;

use crate::chain::{Chain, StateFile};
use crate::error::{Error, Result};
use crate::select::Selection;

/// Where restored files go (Kerio's `-c` and `-s`).
#[derive(Debug, Clone)]
pub struct Targets {
    /// Configuration files, licences and certificates (`-c`, default the install dir).
    pub cfg_dir: PathBuf,
    /// Store data (`-s`, default `<install>/store`).
    pub store_dir: PathBuf,
    /// `--as-folder`: (backed-up folder root, new name) to restore a folder beside the live ones.
    pub rename: Option<(String, String)>,
}

impl Targets {
    /// The Kerio layout under an install directory.
    pub fn install(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            store_dir: dir.join("store"),
            cfg_dir: dir,
            rename: None,
        }
    }

    /// Where an install-relative path goes. The one place archive paths become
    /// filesystem paths (through `enclosed_path`).
    ///
    /// # Errors
    /// An unsafe path.
    pub fn dest(&self, rel: &str) -> Result<PathBuf> {
        let mapped;
        let rel = match &self.rename {
            Some((from, to)) if rel == from || rel.starts_with(&format!("{from}/")) => {
                mapped = format!("{to}{}", &rel[from.len()..]);
                mapped.as_str()
            }
            _ => rel,
        };
        let r = match rel.strip_prefix("store/") {
            Some(rest) => enclosed_path(&self.store_dir, rest),
            None if rel == "store" => Ok(self.store_dir.clone()),
            None => enclosed_path(&self.cfg_dir, rel),
        };
        r.map_err(|e| Error::Request(e.to_string()))
    }
}

/// One file to write.
#[derive(Debug, Clone, Serialize)]
pub struct Write {
    /// Install-relative path (as in the backup).
    pub rel: String,
    /// Destination.
    pub dest: PathBuf,
    /// 0 = the full, 1 = the differential.
    pub set: u8,
    /// Volume in that set.
    pub volume: u32,
    /// Size, CRC-32 and mtime from the catalog.
    pub size: u64,
    /// CRC-32.
    pub crc32: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Whether a different file is there now.
    pub replace: bool,
}

/// One selected root.
#[derive(Debug, Clone, Serialize)]
pub struct Root {
    /// Install-relative root.
    pub rel: String,
    /// Its destination.
    pub dest: PathBuf,
    /// Whether the root is a single file (`users.cfg`) rather than a directory.
    pub is_file: bool,
    /// Whether it has anything to change.
    pub changes: bool,
}

/// Everything a restore will do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestorePlan {
    /// The roots replaced.
    pub roots: Vec<Root>,
    /// Files to write.
    pub writes: Vec<Write>,
    /// Files to delete.
    pub deletes: Vec<PathBuf>,
    /// Files already identical.
    pub unchanged: u64,
    /// Bytes to write.
    pub bytes: u64,
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

/// Computes the plan of restoring `sel` from `chain` into `targets`.
///
/// # Errors
/// Unsafe paths, unreadable target directories, inconsistent catalogs.
pub fn plan(chain: &Chain, sel: &Selection, targets: &Targets) -> Result<RestorePlan> {
    let state = chain.state()?;
    let mut out = RestorePlan::default();
    let mut wanted: HashSet<PathBuf> = HashSet::new();
    for f in state.iter().filter(|f| sel.contains(&f.entry.path)) {
        let dest = targets.dest(&f.entry.path)?;
        wanted.insert(dest.clone());
        if same_file(&dest, f) {
            out.unchanged += 1;
            continue;
        }
        out.bytes += f.entry.size;
        let replace = dest.exists();
        debug_assert!(matches!(
            f.entry.location,
            Location::Volume(_) | Location::Base
        ));
        out.writes.push(Write {
            rel: f.entry.path.clone(),
            dest,
            set: f.set,
            volume: f.volume,
            size: f.entry.size,
            crc32: f.entry.crc32,
            mtime: (f.entry.mtime.secs, f.entry.mtime.nanos),
            replace,
        });
    }
    for root in &sel.roots {
        let dest = targets.dest(root)?;
        let is_file = state.iter().any(|f| &f.entry.path == root)
            || (dest.is_file()
                && !state
                    .iter()
                    .any(|f| f.entry.path.starts_with(&format!("{root}/"))));
        let before = out.deletes.len();
        if dest.is_dir() {
            for e in walkdir(&dest)? {
                let rel_in_root = e
                    .strip_prefix(&dest)
                    .unwrap_or(&e)
                    .to_string_lossy()
                    .replace('\\', "/");
                let rel = format!("{root}/{rel_in_root}");
                if !wanted.contains(&e) && !sel.is_protected(&rel) && !is_leftover(&e) {
                    out.deletes.push(e);
                }
            }
        } else if dest.is_file() && !wanted.contains(&dest) {
            out.deletes.push(dest.clone());
        }
        let changes =
            out.deletes.len() > before || out.writes.iter().any(|w| w.dest.starts_with(&dest));
        out.roots.push(Root {
            rel: root.clone(),
            dest,
            is_file,
            changes,
        });
    }
    Ok(out)
}

/// Staging directories of an interrupted restore are not data.
pub(crate) fn is_leftover(p: &Path) -> bool {
    p.components().any(|c| {
        c.as_os_str()
            .to_string_lossy()
            .starts_with(crate::apply::STAGING_PREFIX)
    })
}

/// Every non-directory under `dir`, sorted.
fn walkdir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(Error::io("cannot list", &d))? {
            let e = e.map_err(Error::io("cannot list", &d))?;
            let t = e.file_type().map_err(Error::io("cannot stat", e.path()))?;
            if t.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_follow_cfgdir_store_and_rename() {
        let mut t = Targets::install("/opt/kerio/mailserver");
        t.store_dir = PathBuf::from("/srv/store");
        assert_eq!(
            t.dest("users.cfg").unwrap(),
            Path::new("/opt/kerio/mailserver/users.cfg")
        );
        assert_eq!(
            t.dest("store/mail/a/b/INBOX/x").unwrap(),
            Path::new("/srv/store/mail/a/b/INBOX/x")
        );
        t.rename = Some((
            "store/mail/a/b/INBOX".into(),
            "store/mail/a/b/Restored".into(),
        ));
        assert_eq!(
            t.dest("store/mail/a/b/INBOX/#msgs/1.eml").unwrap(),
            Path::new("/srv/store/mail/a/b/Restored/#msgs/1.eml")
        );
        assert_eq!(
            t.dest("store/mail/a/b/INBOX2/x").unwrap(),
            Path::new("/srv/store/mail/a/b/INBOX2/x"),
            "a prefix is a whole component"
        );
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "store/../../x",
            "store/mail/a\\b",
        ] {
            assert!(t.dest(bad).is_err(), "{bad}");
        }
    }
}
