//! The safety copy a restore takes before it replaces live data: a `C`
//! archive of the roots about to change, written by the backup engine into
//! a `safety-copies/` directory beside the chains (never into a chain: a
//! partial copy there would become the directory's newest "full"). Its
//! `.version.txt` records its scope, so restoring it (the undo) replaces
//! nothing outside what it holds.

use std::path::{Path, PathBuf};

use mailvault_formats::ArchiveKind;
use mailvault_recover::{Destination, SafetyCopier};

use crate::backup::{self, BackupOptions};
use crate::progress::NoProgress;

/// Name of the directory safety copies go to, inside a backup directory.
pub const SAFETY_DIR: &str = "safety-copies";

/// Takes safety copies into a directory.
#[derive(Debug, Clone)]
pub struct ArchiveSafetyCopy {
    /// Where the `C` archives go.
    pub dir: PathBuf,
}

impl ArchiveSafetyCopy {
    /// Safety copies for restores from `backup_dir`: into its
    /// `safety-copies/`, or into `backup_dir` itself when it is already a
    /// safety-copies directory (an undo does not nest them).
    #[must_use]
    pub fn beside(backup_dir: &Path) -> Self {
        let dir = if backup_dir.file_name().is_some_and(|n| n == SAFETY_DIR) {
            backup_dir.to_path_buf()
        } else {
            backup_dir.join(SAFETY_DIR)
        };
        Self { dir }
    }
}

impl SafetyCopier for ArchiveSafetyCopy {
    fn take(&self, dest: &Destination, roots: &[String], note: &str) -> Result<String, String> {
        let mut opts = BackupOptions::new(ArchiveKind::Copy, &dest.cfg_dir);
        opts.store_dir = Some(dest.store_dir.clone());
        opts.backup_dir.clone_from(&self.dir);
        opts.only = Some(roots.to_vec());
        opts.notes = vec![note.to_string()];
        let s = backup::run_backup(&opts, &NoProgress).map_err(|e| e.to_string())?;
        Ok(s.volumes.first().cloned().unwrap_or(s.archive))
    }

    fn location(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }
}
