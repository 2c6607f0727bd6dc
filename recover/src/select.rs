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

use std::collections::BTreeSet;

use mailvault_formats::layout::{self, EXCLUDED_STORE_DIRS, MailboxPath};

use crate::chain::Chain;
use crate::error::{Error, Result};

/// Parts of `-m/--mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

    /// Parses one mask word.
    ///
    /// # Errors
    /// Unknown word, naming the known ones.
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
                return Err(Error::Request(format!(
                    "unknown mask part `{other}`: use cfg, mail, lists, public, license, sslca, sslcert, spam"
                )));
            }
        })
    }
}

/// What the admin asked for (Kerio's options).
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// `-d`.
    pub domain: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-f`.
    pub folder: Option<String>,
    /// `-m` (None: everything).
    pub mask: Option<Vec<Part>>,
}

/// The roots a restore replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Install-relative roots, sorted, none inside another.
    pub roots: Vec<String>,
    /// Install-relative directories inside roots that are never touched.
    pub protected: Vec<String>,
}

fn domains(chain: &Chain) -> BTreeSet<String> {
    chain
        .newest()
        .catalog
        .state()
        .filter_map(|e| MailboxPath::parse(&e.path).map(|m| m.domain.to_string()))
        .collect()
}

impl Selection {
    /// Turns Kerio's options into roots, checked against the backup's contents.
    ///
    /// # Errors
    /// `-f` without `-d` and `-u`; a domain, user or folder the backup does not hold.
    pub fn new(req: &RestoreRequest, chain: &Chain) -> Result<Self> {
        for (what, v) in [
            ("domain", &req.domain),
            ("user", &req.user),
            ("folder", &req.folder),
        ] {
            // A folder may be nested (`A/B`); a domain or user is one path component.
            if let Some(v) = v
                && (layout::check_relative(v).is_err() || (what != "folder" && v.contains('/')))
            {
                return Err(Error::Request(format!("bad {what} `{v}`")));
            }
        }
        if req.folder.is_some() && (req.domain.is_none() || req.user.is_none()) {
            return Err(Error::Request(
                "-f/--folder needs -d/--domain and -u/--user".into(),
            ));
        }
        let in_backup = |prefix: &str| {
            chain
                .newest()
                .catalog
                .state()
                .any(|e| e.path.starts_with(prefix))
        };
        let mut roots = Vec::new();
        match (&req.domain, &req.user) {
            (Some(d), None) => {
                let base = format!("store/mail/{d}");
                if !in_backup(&format!("{base}/")) {
                    return Err(Error::Request(format!(
                        "domain `{d}` is not in the backup; it holds: {}",
                        domains(chain).into_iter().collect::<Vec<_>>().join(", ")
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
                                    return Err(Error::Request(format!(
                                        "mask `{other:?}` cannot be combined with -d: use mail, public or lists"
                                    )));
                                }
                            }
                        }
                    }
                }
            }
            (d, Some(u)) => {
                let domain = match d {
                    Some(d) => d.clone(),
                    None => {
                        let found: BTreeSet<String> = chain
                            .newest()
                            .catalog
                            .state()
                            .filter_map(|e| {
                                MailboxPath::parse(&e.path)
                                    .filter(|m| m.mailbox == u)
                                    .map(|m| m.domain.to_string())
                            })
                            .collect();
                        match found.len() {
                            1 => found.into_iter().next().unwrap_or_default(),
                            0 => {
                                return Err(Error::Request(format!(
                                    "user `{u}` is not in the backup"
                                )));
                            }
                            _ => {
                                return Err(Error::Request(format!(
                                    "user `{u}` exists in several domains ({}): give -d",
                                    found.into_iter().collect::<Vec<_>>().join(", ")
                                )));
                            }
                        }
                    }
                };
                let mut root = format!("store/mail/{domain}/{u}");
                if !in_backup(&format!("{root}/")) {
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
                            domains(chain)
                                .into_iter()
                                .map(|d| format!("store/mail/{d}/#public")),
                        ),
                        Part::Lists => roots.extend(
                            domains(chain)
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
                        return Err(Error::Request(
                            format!(
                                "the backup holds nothing for mask part `{p:?}` ({})",
                                absent.join(", ")
                            )
                            .to_lowercase(),
                        ));
                    }
                    roots.extend(held);
                }
            }
        }
        // A partial archive (a safety copy) replaces nothing outside its scope:
        // a root above a scope root narrows to it, a root outside every scope root goes.
        let scope = chain
            .newest()
            .version
            .as_ref()
            .map(|v| v.scope.clone())
            .unwrap_or_default();
        if !scope.is_empty() {
            let within = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
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
        let mut protected: Vec<String> = chain
            .skipped()
            .into_iter()
            .filter(|s| s.reason == "disabled-user")
            .map(|s| s.path)
            .collect();
        protected.extend(EXCLUDED_STORE_DIRS.iter().map(|d| format!("store/{d}")));
        Ok(Self { roots, protected })
    }

    /// Whether an install-relative path lies in a root and is not protected.
    #[must_use]
    pub fn contains(&self, rel: &str) -> bool {
        let under = |root: &str| {
            rel == root
                || (rel.len() > root.len()
                    && rel.starts_with(root)
                    && rel.as_bytes()[root.len()] == b'/')
        };
        self.roots.iter().any(|r| under(r)) && !self.protected.iter().any(|p| under(p))
    }

    /// Whether a path is protected (never touched).
    #[must_use]
    pub fn is_protected(&self, rel: &str) -> bool {
        self.protected.iter().any(|p| {
            rel == p || (rel.starts_with(p.as_str()) && rel.as_bytes().get(p.len()) == Some(&b'/'))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mailvault_formats::{
        ArchiveKind, ArchiveName, Catalog, CatalogEntry, Location, Mtime, Skipped, Summary,
    };

    use super::*;
    use crate::chain::SetMeta;

    fn chain(paths: &[&str], skipped: &[&str]) -> Chain {
        let started = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let entries = paths
            .iter()
            .map(|p| CatalogEntry {
                path: (*p).into(),
                size: 1,
                mtime: Mtime::default(),
                crc32: 0,
                location: Location::Volume(0),
            })
            .collect();
        let summary = Summary {
            kind: ArchiveKind::Full,
            status: "complete".into(),
            started,
            ended: started,
            volume: 0,
            last_volume: true,
            volume_files: 0,
            volume_bytes: 0,
            totals: None,
            notes: vec![],
            skipped: skipped
                .iter()
                .map(|p| Skipped {
                    reason: "disabled-user".into(),
                    path: (*p).into(),
                })
                .collect(),
        };
        let full = SetMeta {
            name: ArchiveName::new(ArchiveKind::Full, started),
            volumes: BTreeMap::new(),
            version: None,
            summary: Some(summary),
            catalog: Catalog { entries },
            has_catalog: true,
        };
        Chain {
            full,
            differential: None,
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
        let c = chain(&PATHS, &["store/mail/a.cz/old"]);
        let req = |d: Option<&str>, u: Option<&str>, f: Option<&str>| RestoreRequest {
            domain: d.map(Into::into),
            user: u.map(Into::into),
            folder: f.map(Into::into),
            mask: None,
        };
        let s = Selection::new(&req(Some("a.cz"), Some("jan"), Some("Projects")), &c).unwrap();
        assert_eq!(s.roots, ["store/mail/a.cz/jan/Projects"]);
        assert!(s.contains("store/mail/a.cz/jan/Projects/2026/#msgs/00000001.eml"));
        assert!(
            !s.contains("store/mail/a.cz/jan/Projects2/x"),
            "a root is a whole path component"
        );
        assert!(!s.contains("store/mail/a.cz/jan/INBOX/#msgs/00000001.eml"));
        // -u alone works when the user is in one domain only.
        assert_eq!(
            Selection::new(&req(None, Some("eva"), None), &c)
                .unwrap()
                .roots,
            ["store/mail/b.cz/eva"]
        );
        let e = Selection::new(&req(None, Some("jan"), None), &c)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("several domains") && e.contains("a.cz") && e.contains("b.cz"),
            "{e}"
        );
        assert!(
            Selection::new(&req(None, None, Some("INBOX")), &c)
                .unwrap_err()
                .to_string()
                .contains("needs -d")
        );
        let e = Selection::new(&req(Some("c.cz"), None, None), &c)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not in the backup") && e.contains("a.cz, b.cz"),
            "{e}"
        );
        assert!(Selection::new(&req(Some("../x"), None, None), &c).is_err());
        // Everything: parts the backup lacks are left out; skipped mailboxes are protected.
        let all = Selection::new(&req(None, None, None), &c).unwrap();
        assert_eq!(all.roots, ["store/mail", "users.cfg"]);
        assert!(all.is_protected("store/mail/a.cz/old/INBOX/#msgs/00000001.eml"));
        assert!(!all.contains("store/logs/mail.log"));
        let lic = RestoreRequest {
            mask: Some(vec![Part::License]),
            ..RestoreRequest::default()
        };
        assert!(
            Selection::new(&lic, &c)
                .unwrap_err()
                .to_string()
                .contains("holds nothing")
        );
        let public = RestoreRequest {
            mask: Some(vec![Part::Public]),
            ..RestoreRequest::default()
        };
        assert_eq!(
            Selection::new(&public, &c).unwrap().roots,
            ["store/mail/a.cz/#public"]
        );
    }
}
