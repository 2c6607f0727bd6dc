//! Where archives are read from. [`ArchiveSource`] is the small read-side
//! trait recovery needs (list the volume files, open one); [`LocalDir`] reads
//! a local directory. Remote repositories implement it in the root crate.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A readable, seekable volume.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// A place holding backup archives.
pub trait ArchiveSource: Send + Sync {
    /// File names of everything in the source (non-archive names are ignored by callers).
    ///
    /// # Errors
    /// The source cannot be listed.
    fn list(&self) -> Result<Vec<String>>;
    /// Opens one volume by file name.
    ///
    /// # Errors
    /// Missing or unreadable.
    fn open(&self, name: &str) -> Result<Box<dyn ReadSeek>>;
    /// How to name a volume in messages (a path, or a location with credentials removed).
    fn describe(&self, name: &str) -> String;
}

/// A local backup directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    /// The directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl ArchiveSource for LocalDir {
    fn list(&self) -> Result<Vec<String>> {
        let rd = std::fs::read_dir(&self.dir).map_err(Error::io("cannot list", &self.dir))?;
        Ok(rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
    }

    fn open(&self, name: &str) -> Result<Box<dyn ReadSeek>> {
        let p = self.dir.join(name);
        let f = File::open(&p).map_err(Error::io("cannot open", &p))?;
        Ok(Box::new(BufReader::with_capacity(256 * 1024, f)))
    }

    fn describe(&self, name: &str) -> String {
        format!("`{}`", self.dir.join(name).display())
    }
}
