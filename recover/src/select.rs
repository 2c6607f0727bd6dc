//! Kerio's selection options as path scopes. A [`Selection`] is a list of
//! *roots*: install-relative directories (`store/mail/example.com/john`) or
//! files (`users.cfg`). A restore makes each root exactly its state in the
//! backup and touches nothing outside the roots.
//!
//! | option | roots |
//! |---|---|
//! | none | every mask part below |
//! | `-m cfg` | `mailserver.cfg`, `users.cfg` |
//! | `-m mail` | `store/mail` (every domain, with public folders and lists) |
//! | `-m public` | `store/mail/<each domain>/#public` |
//! | `-m lists` | `store/mail/<each domain>/#lists` |
//! | `-m license`, `sslca`, `sslcert` | `license`, `sslca`, `sslcert` |
//! | `-m spam` | `store/spamassassin` |
//! | `-d D` | `store/mail/D` (with `-m public`/`lists`: only those of D) |
//! | `-d D -u U` | `store/mail/D/U` |
//! | `-d D -u U -f F` | `store/mail/D/U/F` (subfolders included; `F` may be `A/B`) |
//!
//! Inside a root, mailboxes the backup skipped (temporarily disabled users)
//! and the store's logs, queue, tmp, archive and backup directories are never
//! touched.

use std::collections::{BTreeSet, HashSet};

use mailvault_formats::layout::{self, EXCLUDED_STORE_DIRS, MailboxPath};
use mailvault_formats::{Catalog, SkipReason, Skipped};

use crate::error::{Error, Result};
use crate::request::{Part, RestoreRequest};

/// The roots a restore replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Install-relative roots, sorted, none inside another.
    pub roots: Vec<String>,
    /// Install-relative directories inside roots that are never touched
    /// (disabled users' mailboxes, the store's logs, queue, tmp…).
    pub protected: HashSet<String>,
    /// Install-relative paths the backup skipped for a problem (unreadable,
    /// vanished, unsafe names…): the archive cannot restore them, so a
    /// restore leaves whatever is there in place.
    pub skipped: HashSet<String>,
}

/// Whether `rel` or one of its ancestors is in `set`: one lookup per path
/// component, however long the list (a summary may skip 50,000 items).
fn in_or_under(set: &HashSet<String>, rel: &str) -> bool {
    !set.is_empty()
        && (set.contains(rel) || rel.match_indices('/').any(|(i, _)| set.contains(&rel[..i])))
}

fn domains(catalog: &Catalog) -> BTreeSet<String> {
    catalog
        .state()
        .filter_map(|e| MailboxPath::parse(&e.path).map(|m| m.domain.to_string()))
        .collect()
}

