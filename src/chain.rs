//! Groups a backup directory's sets into chains: a complete backup (F or C)
//! with the differentials based on it (named by the `base:` field of their
//! `.version.txt`). Differentials whose base is gone are orphans.

use crate::repo::ArchiveInfo;

/// A full (or copy) and its differentials, oldest first.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The F or C that starts the chain.
    pub base: ArchiveInfo,
    /// Differentials based on it, oldest first.
    pub differentials: Vec<ArchiveInfo>,
}

impl Chain {
    /// Every set of the chain, base first.
    pub fn sets(&self) -> impl Iterator<Item = &ArchiveInfo> {
        std::iter::once(&self.base).chain(self.differentials.iter())
    }
}

/// Chains (oldest first) and orphaned differentials.
#[derive(Debug, Clone, Default)]
pub struct Chains {
    /// Chains, oldest first.
    pub chains: Vec<Chain>,
    /// Differentials whose base is not in the directory (or unreadable ones).
    pub orphans: Vec<ArchiveInfo>,
}

/// Groups `infos` (any order) into chains.
#[must_use]
pub fn group(mut infos: Vec<ArchiveInfo>) -> Chains {
    infos.sort_by_key(|i| i.set.name);
    let mut out = Chains::default();
    for info in infos {
        if info.set.name.kind.is_complete() {
            out.chains.push(Chain {
                base: info,
                differentials: Vec::new(),
            });
            continue;
        }
        let base = info.base().map(str::to_string);
        match base.and_then(|b| out.chains.iter_mut().rev().find(|c| c.base.set.stem() == b)) {
            Some(chain) => chain.differentials.push(info),
            None => out.orphans.push(info),
        }
    }
    out
}
