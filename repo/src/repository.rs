//! [`Repository`]: backup sets over a [`Storage`], and the rules about
//! them that every command shares, written once:
//!
//! - **commit order**: a backup's volumes are committed continuation volumes
//!   first and the first volume last, so the first volume's presence means
//!   the backup is complete; **deletion** removes the first volume first;
//! - a **journal** object (`.mailvault-journal-<stem>`, `commit` or
//!   `delete`) exists while a commit or deletion is under way, so that what an
//!   interrupted run left is known for what it is: a leftover, not damage.
//!   Continuation volumes without a first volume and without a journal are
//!   damage (a lost first volume) and are never removed automatically;
//! - **leftovers** (temporaries, journaled partial commits and deletions)
//!   are removed by whichever command next holds the exclusive lock.

use std::io::{Read, Write};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::set::{self, BackupSet, SetInfo};
use crate::storage::{Lock, LockMode, Pending, Storage, TEMP_PREFIX};

/// Prefix of journal objects.
pub const JOURNAL_PREFIX: &str = ".mailvault-journal-";

/// A repository of backups.
#[derive(Debug, Clone)]
pub struct Repository {
    storage: Arc<dyn Storage>,
}

/// What a journal says is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Commit,
    Delete,
}

/// Everything a repository holds, classified.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Every set named like a backup, oldest first: backups (complete or
    /// not), leftovers and foreign files alike, each with its status.
    pub sets: Vec<SetInfo>,
    /// Temporaries of runs that were interrupted or are under way.
    pub temporaries: Vec<String>,
    /// Every object name, as listed.
    pub names: Vec<String>,
}

impl Listing {
    /// Sets that are backups (complete or damaged), oldest first.
    pub fn backups(&self) -> impl DoubleEndedIterator<Item = &SetInfo> {
        self.sets.iter().filter(|s| s.status.is_backup())
    }

    /// The stem of a differential's base: named in its `.version.txt`, or for
    /// a Kerio differential (which names none) the newest full before it.
    /// `None` for a full, or when there is none.
    #[must_use]
    pub fn base_of(&self, info: &SetInfo) -> Option<String> {
        if info.set.name.kind != mailvault_formats::ArchiveKind::Differential {
            return None;
        }
        match (info.base(), info.flavor) {
            (Some(b), _) => Some(b.to_string()),
            (None, set::Flavor::Kerio) => self
                .backups()
                .rev()
                .find(|s| s.set.name.kind.is_complete() && s.set.name < info.set.name)
                .map(|s| s.set.stem()),
            (None, _) => None,
        }
    }

    /// Leftovers of interrupted runs: temporaries and journaled sets.
    #[must_use]
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = self.temporaries.clone();
        for s in &self.sets {
            if matches!(s.status, set::SetStatus::Leftover(_)) {
                out.extend(s.set.volumes.values().cloned());
            }
        }
        out
    }
}

impl Repository {
    /// A repository over `storage`.
    pub fn new(storage: impl Storage + 'static) -> Self {
        Self {
            storage: Arc::new(storage),
        }
    }

    /// A repository over a shared storage.
    #[must_use]
    pub fn from_arc(storage: Arc<dyn Storage>) -> Self {
        Self { storage }
    }

