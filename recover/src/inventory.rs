//! `-l`: what a backup holds, from its catalog alone: domains, the mailboxes
//! of a domain (`-d`), or the folders of a mailbox (`-d -u`), each with its
//! item count and size.

use std::collections::BTreeMap;

use mailvault_formats::layout::MailboxPath;
use mailvault_repo::PassedOver;
use mailvault_repo::chain::RestoreChain;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::request::RestoreRequest;

/// What the rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Domains.
    Domain,
    /// Mailboxes of a domain.
    Mailbox,
    /// Folders of a mailbox.
    Folder,
}

/// One row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Domain, mailbox or folder name.
    pub name: String,
    /// Items (`#msgs` files).
    pub items: u64,
    /// Bytes of everything below it.
    pub bytes: u64,
}

/// The listing.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The chain listed, full first.
    pub chain: Vec<String>,
    /// Newer sets passed over, with why.
    pub passed_over: Vec<PassedOver>,
    /// What the rows are.
    pub level: Level,
    /// Rows, by name.
    pub rows: Vec<Row>,
}

/// Lists the chain's content at the level `req` asks for.
///
/// # Errors
/// A domain or mailbox the backup does not hold; a damaged catalog.
pub fn inventory(chain: &RestoreChain, req: &RestoreRequest) -> Result<Inventory> {
    req.check()?;
    let (state, _) = chain.state()?;
    let level = match (&req.domain, &req.user) {
        (None, _) => Level::Domain,
        (Some(_), None) => Level::Mailbox,
        (Some(_), Some(_)) => Level::Folder,
    };
    let mut rows: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut domain_seen = false;
    for f in &state {
        let Some(m) = MailboxPath::parse(&f.entry.path) else {
            continue;
        };
        let key = match (&req.domain, &req.user) {
            (None, _) => m.domain.to_string(),
            (Some(d), None) if m.domain == d => m.mailbox.to_string(),
            (Some(d), Some(u)) if m.domain == d => {
                domain_seen = true;
                if m.mailbox != u {
                    continue;
                }
                let folder = ["/#msgs/", "/#assoc/"]
                    .iter()
                    .find_map(|sep| m.rest.split_once(sep).map(|(f, _)| f))
                    .or_else(|| m.rest.rsplit_once('/').map(|(f, _)| f));
                match folder {
                    Some(f) => f.to_string(),
                    None => continue,
                }
            }
            _ => continue,
        };
        let is_item = f.entry.path.contains("/#msgs/");
        let r = rows.entry(key).or_default();
        r.0 += u64::from(is_item);
        r.1 += f.entry.size;
    }
    if rows.is_empty() {
        match (&req.domain, &req.user) {
            (Some(d), None) => {
                return Err(Error::Request(format!("domain `{d}` is not in the backup")));
            }
            (Some(d), Some(u)) if domain_seen => {
                return Err(Error::Request(format!(
                    "user `{u}@{d}` is not in the backup"
                )));
            }
            (Some(d), Some(_)) => {
                return Err(Error::Request(format!("domain `{d}` is not in the backup")));
            }
            _ => {}
        }
    }
    Ok(Inventory {
        chain: chain.names(),
        passed_over: chain.passed.clone(),
        level,
        rows: rows
            .into_iter()
            .map(|(name, (items, bytes))| Row { name, items, bytes })
            .collect(),
    })
}
