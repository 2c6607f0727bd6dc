//! Carries out a [`BackupPlan`]: reads and compresses files on all cores,
//! writes them in plan order through the `VolumeWriter`, and builds the
//! catalog from what was actually stored (the CRC-32 and size recorded are
//! always those of the bytes stored, even if a file changed meanwhile).
//!
//! Memory stays bounded whatever the store's size: workers take files in
//! order, and a file is read only while the bytes in flight stay under
//! [`BUDGET`] (the one file the writer waits for always proceeds, so the
//! pipeline cannot stall). Files above [`LARGE`] are streamed by the writer
//! thread instead of being held in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};

use mailvault_formats::layout::entry_name;
use mailvault_formats::{Location, Mtime, Skipped, catalog};
use zip::write::PreparedZipFile;

use super::plan::{Action, BackupPlan};
use super::scan::mtime_of;
use super::volume::{Compression, VolumeWriter, entry_options};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Files larger than this are streamed by the writer thread.
pub const LARGE: u64 = 16 << 20;
/// Bytes of file content (raw plus compressed) allowed in flight at once.
pub const BUDGET: u64 = 64 << 20;
/// Files allowed in flight at once (bounds the reorder buffer for tiny files).
const WINDOW: usize = 8192;

enum Outcome {
    Prepared {
        entry: PreparedZipFile,
        mtime: Mtime,
    },
    Large {
        file: File,
        size: u64,
        mtime: Mtime,
    },
    Vanished,
    Unreadable(std::io::Error),
}

struct Budget {
    state: Mutex<(u64, usize)>,
    cv: Condvar,
}

impl Budget {
    /// Waits until item `i` of `cost` bytes may be read.
    fn acquire(&self, i: usize, cost: u64, abort: &AtomicBool) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        loop {
            if abort.load(Ordering::Relaxed) {
                return false;
            }
            let (used, next) = *st;
            if i == next || (used + cost <= BUDGET && i < next + WINDOW) {
                st.0 += cost;
                return true;
            }
            st = match self.cv.wait(st) {
                Ok(s) => s,
                Err(_) => return false,
            };
        }
    }

    fn release(&self, cost: u64, next: usize) {
        if let Ok(mut st) = self.state.lock() {
            st.0 = st.0.saturating_sub(cost);
            st.1 = next;
        }
        self.cv.notify_all();
    }
}

/// What writing produced, for the summary.
pub(crate) struct Written {
    /// `.catalog.tsv` text.
    pub catalog: String,
    /// Files and bytes of the backed-up state.
    pub state_files: u64,
    /// Bytes of the backed-up state.
    pub state_bytes: u64,
    pub skipped: Vec<Skipped>,
    pub problems: usize,
}

/// What the catalog records of one file, kept compact: the path is the plan's.
#[derive(Clone, Copy)]
struct Row {
    size: u64,
    mtime: Mtime,
    crc32: u32,
    location: Location,
}

