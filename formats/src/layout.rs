//! Where things live inside an archive and in an install
//! (docs/formats/archive.md, "Entries"): `.version.txt` first, the backed-up
//! items under `@backup/<install-relative path>`, then `.catalog.tsv` (last
//! volume) and `.summary.txt` last. Readers also accept `mailserver.cfg` and
//! `users.cfg` at the archive root, as older Kerio archives have them.
//!
//! [`enclosed_path`] is the one function through which an archive path may
//! reach the filesystem.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Directory holding the backed-up items.
pub const BACKUP_PREFIX: &str = "@backup/";
/// First entry of every volume.
pub const VERSION_ENTRY: &str = ".version.txt";
/// Last entry of every volume.
pub const SUMMARY_ENTRY: &str = ".summary.txt";
/// The catalog, just before `.summary.txt` in the last volume.
pub const CATALOG_ENTRY: &str = ".catalog.tsv";

/// Top-level items of an install that a backup takes, besides `store/`.
pub const CONFIG_FILES: [&str; 2] = ["mailserver.cfg", "users.cfg"];
/// Top-level directories of an install that a backup takes, besides `store/`.
pub const CONFIG_DIRS: [&str; 3] = ["license", "sslca", "sslcert"];
/// Directories directly under `store/` that are never backed up.
pub const EXCLUDED_STORE_DIRS: [&str; 5] = ["logs", "queue", "tmp", "archive", "backup"];

/// The archive entry name of an install-relative path.
#[must_use]
pub fn entry_name(rel: &str) -> String {
    let mut s = String::with_capacity(BACKUP_PREFIX.len() + rel.len());
    s.push_str(BACKUP_PREFIX);
    s.push_str(rel);
    s
}

/// The install-relative path of an archive entry, or `None` for entries that
/// are not backed-up items (`.version.txt`, directories, unknown files).
#[must_use]
pub fn rel_of_entry(name: &str) -> Option<&str> {
    if let Some(rel) = name.strip_prefix(BACKUP_PREFIX) {
        return (!rel.is_empty() && !rel.ends_with('/')).then_some(rel);
    }
    CONFIG_FILES.contains(&name).then_some(name)
}

/// Checks that `rel` is a safe relative path: not empty, `/`-separated, no
/// absolute path, drive letter, backslash, NUL, empty, `.` or `..` component.
///
/// # Errors
/// [`Error::UnsafePath`] naming the rule broken.
pub fn check_relative(rel: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::UnsafePath {
            path: rel.to_string(),
            reason,
        })
    };
    if rel.is_empty() {
        return bad("empty path");
    }
    if rel.starts_with('/') {
        return bad("absolute path");
    }
    if rel.contains('\\') {
        return bad("backslash in path");
    }
    if rel.contains('\0') {
        return bad("NUL in path");
    }
    // Line breaks and other control characters: legal on Linux, but they
    // break line-oriented tools and listings; the backup skips such names
    // (`unsafe-name`) and every reader refuses them.
    if rel.chars().any(char::is_control) {
        return bad("control character in path");
    }
    let b = rel.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return bad("drive letter");
    }
    for part in rel.split('/') {
        match part {
            "" => return bad("empty component"),
            "." | ".." => return bad("`.` or `..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Joins a checked relative archive path under `root`. The only way an archive
/// path may become a filesystem path.
///
/// # Errors
/// The path is not safe (see [`check_relative`]).
pub fn enclosed_path(root: &Path, rel: &str) -> Result<PathBuf> {
    check_relative(rel)?;
    let mut p = root.to_path_buf();
    p.extend(rel.split('/'));
    Ok(p)
}

/// An install-relative path that passed [`check_relative`]: the only kind of
/// path the catalog, the restore plan and the chain reader carry, so that
/// "inside this root" is a property of the type rather than of each caller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    /// Checks `rel` and wraps it.
    ///
    /// # Errors
    /// [`Error::UnsafePath`] naming the rule broken.
    pub fn new(rel: impl Into<String>) -> Result<Self> {
        let rel = rel.into();
        check_relative(&rel)?;
        Ok(Self(rel))
    }

    /// The path text (`store/mail/…`).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path below `root` (never outside it).
    #[must_use]
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        p.extend(self.0.split('/'));
        p
    }

    /// Whether this path is `root` or lies below it (whole components).
    #[must_use]
    pub fn is_within(&self, root: &str) -> bool {
        within(&self.0, root)
    }
}

/// Whether `path` is `root` or lies below it, comparing whole components
/// (`a/bc` is not within `a/b`).
#[must_use]
pub fn within(path: &str, root: &str) -> bool {
    path == root
        || (path.len() > root.len()
            && path.starts_with(root)
            && path.as_bytes()[root.len()] == b'/')
}

impl std::ops::Deref for RelPath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RelPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RelPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

/// A mailbox in the store: `store/mail/<domain>/<mailbox>/…`, where the
/// mailbox is a user name, `#public` or another `#` directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxPath<'a> {
    /// Domain directory name.
    pub domain: &'a str,
    /// Mailbox directory name (user login without domain, or `#public`).
    pub mailbox: &'a str,
    /// The rest below the mailbox (folder path and file), maybe empty.
    pub rest: &'a str,
}