    /// The storage.
    #[must_use]
    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// The shared storage handle.
    #[must_use]
    pub fn storage_arc(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.storage)
    }

    /// The location, for messages.
    #[must_use]
    pub fn location(&self) -> String {
        self.storage.location()
    }

    /// Every set named like a backup (no metadata read), oldest first.
    ///
    /// # Errors
    /// The repository cannot be listed ([`Error::NotFound`] when it does not exist).
    pub fn sets(&self) -> Result<Vec<BackupSet>> {
        Ok(set::group(&self.storage.list()?))
    }

    fn journals(&self, names: &[String]) -> Vec<(String, Intent)> {
        names
            .iter()
            .filter_map(|n| n.strip_prefix(JOURNAL_PREFIX))
            .filter_map(|stem| {
                let name = format!("{JOURNAL_PREFIX}{stem}");
                let mut text = String::new();
                let mut r = self.storage.open(&name).ok()?;
                let _ = (&mut r).take(64).read_to_string(&mut text);
                let intent = if text.starts_with("delete") {
                    Intent::Delete
                } else {
                    Intent::Commit
                };
                Some((stem.to_string(), intent))
            })
            .collect()
    }

    /// Reads every set's status (two central directories each), oldest first.
    ///
    /// # Errors
    /// The repository cannot be listed.
    pub fn listing(&self) -> Result<Listing> {
        self.listing_at(Utc::now())
    }

    /// [`Repository::listing`] with "now" given (sets dated after it are flagged).
    ///
    /// # Errors
    /// The repository cannot be listed.
    pub fn listing_at(&self, now: DateTime<Utc>) -> Result<Listing> {
        let names = self.storage.list()?;
        let journals = self.journals(&names);
        let temporaries = names
            .iter()
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .cloned()
            .collect();
        let sets: Vec<SetInfo> = set::group(&names)
            .into_iter()
            .map(|s| {
                let stem = s.stem();
                match journals.iter().find(|(j, _)| *j == stem).map(|(_, i)| *i) {
                    Some(Intent::Delete) => {
                        SetInfo::leftover(self.storage(), s, "interrupted deletion")
                    }
                    Some(Intent::Commit) if !s.volumes.contains_key(&0) => {
                        SetInfo::leftover(self.storage(), s, "interrupted commit")
                    }
                    _ => SetInfo::read(self.storage(), s, now),
                }
            })
            .collect();
        Ok(Listing {
            sets,
            temporaries,
            names,
        })
    }

    /// Takes the repository's lock.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the holder.
    pub fn lock(&self, mode: LockMode, holder: &str) -> Result<Lock> {
        self.storage.lock(mode, holder)
    }

    fn require_exclusive(lock: &Lock) -> Result<()> {
        if lock.mode() == LockMode::Exclusive && lock.is_held() {
            Ok(())
        } else {
            Err(Error::Request(
                "internal: changing a repository needs its exclusive lock".into(),
            ))
        }
    }

    /// Removes what interrupted runs left: temporaries, the volumes of
    /// journaled commits that never got their first volume and of journaled
    /// deletions, and stale journals. Returns the names removed.
    ///
    /// # Errors
    /// Without the exclusive lock; an object cannot be removed.
    pub fn remove_leftovers(&self, lock: &Lock) -> Result<Vec<String>> {
        Self::require_exclusive(lock)?;
        let names = self.storage.list()?;
        let mut removed = Vec::new();
        // Best effort: a leftover that cannot be removed (a server that
        // refuses to abort a stale upload) stays listed as a leftover and
        // must not stop every later backup.
        for n in names.iter().filter(|n| n.starts_with(TEMP_PREFIX)) {
            if self.remove_quiet(n).is_ok() {
                removed.push(n.clone());
            }
        }
        let sets = set::group(&names);
        for (stem, intent) in self.journals(&names) {
            let mut whole = true;
            if let Some(s) = sets.iter().find(|s| s.stem() == stem)
                && (intent == Intent::Delete || !s.volumes.contains_key(&0))
            {
                for v in delete_order(s) {
                    if self.remove_quiet(&v).is_ok() {
                        removed.push(v);
                    } else {
                        // Its journal stays: the set remains a leftover.
                        whole = false;
                        break;
                    }
                }
            }
            if whole {
                let _ = self.remove_quiet(&format!("{JOURNAL_PREFIX}{stem}"));
            }
        }
        if !removed.is_empty() {
            self.storage.sync()?;
        }
        Ok(removed)
    }

    fn remove_quiet(&self, name: &str) -> Result<()> {
        match self.storage.remove(name) {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn write_journal(&self, stem: &str, intent: Intent) -> Result<()> {
        let name = format!("{JOURNAL_PREFIX}{stem}");
        self.remove_quiet(&name)?;
        let mut p = self.storage.create(&name)?;
        let text = match intent {
            Intent::Commit => "commit\n",
            Intent::Delete => "delete\n",
        };
        p.write_all(text.as_bytes())
            .map_err(Error::io("cannot write", self.storage.describe(&name)))?;
        p.finish()?;
        p.commit()?;
        self.storage.sync()
    }

    /// Publishes the finished volumes of one backup: journal, continuation
    /// volumes, the first volume last, journal removed. Returns the names in
    /// volume order.
    ///
    /// # Errors
    /// Without the exclusive lock; a commit fails (the journal then marks
    /// what was committed as a leftover for the next run to remove).
    pub fn commit_set(
        &self,
        stem: &str,
        volumes: Vec<(u32, Box<dyn Pending>)>,
        lock: &Lock,
    ) -> Result<Vec<String>> {
        Self::require_exclusive(lock)?;
        self.write_journal(stem, Intent::Commit)?;
        let mut order = volumes;
        order.sort_by_key(|(n, _)| if *n == 0 { u32::MAX } else { *n });
        let mut names: Vec<(u32, String)> = Vec::new();
        for (n, p) in order {
            names.push((n, p.name().to_string()));
            p.commit()?;
        }
        self.storage.sync()?;
        self.remove_quiet(&format!("{JOURNAL_PREFIX}{stem}"))?;
        self.storage.sync()?;
        names.sort_by_key(|(n, _)| *n);
        Ok(names.into_iter().map(|(_, n)| n).collect())
    }

    /// Deletes a set: journal, first volume first, journal removed.
    ///
    /// # Errors
    /// Without the exclusive lock; a volume cannot be removed.
    pub fn delete_set(&self, set: &BackupSet, lock: &Lock) -> Result<()> {
        Self::require_exclusive(lock)?;
        let stem = set.stem();
        self.write_journal(&stem, Intent::Delete)?;
        for v in delete_order(set) {
            self.remove_quiet(&v)?;
        }
        self.storage.sync()?;
        self.remove_quiet(&format!("{JOURNAL_PREFIX}{stem}"))?;
        self.storage.sync()
    }
}

/// The first volume first, then the others.
fn delete_order(set: &BackupSet) -> Vec<String> {
    set.volumes.values().cloned().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::mem::MemStorage;

    fn put(s: &dyn Storage, name: &str) -> Box<dyn Pending> {
        let mut p = s.create(name).unwrap();
        p.write_all(b"not a zip").unwrap();
        p
    }

    #[test]
    fn an_interrupted_commit_is_a_leftover_and_a_lost_first_volume_is_damage() {
        let mem = MemStorage::new();
        let repo = Repository::new(mem.clone());
        mem.create_root().unwrap();
        let lock = repo.lock(LockMode::Exclusive, "test").unwrap();
        // A commit killed after the continuation volumes: journal + .1.zip.
        repo.write_journal("F20261122T010000Z", Intent::Commit)
            .unwrap();
        put(&mem, "F20261122T010000Z.1.zip").commit().unwrap();
        // A set that lost its first volume by accident: no journal.
        put(&mem, "F20261123T010000Z.1.zip").commit().unwrap();
        let l = repo.listing().unwrap();
        assert!(
            matches!(l.sets[0].status, set::SetStatus::Leftover(_)),
            "{:?}",
            l.sets[0].status
        );
        assert!(matches!(l.sets[1].status, set::SetStatus::MissingVolumes(ref v) if v == &vec![0]));
        let removed = repo.remove_leftovers(&lock).unwrap();
        assert_eq!(removed, vec!["F20261122T010000Z.1.zip".to_string()]);
        let mut left = mem.list().unwrap();
        left.sort();
        assert_eq!(
            left,
            vec!["F20261123T010000Z.1.zip".to_string()],
            "damage is never removed"
        );
    }

    #[test]
    fn commit_and_delete_keep_their_order_and_clean_up() {
        let mem = MemStorage::new();
        let repo = Repository::new(mem.clone());
        mem.create_root().unwrap();
        let lock = repo.lock(LockMode::Exclusive, "test").unwrap();
        let vols = vec![
            (0, put(&mem, "F20261122T010000Z.zip")),
            (1, put(&mem, "F20261122T010000Z.1.zip")),
        ];
        let names = repo.commit_set("F20261122T010000Z", vols, &lock).unwrap();
        assert_eq!(names, ["F20261122T010000Z.zip", "F20261122T010000Z.1.zip"]);
        assert_eq!(
            mem.list().unwrap().len(),
            2,
            "no journal, no temporaries left"
        );
        let s = repo.sets().unwrap();
        repo.delete_set(&s[0], &lock).unwrap();
        assert!(mem.list().unwrap().is_empty());
        let shared = Lock::read_only();
        assert!(
            repo.remove_leftovers(&shared).is_err(),
            "cleanup needs the exclusive lock"
        );
    }
}