impl Selection {
    /// Turns Kerio's options into roots, checked against the backup's state
    /// (`catalog`), what it skipped, and its scope (a partial archive).
    ///
    /// # Errors
    /// Usage errors; a domain, user or folder the backup does not hold.
    pub fn new(
        req: &RestoreRequest,
        catalog: &Catalog,
        skipped: &[Skipped],
        scope: &[String],
    ) -> Result<Self> {
        req.check()?;
        let in_backup = |prefix: &str| catalog.state().any(|e| e.path.starts_with(prefix));
        let mut roots = Vec::new();
        match (&req.domain, &req.user) {
            (Some(d), None) => {
                let base = format!("store/mail/{d}");
                if !in_backup(&format!("{base}/")) {
                    return Err(Error::Request(format!(
                        "domain `{d}` is not in the backup; it holds: {}",
                        domains(catalog).into_iter().collect::<Vec<_>>().join(", ")
                    )));
                }
                match &req.mask {
                    None => roots.push(base),
                    Some(parts) => {
                        for p in parts {
                            match p {
                                Part::Mail => roots.push(base.clone()),
                                Part::Public => roots.push(format!("{base}/#public")),
                                Part::Lists => roots.push(format!("{base}/#lists")),
                                other => {
                                    return Err(Error::Usage(format!(
                                        "mask part `{}` cannot be combined with -d: use mail, public or lists",
                                        other.word()
                                    )));
                                }
                            }
                        }
                    }
                }
            }
            (Some(domain), Some(u)) => {
                let mut root = format!("store/mail/{domain}/{u}");
                if !in_backup(&format!("{root}/")) {
                    let disabled = skipped
                        .iter()
                        .any(|k| k.reason == SkipReason::DisabledUser && k.path == root);
                    if disabled {
                        return Err(Error::Request(format!(
                            "user `{u}@{domain}` was disabled when this backup was taken, so it is not in it \
                             (Kerio leaves disabled users out): an older backup may hold the mailbox (--at, or name its archive)"
                        )));
                    }
                    return Err(Error::Request(format!(
                        "user `{u}@{domain}` is not in the backup"
                    )));
                }
                if let Some(f) = &req.folder {
                    root = format!("{root}/{f}");
                    if !in_backup(&format!("{root}/")) {
                        return Err(Error::Request(format!(
                            "folder `{f}` of `{u}@{domain}` is not in the backup"
                        )));
                    }
                }
                roots.push(root);
            }
            (None, Some(_)) => return Err(Error::Usage("-u/--user needs -d/--domain".into())),
            (None, None) => {
                let explicit = req.mask.is_some();
                let parts = req.mask.clone().unwrap_or_else(|| Part::ALL.to_vec());
                for p in parts {
                    let before = roots.len();
                    match p {
                        Part::Cfg => {
                            roots.extend(layout::CONFIG_FILES.iter().map(|s| (*s).to_string()))
                        }
                        Part::Mail => roots.push("store/mail".into()),
                        Part::Public => roots.extend(
                            domains(catalog)
                                .into_iter()
                                .map(|d| format!("store/mail/{d}/#public")),
                        ),
                        Part::Lists => roots.extend(
                            domains(catalog)
                                .into_iter()
                                .map(|d| format!("store/mail/{d}/#lists")),
                        ),
                        Part::License => roots.push("license".into()),
                        Part::Sslca => roots.push("sslca".into()),
                        Part::Sslcert => roots.push("sslcert".into()),
                        Part::Spam => roots.push("store/spamassassin".into()),
                    }
                    // A part the backup does not hold (Kerio 6.x archives have no license/
                    // or sslcert/) is left alone: restoring "nothing" must not delete it.
                    let added: Vec<String> = roots.split_off(before);
                    let (held, absent): (Vec<String>, Vec<String>) = added
                        .into_iter()
                        .partition(|r| in_backup(r) || in_backup(&format!("{r}/")));
                    if explicit && held.is_empty() {
                        return Err(Error::Request(format!(
                            "the backup holds nothing for mask part `{}` ({})",
                            p.word(),
                            absent.join(", ")
                        )));
                    }
                    roots.extend(held);
                }
            }
        }
        // A partial archive (a safety copy) replaces nothing outside its scope:
        // a root above a scope root narrows to it, a root outside every scope root goes.
        if !scope.is_empty() {
            let within = layout::within;
            let asked = std::mem::take(&mut roots);
            for r in &asked {
                if scope.iter().any(|s| within(r, s)) {
                    roots.push(r.clone());
                } else {
                    roots.extend(scope.iter().filter(|s| within(s, r)).cloned());
                }
            }
            if roots.is_empty() {
                return Err(Error::Request(format!(
                    "this archive holds only {}: nothing of the selection ({}) is in it",
                    scope.join(", "),
                    asked.join(", ")
                )));
            }
        }
        roots.sort();
        roots.dedup();
        // Drop roots inside other roots.
        let all = roots.clone();
        roots.retain(|r| {
            !all.iter()
                .any(|o| o != r && r.starts_with(&format!("{o}/")))
        });
        let mut protected: HashSet<String> = skipped
            .iter()
            .filter(|s| s.reason == SkipReason::DisabledUser)
            .map(|s| s.path.clone())
            .collect();
        protected.extend(EXCLUDED_STORE_DIRS.iter().map(|d| format!("store/{d}")));
        let skipped = skipped
            .iter()
            .filter(|s| s.reason != SkipReason::DisabledUser)
            .map(|s| s.path.clone())
            .collect();
        Ok(Self {
            roots,
            protected,
            skipped,
        })
    }

    /// Whether an install-relative path lies in a root and is not protected.
    #[must_use]
    pub fn contains(&self, rel: &str) -> bool {
        self.roots.iter().any(|r| layout::within(rel, r)) && !self.is_protected(rel)
    }

    /// Whether a path is protected (never touched).
    #[must_use]
    pub fn is_protected(&self, rel: &str) -> bool {
        in_or_under(&self.protected, rel)
    }

