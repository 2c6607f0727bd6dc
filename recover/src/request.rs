//! What a restore is asked to do ([`RestoreRequest`]: Kerio's options plus
//! mailvault's), and where restored files go ([`Destination`]: Kerio's
//! `-c`/`-s`, `--into`, `--as-folder`). The one place archive paths become
//! filesystem paths is [`Destination::dest`], through
//! `layout::enclosed_path`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use mailvault_formats::layout::{self, enclosed_path};
use mailvault_repo::chain::Pick;
use serde::Serialize;

use crate::error::{Error, Result};

/// Names a restore reserves in a destination for itself (docs/kmsrecover.md).
/// Staging area directory name.
pub const STAGING_DIR: &str = ".kmsrecover-staging";
/// The install's restore lock.
pub const LOCK_FILE: &str = ".kmsrecover.lock";
/// Present in an `--into` directory while a restore fills it: if a run is
/// killed, the next `--into` there knows the content is that run's (never
/// written by an in-place restore, so a live install is never taken for
/// one).
pub const INTO_MARKER: &str = ".kmsrecover-into";
/// First line of [`INTO_MARKER`]; then `pid N` and one `created NAME` line
/// per top-level entry the run creates.
pub const INTO_MARKER_MAGIC: &str = "kmsrecover --into 1";

/// Whether a directory entry is the restore's own (its staging area or its
/// lock): exact names, so a user's `.kmsrecover notes` folder is data.
#[must_use]
pub fn is_ours(name: &OsStr) -> bool {
    name == STAGING_DIR || name == LOCK_FILE || name == INTO_MARKER
}

/// Parts of `-m/--mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// `cfg`: mailserver.cfg and users.cfg.
    Cfg,
    /// `mail`: the whole mail store.
    Mail,
    /// `lists`: mailing-list data.
    Lists,
    /// `public`: public folders.
    Public,
    /// `license`.
    License,
    /// `sslca`.
    Sslca,
    /// `sslcert`.
    Sslcert,
    /// `spam`: the SpamAssassin database.
    Spam,
}

impl Part {
    /// Every part (what a restore without `-m` takes).
    pub const ALL: [Part; 8] = [
        Part::Cfg,
        Part::Mail,
        Part::Lists,
        Part::Public,
        Part::License,
        Part::Sslca,
        Part::Sslcert,
        Part::Spam,
    ];

    /// The mask word.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Cfg => "cfg",
            Self::Mail => "mail",
            Self::Lists => "lists",
            Self::Public => "public",
            Self::License => "license",
            Self::Sslca => "sslca",
            Self::Sslcert => "sslcert",
            Self::Spam => "spam",
        }
    }

    /// Parses one mask word.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the known words.
    pub fn parse(word: &str) -> Result<Self> {
        Ok(match word.trim() {
            "cfg" => Self::Cfg,
            "mail" => Self::Mail,
            "lists" => Self::Lists,
            "public" => Self::Public,
            "license" => Self::License,
            "sslca" => Self::Sslca,
            "sslcert" => Self::Sslcert,
            "spam" | "spamassassin" => Self::Spam,
            other => {
                return Err(Error::Usage(format!(
                    "unknown mask part `{other}`: use cfg, mail, lists, public, license, sslca, sslcert, spam"
                )));
            }
        })
    }
}

/// Where restored files go.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    /// Configuration files, licences and certificates (`-c`, default the install dir).
    pub cfg_dir: PathBuf,
    /// Store data (`-s`, default `<install>/store`).
    pub store_dir: PathBuf,
    /// `--into`: a new or empty directory instead of the install (nothing live is touched).
    pub into: bool,
    /// `--as-folder`: (backed-up folder root, new root) to restore a folder beside the live ones.
    pub rename: Option<(String, String)>,
}

