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