impl<'a> MailboxPath<'a> {
    /// Splits an install-relative path, if it lies inside a mailbox.
    #[must_use]
    pub fn parse(rel: &'a str) -> Option<Self> {
        let rest = rel.strip_prefix("store/mail/")?;
        let mut parts = rest.splitn(3, '/');
        let domain = parts.next()?;
        let mailbox = parts.next()?;
        Some(Self {
            domain,
            mailbox,
            rest: parts.next().unwrap_or(""),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_round_trip_and_accept_root_cfg() {
        assert_eq!(entry_name("users.cfg"), "@backup/users.cfg");
        assert_eq!(
            rel_of_entry("@backup/store/mail/a/b/INBOX/#msgs/00000001.eml"),
            Some("store/mail/a/b/INBOX/#msgs/00000001.eml")
        );
        assert_eq!(rel_of_entry("users.cfg"), Some("users.cfg"));
        assert_eq!(rel_of_entry(".version.txt"), None);
        assert_eq!(rel_of_entry("@backup/store/"), None);
    }

    #[test]
    fn refuses_hostile_paths() {
        for p in [
            "",
            "/etc/passwd",
            "a/../../b",
            "..",
            "./a",
            "a//b",
            "C:/x",
            "a\\..\\b",
            "a\0b",
            "a\nb",
            "a/b\r",
        ] {
            assert!(enclosed_path(Path::new("/r"), p).is_err(), "{p:?}");
        }
        assert_eq!(
            enclosed_path(Path::new("/r"), "store/a b/#msgs").unwrap(),
            Path::new("/r/store/a b/#msgs")
        );
    }

    #[test]
    fn rel_paths_are_checked_and_compare_by_component() {
        assert!(RelPath::new("../x").is_err());
        let p = RelPath::new("store/mail/a.cz/jan").unwrap();
        assert!(p.is_within("store/mail/a.cz") && p.is_within("store/mail/a.cz/jan"));
        assert!(!p.is_within("store/mail/a.c") && !p.is_within("store/mail/a.cz/ja"));
        assert_eq!(
            p.under(Path::new("/r")),
            Path::new("/r/store/mail/a.cz/jan")
        );
    }

    #[test]
    fn splits_mailbox_paths() {
        let m = MailboxPath::parse("store/mail/example.com/john/Sent Items/#msgs/00000001.eml")
            .unwrap();
        assert_eq!(
            (m.domain, m.mailbox, m.rest),
            ("example.com", "john", "Sent Items/#msgs/00000001.eml")
        );
        assert!(MailboxPath::parse("store/spamassassin/bayes_toks").is_none());
    }
}
