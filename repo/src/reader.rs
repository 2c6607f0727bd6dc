//! The one archive reader: opening a volume, checking its entries, reading
//! its metadata within the documented bounds. `list`, `verify`, every
//! restore and the mail tools read archives through this module only, so
//! that what one accepts the others accept.
//!
//! Entry rules (docs/formats/archive.md, sections 2, 5 and 9), checked on the
//! central directory before anything is read:
//! - names are UTF-8 relative paths without empty, `.` or `..` components,
//!   backslashes, drive letters or control characters (`layout::check_relative`);
//! - no symbolic links, no duplicate names, no encrypted entries;
//! - `.version.txt` first, `.summary.txt` last; metadata files within
//!   [`mailvault_formats::limits`];
//! - directory entries and unknown top-level files are tolerated and ignored.

use std::io::Read;

use mailvault_formats::layout::{self, CATALOG_ENTRY, SUMMARY_ENTRY, VERSION_ENTRY};
use zip::ZipArchive;

use crate::error::{Problem, ProblemKind};
use crate::storage::{ReadSeek, Storage};

/// What an entry of a volume is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryClass {
    /// `.version.txt`, `.summary.txt` or `.catalog.tsv`.
    Meta,
    /// A backed-up file: its install-relative path (checked).
    Backup(String),
    /// A directory entry or an unknown top-level file: ignored by readers.
    Ignored,
}

/// Classifies an entry name that passed [`Volume::check_entries`].
#[must_use]
pub fn classify(name: &str) -> EntryClass {
    if matches!(name, VERSION_ENTRY | SUMMARY_ENTRY | CATALOG_ENTRY) {
        return EntryClass::Meta;
    }
    match layout::rel_of_entry(name) {
        Some(rel) => EntryClass::Backup(rel.to_string()),
        None => EntryClass::Ignored,
    }
}

/// Bytes a central directory record may take beyond the fixed part: a name
/// of up to 4,096 bytes and 1 KiB of extra fields (mailvault writes 9 to 37).
const MAX_CENTRAL_RECORD: u64 = 46 + 4096 + 1024;

/// Refuses a volume whose central directory is larger than its entry count
/// can account for, before the `zip` crate reads it (it keeps every record,
/// extra fields included, in memory): an archive padded with 64 KiB extra
/// fields per entry would otherwise cost memory in proportion to the
/// padding. Reads only the end of the file. `None`: nothing wrong found (or
/// no end record, which the `zip` crate then reports).
fn central_directory_too_large(r: &mut Box<dyn ReadSeek>, place: &str) -> Option<Problem> {
    use std::io::{Seek, SeekFrom};
    let len = r.seek(SeekFrom::End(0)).ok()?;
    let tail_len = len.min(65_535 + 22 + 20);
    let mut tail = vec![0u8; usize::try_from(tail_len).ok()?];
    r.seek(SeekFrom::Start(len - tail_len)).ok()?;
    r.read_exact(&mut tail).ok()?;
    r.seek(SeekFrom::Start(0)).ok()?;
    let eocd = (0..=tail.len().checked_sub(22)?)
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])?;
    let u16_at = |b: &[u8], i: usize| u64::from(u16::from_le_bytes([b[i], b[i + 1]]));
    let u32_at =
        |b: &[u8], i: usize| u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    let mut entries = u16_at(&tail, eocd + 10);
    let mut size = u32_at(&tail, eocd + 12);
    if (entries == 0xFFFF || size == 0xFFFF_FFFF)
        && eocd >= 20
        && tail[eocd - 20..eocd - 16] == [0x50, 0x4b, 0x06, 0x07]
    {
        let at = u32_at(&tail, eocd - 12) | (u32_at(&tail, eocd - 8) << 32);
        let mut rec = [0u8; 56];
        if r.seek(SeekFrom::Start(at)).is_ok()
            && r.read_exact(&mut rec).is_ok()
            && rec[..4] == [0x50, 0x4b, 0x06, 0x06]
        {
            entries = u32_at(&rec, 32) | (u32_at(&rec, 36) << 32);
            size = u32_at(&rec, 40) | (u32_at(&rec, 44) << 32);
        }
        r.seek(SeekFrom::Start(0)).ok()?;
    }
    let bound = entries
        .saturating_mul(MAX_CENTRAL_RECORD)
        .saturating_add(65_536);
    (size > bound).then(|| {
        Problem::new(
            ProblemKind::TooLarge,
            place,
            format!(
                "its central directory takes {size} bytes for {entries} entries (at most {bound} bytes): padded or damaged"
            ),
        )
    })
}

