//! `mailvault sample-store`: a large realistic install for tests and
//! benchmarks. Sizes follow real mail: most messages 2–50 KB of text (a
//! quarter with an HTML part), about 1 % with a base64 attachment of 100 KB to
//! 3 MB; each user has the standard folders plus nested archive folders.
//! Deterministic in `seed`.

use std::path::Path;

use mailvault_formats::config::write_config;

use super::{Item, Rng, message, write_folder, write_with_mtime};
use crate::error::{Error, Result};

/// Shape of a generated store.
#[derive(Debug, Clone, Copy)]
pub struct StoreSpec {
    /// Number of domains.
    pub domains: u32,
    /// Users per domain.
    pub users: u32,
    /// Messages in the whole store.
    pub messages: u64,
    /// Seed.
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StoreStats {
    /// Message files.
    pub messages: u64,
    /// All files.
    pub files: u64,
    /// Bytes of all files.
    pub bytes: u64,
}

const FOLDERS: [&str; 8] = [
    "INBOX",
    "INBOX",
    "INBOX",
    "Sent Items",
    "Deleted Items",
    "Junk E-mail",
    "Archive/2025",
    "Projects/Clients/Acme",
];
const T0: i64 = 1_767_225_600; // 2026-01-01

/// Writes a generated install into `out` (must be empty or absent).
///
/// # Errors
/// `out` not empty, or a write fails.
pub fn write_sample_store(out: &Path, spec: StoreSpec) -> Result<StoreStats> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(Error::io("cannot list", out))?
            .next()
            .is_some()
    {
        return Err(Error::Invalid(format!(
            "`{}` is not empty: give a new directory",
            out.display()
        )));
    }
    let mut rng = Rng::new(spec.seed);
    let mut stats = StoreStats::default();
    let domains: Vec<String> = (1..=spec.domains)
        .map(|d| format!("d{d}.example.com"))
        .collect();
    let mut user_items = Vec::new();
    let mut domain_items = Vec::new();
    for d in &domains {
        domain_items.push(vec![("Domain", d.clone()), ("Type", "local".into())]);
        for u in 1..=spec.users {
            user_items.push(vec![
                ("Name", format!("user{u:03}")),
                ("Domain", d.clone()),
                ("FullName", format!("User {u} of {d}")),
                (
                    "Password",
                    format!("SHA:{:040x}", u128::from(rng.next_u64())),
                ),
                ("Account_enabled", "1".into()),
            ]);
        }
    }
    let wcfg = |name: &str, text: String| {
        write_with_mtime(&out.join(name), text.as_bytes(), T0)
            .map_err(Error::io("cannot write", out.join(name)))
    };
    wcfg("mailserver.cfg", write_config(&[("Domain", domain_items)]))?;
    wcfg("users.cfg", write_config(&[("User", user_items)]))?;

    let mailboxes = u64::from(spec.domains) * u64::from(spec.users);
    let per_box = spec.messages / mailboxes.max(1);
    let mut extra = spec.messages % mailboxes.max(1);
    let mut t = T0;
    for d in &domains {
        for u in 1..=spec.users {
            let n = per_box + u64::from(extra > 0);
            extra = extra.saturating_sub(1);
            let addr = format!("user{u:03}@{d}");
            let mut folders: Vec<Vec<Item>> = FOLDERS.iter().map(|_| Vec::new()).collect();
            for _ in 0..n {
                let f = usize::try_from(rng.below(FOLDERS.len() as u64)).unwrap_or(0);
                let attach = if rng.below(100) == 0 {
                    usize::try_from(rng.log_uniform(100_000, 3_000_000)).unwrap_or(0)
                } else {
                    0
                };
                let size = usize::try_from(rng.log_uniform(2_000, 50_000)).unwrap_or(2000);
                t += 37 + i64::try_from(rng.below(600)).unwrap_or(0);
                let content = message(&mut rng, "sender@example.net", &addr, t, size, attach);
                folders[f].push(Item {
                    content,
                    class: "IPM.Note",
                    flags: u32::from(rng.below(3) > 0),
                    time: t,
                });
            }
            let base = out.join("store/mail").join(d).join(format!("user{u:03}"));
            let mut done = std::collections::HashSet::new();
            for (i, name) in FOLDERS.iter().enumerate() {
                if !done.insert(*name) {
                    // INBOX is listed thrice to weight it; merge into the first.
                    let moved = std::mem::take(&mut folders[i]);
                    if let Some(first) = FOLDERS.iter().position(|x| x == name) {
                        folders[first].extend(moved);
                    }
                }
            }
            for (i, name) in FOLDERS.iter().enumerate() {
                if FOLDERS.iter().position(|x| x == name) != Some(i) {
                    continue;
                }
                let items = &mut folders[i];
                items.sort_by_key(|it| it.time);
                let dir = base.join(name);
                write_folder(&dir, items, 0, 0x6800_0000)
                    .map_err(Error::io("cannot write", &dir))?;
                stats.messages += items.len() as u64;
                stats.files += items.len() as u64 + 2;
                stats.bytes += items.iter().map(|it| it.content.len() as u64).sum::<u64>();
            }
        }
    }
    Ok(stats)
}
