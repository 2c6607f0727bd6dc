//! `--keep-local`: a backup written into the local backup directory is
//! copied to the target, volume by volume, committed there in the same
//! order as any backup (continuations first, the first volume last), and
//! verified by reading every copied volume back (its size and CRC-32 must
//! equal the local volume's; through an encrypted target that read also
//! authenticates every chunk). The local copy is kept.

use std::io::{Read, Write};

use mailvault_repo::storage::{Lock, LockMode, Pending};
use mailvault_repo::{Error as RepoError, Repository};

use crate::error::{Error, Result};
use crate::progress::Progress;

/// Size and CRC-32 of a stream.
fn digest(mut r: impl Read, place: &str) -> Result<(u64, u32)> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r
            .read(&mut buf)
            .map_err(RepoError::io("cannot read", place))?;
        if k == 0 {
            return Ok((n, h.finalize()));
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

/// Copies the sets `sets` (stem and volume names in volume order, oldest
/// first) from `local` to `target` under one lock, skipping any the target
/// already holds complete (a differential's base copied by an earlier run),
/// commits and verifies each; returns the last set's names on the target.
///
/// # Errors
/// The target is locked, an upload fails, or a copy does not read back
/// identical (then it is removed again).
pub(crate) fn replicate(
    local: &Repository,
    target: &Repository,
    sets: &[(String, Vec<String>)],
    what: &str,
    progress: &dyn Progress,
) -> Result<(Vec<String>, Lock)> {
    let created = target.storage().create_root()?;
    let lock = target.lock(LockMode::Exclusive, what)?;
    let result = (|| {
        target.remove_leftovers(&lock)?;
        let present: Vec<String> = target
            .listing()?
            .sets
            .iter()
            .filter(|s| s.status.is_complete())
            .map(|s| s.set.stem())
            .collect();
        let mut last = Vec::new();
        for (stem, names) in sets {
            if present.contains(stem) {
                last = names.clone();
                continue;
            }
            last = copy_set(local, target, stem, names, &lock, progress)?;
        }
        Ok(last)
    })();
    if result.is_err() && created {
        let _ = target.storage().remove_root_if_empty();
    }
    result.map(|names| (names, lock))
}

/// The stem and volume names of the set `stem` in `repo`.
pub(crate) fn set_names(repo: &Repository, stem: &str) -> Result<Option<(String, Vec<String>)>> {
    Ok(repo
        .sets()?
        .into_iter()
        .find(|s| s.stem() == stem)
        .map(|s| (s.stem(), s.volumes.values().cloned().collect())))
}

fn copy_set(
    local: &Repository,
    target: &Repository,
    stem: &str,
    names: &[String],
    lock: &Lock,
    progress: &dyn Progress,
) -> Result<Vec<String>> {
    let total: u64 = names
        .iter()
        .map(|n| local.storage().size(n).unwrap_or(0))
        .sum();
    progress.start("uploading", names.len() as u64, total);
    let mut pending: Vec<(u32, Box<dyn Pending>)> = Vec::new();
    let mut sums = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let place = local.storage().describe(name);
        let mut src = local.storage().open(name)?;
        let mut dst = target.storage().create(name)?;
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = src
                .read(&mut buf)
                .map_err(RepoError::io("cannot read", place.clone()))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            dst.write_all(&buf[..k]).map_err(RepoError::io(
                "cannot write",
                target.storage().describe(name),
            ))?;
            n += k as u64;
            progress.inc(0, k as u64);
        }
        dst.finish()?;
        progress.inc(1, 0);
        sums.push((n, h.finalize()));
        pending.push((u32::try_from(i).unwrap_or(u32::MAX), dst));
    }
    progress.finish();
    let committed = target.commit_set(stem, pending, lock)?;
    progress.start("verifying upload", names.len() as u64, total);
    for (name, want) in committed.iter().zip(&sums) {
        let place = target.storage().describe(name);
        let got = target
            .storage()
            .open(name)
            .map_err(Error::from)
            .and_then(|r| digest(r, &place));
        let bad = match got {
            Ok(got) if got == *want => None,
            Ok((size, crc)) => Some(format!(
                "the uploaded copy reads back as {size} bytes, CRC-32 {crc:08x}; expected {} bytes, CRC-32 {:08x}",
                want.0, want.1
            )),
            Err(e) => Some(format!("the uploaded copy cannot be read back: {e}")),
        };
        if let Some(message) = bad {
            // A set that is not what was sent must not stay listed as a backup.
            if let Some(set) = target.sets()?.into_iter().find(|s| s.stem() == stem) {
                let _ = target.delete_set(&set, lock);
            }
            return Err(Error::Upload { place, message });
        }
        progress.inc(1, want.0);
    }
    progress.finish();
    Ok(committed)
}