/// Facts about one `@backup/` entry, from the central directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFacts {
    /// Index in the volume.
    pub index: usize,
    /// Uncompressed size.
    pub size: u64,
    /// CRC-32.
    pub crc32: u32,
    /// Modification time from the DOS date field (Unix seconds, UTC).
    pub mtime: i64,
}

/// Unix seconds of a DOS date-time (which mailvault writes in UTC).
#[must_use]
pub fn dos_secs(d: Option<zip::DateTime>) -> i64 {
    d.and_then(|d| {
        chrono::NaiveDate::from_ymd_opt(
            i32::from(d.year()),
            u32::from(d.month()),
            u32::from(d.day()),
        )?
        .and_hms_opt(
            u32::from(d.hour()),
            u32::from(d.minute()),
            u32::from(d.second()),
        )
        .map(|t| t.and_utc().timestamp())
    })
    .unwrap_or(0)
}

/// One volume, opened as a ZIP archive.
pub struct Volume {
    /// Object name in the storage (`F20261122T010000Z.1.zip`).
    pub name: String,
    /// How messages name it.
    pub place: String,
    zip: ZipArchive<Box<dyn ReadSeek>>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("name", &self.name)
            .field("entries", &self.zip.len())
            .finish_non_exhaustive()
    }
}

impl Volume {
    /// Opens a volume and reads its central directory.
    ///
    /// # Errors
    /// A [`ProblemKind::Missing`] or [`ProblemKind::Damaged`] problem.
    pub fn open(storage: &dyn Storage, name: &str) -> Result<Self, Problem> {
        let place = storage.describe(name);
        let r = storage.open(name).map_err(|e| match e {
            crate::Error::NotFound(_) => {
                Problem::new(ProblemKind::Missing, &place, "the volume is missing")
            }
            e => Problem::new(ProblemKind::Damaged, &place, format!("cannot open: {e}")),
        })?;
        let mut r = r;
        if let Some(p) = central_directory_too_large(&mut r, &place) {
            return Err(p);
        }
        let zip = ZipArchive::new(r).map_err(|e| {
            Problem::new(
                ProblemKind::Damaged,
                &place,
                format!("not a readable ZIP archive: {e}"),
            )
        })?;
        Ok(Self {
            name: name.to_string(),
            place,
            zip,
        })
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.zip.len()
    }