/// Writes every stored item of `plan` into `volumes` and returns the catalog.
pub(crate) fn write_items(
    plan: &BackupPlan,
    volumes: &mut VolumeWriter,
    compression: Compression,
    level: Option<i64>,
    skip_unreadable: bool,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Written> {
    let stored: Vec<usize> = plan
        .items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.action == Action::Store)
        .map(|(n, _)| n)
        .collect();
    let mut rows: Vec<Option<Row>> = plan
        .items
        .iter()
        .map(|i| match i.action {
            Action::Unchanged { crc32 } => Some(Row {
                size: i.file.size,
                mtime: i.file.mtime,
                crc32,
                location: Location::Base,
            }),
            Action::Store => None,
        })
        .collect();
    let mut skipped = Vec::new();
    let mut problems = 0;

    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let budget = Budget {
        state: Mutex::new((0, 0)),
        cv: Condvar::new(),
    };
    let cost_of = |k: usize| plan.items[stored[k]].file.size.min(LARGE) * 2 + 4096;
    // Files go to workers in runs of consecutive ones, so that a store of
    // small messages costs one hand-over (and one wake-up) per run, not per
    // file; a run ends after BATCH_FILES files or BATCH_BYTES of content, so
    // large files still spread over the workers.
    let batches = batch_bounds(stored.len(), |k| plan.items[stored[k]].file.size);
    let batch_cost = |b: usize| (batches[b]..batches[b + 1]).map(cost_of).sum::<u64>();

    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = mpsc::channel::<(usize, Vec<Outcome>)>();
        for _ in 0..threads.max(1) {
            let tx = tx.clone();
            let (next, abort, budget, stored, batches) =
                (&next, &abort, &budget, &stored, &batches);
            s.spawn(move || {
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b + 1 >= batches.len() || !budget.acquire(batches[b], batch_cost(b), abort) {
                        break;
                    }
                    let outcomes = (batches[b]..batches[b + 1])
                        .map(|k| {
                            let item = &plan.items[stored[k]];
                            prepare(
                                &plan.paths.abs(&item.file.rel),
                                &item.file.rel,
                                compression,
                                level,
                            )
                        })
                        .collect();
                    if tx.send((b, outcomes)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);

        let result = (|| -> Result<()> {
            let mut pending: BTreeMap<usize, Vec<Outcome>> = BTreeMap::new();
            let mut current = Vec::new().into_iter();
            for k in 0..stored.len() {
                let b = batches.partition_point(|&start| start <= k) - 1;
                if k == batches[b] {
                    let batch = loop {
                        if let Some(o) = pending.remove(&b) {
                            break o;
                        }
                        let (j, o) = rx.recv().map_err(|_| {
                            Error::Invalid("internal: compression workers stopped".into())
                        })?;
                        pending.insert(j, o);
                    };
                    current = batch.into_iter();
                }
                let outcome = current
                    .next()
                    .ok_or_else(|| Error::Invalid("internal: a batch came back short".into()))?;
                let item = &plan.items[stored[k]];
                let rel = &item.file.rel;
                let done = match outcome {
                    Outcome::Prepared { entry, mtime } => {
                        let (size, crc32) = (entry.uncompressed_size(), entry.crc32());
                        volumes.add_prepared(entry)?;
                        Some((size, crc32, mtime))
                    }
                    Outcome::Large { file, size, mtime } => {
                        let (size, crc32) = volumes
                            .add_streamed(&entry_name(rel), file, size, mtime)
                            .map_err(|e| match e {
                                Error::Unreadable { source, .. } => Error::Unreadable {
                                    path: plan.paths.abs(rel),
                                    source,
                                },
                                e => e,
                            })?;
                        Some((size, crc32, mtime))
                    }
                    Outcome::Vanished => {
                        skipped.push(Skipped {
                            reason: mailvault_formats::SkipReason::Vanished,
                            path: rel.clone(),
                        });
                        problems += 1;
                        None
                    }
                    Outcome::Unreadable(source) => {
                        if !skip_unreadable {
                            return Err(Error::Unreadable {
                                path: plan.paths.abs(rel),
                                source,
                            });
                        }
                        skipped.push(Skipped {
                            reason: mailvault_formats::SkipReason::Unreadable,
                            path: rel.clone(),
                        });
                        problems += 1;
                        None
                    }
                };
                if let Some((size, crc32, mtime)) = done {
                    // Asked after adding: the entry may have opened a new volume.
                    let volume = volumes.volume();
                    rows[stored[k]] = Some(Row {
                        size,
                        mtime,
                        crc32,
                        location: Location::Volume(volume),
                    });
                    progress.inc(1, size);
                } else {
                    progress.inc(1, 0);
                }
                if k + 1 == batches[b + 1] {
                    budget.release(batch_cost(b), k + 1);
                }
            }
            Ok(())
        })();
        abort.store(true, Ordering::Relaxed);
        budget.cv.notify_all();
        drop(rx);
        result
    })?;

    let mut catalog = String::with_capacity(plan.items.len() * 100 + 64);
    catalog::write_header(&mut catalog);
    let (mut state_files, mut state_bytes) = (0, 0);
    for (item, row) in plan.items.iter().zip(&rows) {
        if let Some(r) = row {
            catalog::write_row(
                &mut catalog,
                &item.file.rel,
                r.size,
                r.mtime,
                r.crc32,
                r.location,
            );
            state_files += 1;
            state_bytes += r.size;
        }
    }
    for d in &plan.deleted {
        catalog::write_row(
            &mut catalog,
            &d.path,
            d.size,
            d.mtime,
            d.crc32,
            Location::Deleted,
        );
    }
    Ok(Written {
        catalog,
        state_files,
        state_bytes,
        skipped,
        problems,
    })
}

/// Files per hand-over between a compression worker and the writer.
const BATCH_FILES: usize = 64;
/// Content bytes after which a hand-over ends early.
const BATCH_BYTES: u64 = 1 << 20;

/// Start indices of the runs of files handed to workers, and `n` last.
fn batch_bounds(n: usize, size: impl Fn(usize) -> u64) -> Vec<usize> {
    let mut out = vec![0];
    let (mut files, mut bytes) = (0usize, 0u64);
    for k in 0..n {
        files += 1;
        bytes += size(k);
        if files >= BATCH_FILES || bytes >= BATCH_BYTES {
            out.push(k + 1);
            files = 0;
            bytes = 0;
        }
    }
    if out.last() != Some(&n) {
        out.push(n);
    }
    out
}

/// Reads and compresses one file on a worker thread.
fn prepare(
    abs: &std::path::Path,
    rel: &str,
    compression: Compression,
    level: Option<i64>,
) -> Outcome {
    let mut file = match File::open(abs) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Vanished,
        Err(e) => return Outcome::Unreadable(e),
    };
    // The mtime recorded is read from the open file, so it belongs to the content read now.
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Outcome::Unreadable(e),
    };
    let mtime = mtime_of(&meta);
    if meta.len() > LARGE {
        return Outcome::Large {
            file,
            size: meta.len(),
            mtime,
        };
    }
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
    if let Err(e) = file.read_to_end(&mut data) {
        return Outcome::Unreadable(e);
    }
    let opts = entry_options(compression, level, mtime, false);
    match PreparedZipFile::from_data(entry_name(rel), opts, &data) {
        Ok(entry) => Outcome::Prepared { entry, mtime },
        Err(zip::result::ZipError::Io(e)) => Outcome::Unreadable(e),
        Err(e) => Outcome::Unreadable(std::io::Error::other(e.to_string())),
    }
}
