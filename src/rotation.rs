//! Rotation: keep the newest N chains, delete older ones with all their
//! volumes. Only chains whose full is complete count towards N, so a damaged
//! newest full never pushes out the last good one; nothing newer than the
//! oldest kept chain is deleted, and the set just written is never deleted.
//! `keep_latest_differential_only` also deletes all but the newest
//! differential of each kept chain (Kerio's older behaviour).
//! The plan is computed first (`--dry-run` prints it) and applied separately.

use serde::Serialize;

use mailvault_repo::Repository;
use mailvault_repo::chain::{Chains, group};
use mailvault_repo::set::{SetInfo, SetStatus};
use mailvault_repo::storage::Lock;

use crate::error::Result;

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
    /// Volume names.
    pub volumes: Vec<String>,
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

/// Computes the rotation of a listing's sets; `protect` is the stem just
/// written. Leftovers and files that are not backups are not rotation's
/// business (the lock holder's cleanup removes leftovers; foreign files stay).
#[must_use]
pub fn plan(infos: Vec<SetInfo>, opts: RotationOptions, protect: Option<&str>) -> RotationPlan {
    let Chains {
        chains, orphans, ..
    } = group(infos);
    let mut out = RotationPlan::default();
    let mut doomed: Vec<(SetInfo, String)> = Vec::new();
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
            bytes: i.bytes,
            volumes: i.set.volumes.values().cloned().collect(),
            reason,
        })
        .collect();
    out.keep.sort();
    out
}

/// Deletes what the plan says, holding the repository's exclusive lock.
///
/// # Errors
/// A volume cannot be deleted (what was deleted before stays deleted).
pub fn apply(repo: &Repository, lock: &Lock, plan: &RotationPlan) -> Result<()> {
    let sets = repo.sets()?;
    // Newest first: a differential goes before its full, so an interrupted
    // rotation never leaves a differential without its base.
    for d in plan.delete.iter().rev() {
        if let Some(set) = sets.iter().find(|s| s.stem() == d.stem) {
            repo.delete_set(set, lock)?;
        }
    }
    Ok(())
}