    /// Whether the volume has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.zip.is_empty()
    }

    /// The underlying ZIP reader (for extraction by index).
    pub fn zip(&mut self) -> &mut ZipArchive<Box<dyn ReadSeek>> {
        &mut self.zip
    }

    /// The name of entry `i`, if it is UTF-8.
    #[must_use]
    pub fn entry_name(&self, i: usize) -> Option<String> {
        match self.zip.name_for_index(i) {
            Some(Ok(n)) => Some(n.into_owned()),
            _ => None,
        }
    }

    /// Whether the volume holds an entry of this name.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.zip.index_for_name(name).is_some()
    }

    /// Checks every entry's name and kind on the central directory alone
    /// (no seeks). Returns the problems found (all of them [`ProblemKind::Hostile`]).
    #[must_use]
    pub fn check_entries(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.zip.has_duplicate_names() {
            out.push(Problem::new(
                ProblemKind::Hostile,
                &self.place,
                "duplicate entry names in the central directory",
            ));
        }
        for i in 0..self.zip.len() {
            let f = match self.zip.by_index_data(i) {
                Ok(f) => f,
                Err(e) => {
                    out.push(Problem::new(
                        ProblemKind::Damaged,
                        &self.place,
                        format!("entry #{i}: {e}"),
                    ));
                    continue;
                }
            };
            let raw = f.name_raw();
            // The name as shown is made only for a finding (not per entry).
            let hostile =
                |why: &str| {
                    Problem::new(ProblemKind::Hostile, &self.place, why)
                        .at(String::from_utf8_lossy(raw).escape_debug().to_string())
                };
            let Ok(name) = std::str::from_utf8(raw) else {
                out.push(hostile("name is not UTF-8"));
                continue;
            };
            if f.is_symlink() {
                out.push(hostile("symbolic link entries are refused"));
                continue;
            }
            if f.encrypted() {
                out.push(hostile(
                    "encrypted entries are not mailvault's (it encrypts whole files)",
                ));
                continue;
            }
            let path = name.strip_suffix('/').unwrap_or(name);
            // Both the name and the install path it stands for must be safe
            // (`@backup/C:/x` is a drive letter once the prefix is gone).
            let rel = path.strip_prefix(layout::BACKUP_PREFIX).unwrap_or(path);
            if let Err(e) = layout::check_relative(path).and_then(|()| {
                if rel.is_empty() {
                    Ok(())
                } else {
                    layout::check_relative(rel)
                }
            }) {
                out.push(hostile(&e.to_string()));
            }
        }
        out
    }

    /// `@backup/` entries (and root `.cfg` files) with their central-directory facts.
    pub fn backup_entries(&self) -> impl Iterator<Item = (String, EntryFacts)> + '_ {
        (0..self.zip.len()).filter_map(move |i| {
            let f = self.zip.by_index_data(i).ok()?;
            if f.is_dir() || f.is_symlink() || f.encrypted() {
                return None;
            }
            let name = std::str::from_utf8(f.name_raw()).ok()?;
            // A root `users.cfg` beside `@backup/users.cfg` (both are read as
            // the same file): the `@backup/` copy is the one, for every reader.
            if !name.starts_with(layout::BACKUP_PREFIX) && self.has(&layout::entry_name(name)) {
                return None;
            }
            match classify(name) {
                EntryClass::Backup(rel) => Some((
                    rel,
                    EntryFacts {
                        index: i,
                        size: f.size(),
                        crc32: f.crc32(),
                        mtime: dos_secs(f.last_modified()),
                    },
                )),
                _ => None,
            }
        })
    }

    /// Name of the first and of the last entry.
    #[must_use]
    pub fn first_and_last(&self) -> (Option<String>, Option<String>) {
        let n = self.zip.len();
        (
            self.entry_name(0),
            n.checked_sub(1).and_then(|i| self.entry_name(i)),
        )
    }

    /// Reads a whole metadata entry, refusing one larger than `cap` bytes
    /// before reading it (and while reading, whatever its header claims).
    /// `Ok(None)` when the volume has no such entry.
    ///
    /// # Errors
    /// [`ProblemKind::TooLarge`] or [`ProblemKind::Damaged`].
    pub fn read_meta(&mut self, entry: &str, cap: u64) -> Result<Option<Vec<u8>>, Problem> {
        let Some(i) = self.zip.index_for_name(entry) else {
            return Ok(None);
        };
        let too_large = || {
            Problem::new(
                ProblemKind::TooLarge,
                &self.place,
                format!("larger than the {cap} bytes a reader accepts"),
            )
            .at(entry)
        };
        let mut f = self.zip.by_index(i).map_err(|e| {
            Problem::new(ProblemKind::Damaged, &self.place, e.to_string()).at(entry)
        })?;
        if f.size() > cap {
            return Err(too_large());
        }
        let mut buf = Vec::with_capacity(usize::try_from(f.size()).unwrap_or(0));
        (&mut f).take(cap + 1).read_to_end(&mut buf).map_err(|e| {
            Problem::new(ProblemKind::Damaged, &self.place, e.to_string()).at(entry)
        })?;
        if buf.len() as u64 > cap {
            return Err(too_large());
        }
        Ok(Some(buf))
    }

    /// Reads the start of an entry's content into `out` (cleared first),
    /// `step` bytes first and twice as many each time after, until
    /// `enough(out)` says so, `limit` bytes are there or the entry ends: only
    /// as much is inflated as that takes. An entry no longer than `step` is
    /// read to its end (the first read inflates all of it anyway), as is one
    /// whose content all came out by the time `enough` said so.
    ///
    /// Returns whether the entry was read to its end: only then was its
    /// CRC-32 checked. Otherwise damage in what was read is found only where
    /// the decompressor trips on it. Local and central headers must agree,
    /// as for [`Volume::copy_entry`].
    ///
    /// # Errors
    /// [`ProblemKind::Damaged`] naming the entry.
    pub fn read_head(
        &mut self,
        index: usize,
        limit: usize,
        step: usize,
        out: &mut Vec<u8>,
        enough: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<bool, Problem> {
        out.clear();
        let opts = zip::read::ZipReadOptions::new().enforce_header_consistency(true);
        let entry = self
            .entry_name(index)
            .unwrap_or_else(|| format!("#{index}"));
        let place = &self.place;
        let damaged = |m: String| Problem::new(ProblemKind::Damaged, place, m).at(&entry);
        let mut f = self
            .zip
            .by_index_with_options(index, opts)
            .map_err(|e| damaged(e.to_string()))?;
        let size = f.size();
        let mut step = step.max(1);
        let whole = size <= step as u64;
        while out.len() < limit {
            let at = out.len();
            out.resize(at + step.min(limit - at), 0);
            let got = loop {
                match f.read(&mut out[at..]) {
                    Ok(k) => break k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(damaged(e.to_string())),
                }
            };
            out.truncate(at + got);
            if got == 0 {
                return Ok(true);
            }
            if out.len() as u64 > size {
                return Err(damaged(format!(
                    "holds more than the {size} bytes recorded"
                )));
            }
            // Small first, then growing: a short header block costs a
            // short inflate, a long one few calls.
            step = step.saturating_mul(2).min(64 << 10);
            if !whole && out.len() as u64 != size && enough(out) {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// Streams an entry's content into `out`, refusing more than `limit`
    /// bytes; returns (bytes, CRC-32 of them). The `zip` crate also checks
    /// the central directory's CRC and the local header's name.
    ///
    /// # Errors
    /// [`ProblemKind::Damaged`] naming the entry; write errors of `out` are
    /// returned as the `Err(io::Error)` of the inner result so callers can
    /// tell a full disk from a damaged archive.
    pub fn copy_entry(
        &mut self,
        index: usize,
        limit: u64,
        out: &mut dyn std::io::Write,
        buf: &mut [u8],
    ) -> Result<std::io::Result<(u64, u32)>, Problem> {
        let place = self.place.clone();
        // Local and central headers must agree (name, method, flags): a
        // reader walking local headers (bsdtar, salvage) must see what we see.
        let opts = zip::read::ZipReadOptions::new().enforce_header_consistency(true);
        let entry = self
            .entry_name(index)
            .unwrap_or_else(|| format!("#{index}"));
        let mut f = self
            .zip
            .by_index_with_options(index, opts)
            .map_err(|e| Problem::new(ProblemKind::Damaged, &place, e.to_string()).at(entry))?;
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        let damaged = |m: String| Problem::new(ProblemKind::Damaged, &place, m).at(&name);
        let mut h = crc32fast::Hasher::new();
        let mut n = 0u64;
        loop {
            let got = match f.read(buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(damaged(e.to_string())),
            };
            n += got as u64;
            if n > limit {
                return Err(damaged(format!(
                    "holds more than the {limit} bytes recorded"
                )));
            }
            h.update(&buf[..got]);
            if let Err(e) = out.write_all(&buf[..got]) {
                return Ok(Err(e));
            }
        }
        Ok(Ok((n, h.finalize())))
    }
}
