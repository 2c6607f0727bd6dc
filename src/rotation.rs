//! Rotation: keep the newest N chains, delete older ones with all their
//! volumes. Only chains whose full is complete count towards N, so a damaged
//! newest full never pushes out the last good one; nothing newer than the
//! oldest kept chain is deleted, and the set just written is never deleted.
//! `keep_latest_differential_only` also deletes all but the newest
//! differential of each kept chain (Kerio's older behaviour).
//! The plan is computed first (`--dry-run` prints it) and applied separately.

use serde::Serialize;

use crate::chain::{Chains, group};
use crate::error::Result;
use crate::repo::{ArchiveInfo, BackupDir, DirLock, SetStatus};

/// Rotation settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct RotationOptions {
    /// Chains to keep; `None` keeps everything.
    pub keep_full: Option<usize>,
    /// Keep only the newest differential of each kept chain.
    pub keep_latest_differential_only: bool,
}

impl RotationOptions {
    /// Whether rotation would delete anything at all.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.keep_full.is_some() || self.keep_latest_differential_only
    }
}

/// A set rotation will delete.
#[derive(Debug, Clone, Serialize)]
pub struct Deletion {
    /// `F20261122T010000Z`.
    pub stem: String,
    /// Volumes on disk.
    pub volumes: Vec<std::path::PathBuf>,
    /// Bytes freed.
    pub bytes: u64,
    /// Why.
    pub reason: String,
}

/// What rotation will delete and keep.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RotationPlan {
    /// Sets to delete, oldest first.
    pub delete: Vec<Deletion>,
    /// Stems of the sets that stay.
    pub keep: Vec<String>,
}

/// Computes the rotation of `infos`; `protect` is the stem just written.
#[must_use]
pub fn plan(infos: Vec<ArchiveInfo>, opts: RotationOptions, protect: Option<&str>) -> RotationPlan {
    let Chains { chains, orphans } = group(infos);
    let mut out = RotationPlan::default();
    let mut doomed: Vec<(ArchiveInfo, String)> = Vec::new();
    let mut good_kept = 0usize;
    let mut oldest_kept = None;
    for chain in chains.iter().rev() {
        let keep_chain = opts.keep_full.is_none_or(|n| good_kept < n)
            || chain.sets().any(|s| Some(s.set.stem().as_str()) == protect);
        if keep_chain {
            if chain.base.status == SetStatus::Complete {
                good_kept += 1;
            }
            oldest_kept = Some(chain.base.set.name);
            let n = chain.differentials.len();
            for (i, d) in chain.differentials.iter().enumerate() {
                if opts.keep_latest_differential_only
                    && i + 1 < n
                    && Some(d.set.stem().as_str()) != protect
                {
                    doomed.push((
                        d.clone(),
                        format!(
                            "a newer differential of chain {} exists",
                            chain.base.set.stem()
                        ),
                    ));
                } else {
                    out.keep.push(d.set.stem());
                }
            }
            out.keep.push(chain.base.set.stem());
        } else {
            let n = opts.keep_full.unwrap_or(0);
            for s in chain.sets() {
                doomed.push((
                    s.clone(),
                    format!("older than the newest {n} full chain(s)"),
                ));
            }
        }
    }
    for o in orphans {
        let older = oldest_kept.is_some_and(|k| o.set.name < k);
        if opts.keep_full.is_some() && older && Some(o.set.stem().as_str()) != protect {
            doomed.push((
                o,
                "differential whose base full is gone, older than every kept chain".into(),
            ));
        } else {
            out.keep.push(o.set.stem());
        }
    }
    doomed.sort_by_key(|(i, _)| i.set.name);
    out.delete = doomed
        .into_iter()
        .map(|(i, reason)| Deletion {
            stem: i.set.stem(),
            bytes: i.set.size(),
            volumes: i.set.volumes.values().cloned().collect(),
            reason,
        })
        .collect();
    out.keep.sort();
    out
}

/// Deletes what the plan says, holding the directory's lock.
///
/// # Errors
/// A volume cannot be deleted (what was deleted before stays deleted).
pub fn apply(dir: &BackupDir, lock: &DirLock, plan: &RotationPlan) -> Result<()> {
    let sets = dir.sets()?;
    for d in &plan.delete {
        if let Some(set) = sets.iter().find(|s| s.stem() == d.stem) {
            dir.delete_set(set, lock)?;
        }
    }
    Ok(())
}