impl Destination {
    /// The Kerio layout under an install directory.
    pub fn install(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            store_dir: dir.join("store"),
            cfg_dir: dir,
            into: false,
            rename: None,
        }
    }

    /// A new or empty directory (`--into`).
    pub fn into_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            into: true,
            ..Self::install(dir)
        }
    }

    /// Where an install-relative path goes: the one place archive paths
    /// become filesystem paths (through `enclosed_path`).
    ///
    /// # Errors
    /// An unsafe path.
    pub fn dest(&self, rel: &str) -> Result<PathBuf> {
        let mapped;
        let rel = match &self.rename {
            Some((from, to)) if layout::within(rel, from) => {
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
        r.map_err(|e| Error::Unsafe {
            path: rel.to_string(),
            reason: e.to_string(),
        })
    }

    /// The directory that holds the restore's lock and staging areas.
    #[must_use]
    pub fn anchor(&self) -> &Path {
        &self.cfg_dir
    }
}

/// A path with every link and `..` resolved, as far as it exists; the part
/// that does not exist yet is appended as given (to compare places that
/// may not exist yet: a target inside a source, a backup inside a restore).
#[must_use]
pub fn physical(p: &std::path::Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = std::fs::canonicalize(cur) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return abs,
        }
    }
}

/// What the admin asked for.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// Which state: newest, at a time, or a named archive.
    pub pick: Pick,
    /// `-d`.
    pub domain: Option<String>,
    /// `-u` (needs `-d`).
    pub user: Option<String>,
    /// `-f` (needs `-d` and `-u`).
    pub folder: Option<String>,
    /// `-m` (None: everything).
    pub mask: Option<Vec<Part>>,
    /// Where files go.
    pub destination: Destination,
    /// `--as-folder NAME`: restore the folder (`-d -u -f`) under this name beside the live ones.
    pub as_folder: Option<String>,
    /// Restore what is intact from a damaged archive, remove nothing, list what is not restored.
    pub salvage: bool,
    /// Directories never touched, wherever they lie inside what is
    /// restored: the backup directory being read, the safety copies.
    pub untouchable: Vec<PathBuf>,
    /// Refuse a destination that does not look like an install (a
    /// mistyped `--install-dir`); off when `-s`/`-c` name new places.
    pub require_install: bool,
}

impl RestoreRequest {
    /// Everything from the newest backup into an install.
    pub fn new(install_dir: impl Into<PathBuf>) -> Self {
        Self {
            pick: Pick::Newest,
            domain: None,
            user: None,
            folder: None,
            mask: None,
            destination: Destination::install(install_dir),
            as_folder: None,
            salvage: false,
            untouchable: Vec::new(),
            require_install: true,
        }
    }

    /// Checks the options against each other (Kerio's rules).
    ///
    /// # Errors
    /// [`Error::Usage`].
    pub fn check(&self) -> Result<()> {
        for (what, v) in [
            ("domain", &self.domain),
            ("user", &self.user),
            ("folder", &self.folder),
        ] {
            // A folder may be nested (`A/B`); a domain or user is one path component.
            if let Some(v) = v
                && (layout::check_relative(v).is_err() || (what != "folder" && v.contains('/')))
            {
                return Err(Error::Usage(format!("bad {what} `{v}`")));
            }
        }
        if self.user.is_some() && self.domain.is_none() {
            return Err(Error::Usage("-u/--user needs -d/--domain".into()));
        }
        if self.folder.is_some() && self.user.is_none() {
            return Err(Error::Usage(
                "-f/--folder needs -d/--domain and -u/--user".into(),
            ));
        }
        if self.as_folder.is_some() && self.folder.is_none() {
            return Err(Error::Usage("--as-folder needs -d, -u and -f".into()));
        }
        if let Some(n) = &self.as_folder
            && (n.is_empty()
                || n.contains('/')
                || layout::check_relative(n).is_err()
                || n == STAGING_DIR
                || n == LOCK_FILE)
        {
            return Err(Error::Usage(format!("bad --as-folder name `{n}`")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn destinations_follow_cfgdir_store_and_rename() {
        let mut t = Destination::install("/opt/kerio/mailserver");
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
            "store/a\nb",
        ] {
            assert!(t.dest(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kerio_option_rules_are_usage_errors() {
        let mut r = RestoreRequest::new("/i");
        r.user = Some("john".into());
        assert!(r.check().unwrap_err().is_usage(), "-u without -d");
        r.domain = Some("a.cz".into());
        r.check().unwrap();
        r.user = None;
        r.folder = Some("INBOX".into());
        assert!(r.check().unwrap_err().is_usage(), "-f without -u");
        assert!(Part::parse("everything").unwrap_err().is_usage());
    }
}