    /// Whether the backup skipped this path (or a directory holding it).
    #[must_use]
    pub fn was_skipped(&self, rel: &str) -> bool {
        in_or_under(&self.skipped, rel)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use mailvault_formats::{CatalogEntry, Location, Mtime, RelPath};

    use super::*;

    fn catalog(paths: &[&str]) -> Catalog {
        Catalog {
            entries: paths
                .iter()
                .map(|p| CatalogEntry {
                    path: RelPath::new(*p).unwrap(),
                    size: 1,
                    mtime: Mtime::default(),
                    crc32: 0,
                    location: Location::Volume(0),
                })
                .collect(),
        }
    }

    const PATHS: [&str; 6] = [
        "users.cfg",
        "store/mail/a.cz/jan/INBOX/#msgs/00000001.eml",
        "store/mail/a.cz/jan/Projects/2026/#msgs/00000001.eml",
        "store/mail/a.cz/#public/News/#msgs/00000001.eml",
        "store/mail/b.cz/jan/INBOX/#msgs/00000001.eml",
        "store/mail/b.cz/eva/INBOX/#msgs/00000001.eml",
    ];

    fn req(d: Option<&str>, u: Option<&str>, f: Option<&str>) -> RestoreRequest {
        let mut r = RestoreRequest::new("/i");
        r.domain = d.map(Into::into);
        r.user = u.map(Into::into);
        r.folder = f.map(Into::into);
        r
    }

    #[test]
    fn mask_words() {
        assert_eq!(Part::parse("sslcert").unwrap(), Part::Sslcert);
        assert_eq!(Part::parse("spamassassin").unwrap(), Part::Spam);
        assert!(
            Part::parse("everything")
                .unwrap_err()
                .to_string()
                .contains("use cfg, mail")
        );
    }

    #[test]
    fn roots_for_kerio_options() {
        let c = catalog(&PATHS);
        let skipped = [
            Skipped {
                reason: SkipReason::DisabledUser,
                path: "store/mail/a.cz/old".into(),
            },
            Skipped {
                reason: SkipReason::Unreadable,
                path: "store/mail/a.cz/jan/INBOX/#msgs/00000009.eml".into(),
            },
        ];
        let sel = |r: &RestoreRequest| Selection::new(r, &c, &skipped, &[]);
        let s = sel(&req(Some("a.cz"), Some("jan"), Some("Projects"))).unwrap();
        assert_eq!(s.roots, ["store/mail/a.cz/jan/Projects"]);
        assert!(s.contains("store/mail/a.cz/jan/Projects/2026/#msgs/00000001.eml"));
        assert!(
            !s.contains("store/mail/a.cz/jan/Projects2/x"),
            "a root is a whole path component"
        );
        assert!(!s.contains("store/mail/a.cz/jan/INBOX/#msgs/00000001.eml"));
        assert!(s.was_skipped("store/mail/a.cz/jan/INBOX/#msgs/00000009.eml"));
        assert!(
            sel(&req(None, Some("eva"), None)).unwrap_err().is_usage(),
            "-u needs -d"
        );
        assert!(sel(&req(None, None, Some("INBOX"))).unwrap_err().is_usage());
        let e = sel(&req(Some("c.cz"), None, None)).unwrap_err().to_string();
        assert!(
            e.contains("not in the backup") && e.contains("a.cz, b.cz"),
            "{e}"
        );
        assert!(sel(&req(Some("../x"), None, None)).is_err());
        let e = sel(&req(Some("a.cz"), Some("nobody"), None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`nobody@a.cz` is not in the backup"), "{e}");
        // Everything: parts the backup lacks are left out; skipped mailboxes are protected.
        let all = sel(&req(None, None, None)).unwrap();
        assert_eq!(all.roots, ["store/mail", "users.cfg"]);
        assert!(all.is_protected("store/mail/a.cz/old/INBOX/#msgs/00000001.eml"));
        assert!(!all.contains("store/logs/mail.log"));
        let mut lic = RestoreRequest::new("/i");
        lic.mask = Some(vec![Part::License]);
        assert!(
            sel(&lic)
                .unwrap_err()
                .to_string()
                .contains("holds nothing for mask part `license`")
        );
        let mut public = RestoreRequest::new("/i");
        public.mask = Some(vec![Part::Public]);
        assert_eq!(sel(&public).unwrap().roots, ["store/mail/a.cz/#public"]);
    }

    #[test]
    fn a_partial_archive_narrows_to_its_scope() {
        let c = catalog(&PATHS);
        let scope = vec!["store/mail/a.cz/jan".to_string()];
        let s = Selection::new(&req(None, None, None), &c, &[], &scope).unwrap();
        assert_eq!(s.roots, scope);
        let e = Selection::new(&req(Some("b.cz"), None, None), &c, &[], &scope).unwrap_err();
        assert!(
            e.to_string().contains("holds only store/mail/a.cz/jan"),
            "{e}"
        );
    }
}
