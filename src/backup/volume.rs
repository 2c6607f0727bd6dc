//! Writes the volumes of one backup: each a complete, standalone ZIP with
//! `.version.txt` first and `.summary.txt` last, the last one also holding
//! `.catalog.tsv`. A new volume starts when the next entry would take the
//! current one past the split size; an entry larger than the split size goes
//! alone into a volume of its own (which is then larger than the split size).
//! Volumes are written under temporary names and only renamed by
//! `Finished::commit` once all are complete and fsynced; dropping an
//! uncommitted writer removes its temporaries.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use chrono::{DateTime, Datelike, Timelike, Utc};
use mailvault_formats::layout::{CATALOG_ENTRY, SUMMARY_ENTRY, VERSION_ENTRY};
use mailvault_formats::summary::Totals;
use mailvault_formats::{ArchiveName, Mtime, Summary, VersionInfo};
use zip::write::{FullFileOptions, PreparedZipFile, SimpleFileOptions};
use zip::{CompressionMethod, ZipWriter};

use mailvault_repo::Repository;
use mailvault_repo::storage::{Lock, Pending};

use crate::error::{Error, Result};

/// Compression of `@backup/` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Deflate: every unzip reads it (default).
    #[default]
    Deflate,
    /// Zstandard: faster and smaller, but Info-ZIP unzip cannot read it (7-Zip can).
    Zstd,
    /// No compression.
    Store,
}

/// Room left for `.summary.txt` and the end-of-central-directory records.
const TAIL_RESERVE: u64 = 8 * 1024;
/// Upper bound of per-entry header overhead besides the name (local + central
/// headers, extended timestamp, a ZIP64 field, a data descriptor).
const ENTRY_OVERHEAD: u64 = 30 + 46 + 2 * 9 + 2 * 28 + 24;

/// Entry options for content with this mtime.
pub(crate) fn entry_options(
    c: Compression,
    level: Option<i64>,
    mtime: Mtime,
    large: bool,
) -> FullFileOptions<'static, 'static> {
    let method = match c {
        Compression::Deflate => CompressionMethod::Deflated,
        Compression::Zstd => CompressionMethod::Zstd,
        Compression::Store => CompressionMethod::Stored,
    };
    let level = if c == Compression::Store { None } else { level };
    let opts = SimpleFileOptions::default()
        .compression_method(method)
        .compression_level(level)
        .last_modified_time(dos_time(mtime))
        .unix_permissions(0o644)
        .large_file(large);
    let secs = u32::try_from(mtime.secs.max(0)).unwrap_or(u32::MAX);
    match opts.with_extended_timestamp(Some(secs), None, None) {
        Ok(o) => o,
        Err(_) => opts.into_full_options(),
    }
}

fn dos_time(mtime: Mtime) -> zip::DateTime {
    DateTime::<Utc>::from_timestamp(mtime.secs, 0)
        .and_then(|t| {
            zip::DateTime::from_date_and_time(
                u16::try_from(t.year()).ok()?,
                u8::try_from(t.month()).ok()?,
                u8::try_from(t.day()).ok()?,
                u8::try_from(t.hour()).ok()?,
                u8::try_from(t.minute()).ok()?,
                u8::try_from(t.second()).ok()?,
            )
            .ok()
        })
        .unwrap_or_default()
}

/// The file under a volume. After its first I/O error it discards writes
/// (keeping a consistent position), so that the `zip` crate's attempt to
/// finalize again on drop neither fails nor prints; the first error has
/// already been returned to the writer, which removes the temporary.
struct VolumeFile {
    inner: Box<dyn Pending>,
    failed: bool,
    pos: u64,
    len: u64,
    /// Offset before which the zip writer will not write again, set by the
    /// volume writer (through `ZipWriter::get_ref`) as entries are closed;
    /// passed on to the object so a remote target can send those bytes.
    settle: std::sync::atomic::AtomicU64,
    settled: u64,
}

impl VolumeFile {
    fn fail<T>(&mut self, e: std::io::Error) -> std::io::Result<T> {
        self.failed = true;
        Err(e)
    }
}

impl Write for VolumeFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let settle = self.settle.load(std::sync::atomic::Ordering::Relaxed);
        if settle > self.settled && !self.failed {
            self.settled = settle;
            self.inner.settled(settle);
        }
        let n = if self.failed {
            buf.len()
        } else {
            match self.inner.write(buf) {
                Ok(n) => n,
                Err(e) => return self.fail(e),
            }
        };
        self.pos += n as u64;
        self.len = self.len.max(self.pos);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.failed {
            return Ok(());
        }
        match self.inner.flush() {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }
}

impl std::io::Seek for VolumeFile {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        if !self.failed {
            match self.inner.seek(to) {
                Ok(p) => {
                    self.pos = p;
                    self.len = self.len.max(p);
                    return Ok(p);
                }
                Err(e) => return self.fail(e),
            }
        }
        let target = match to {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

struct OpenVolume {
    zip: ZipWriter<VolumeFile>,
    number: u32,
    /// How messages name the volume being written.
    temp: PathBuf,
    /// Bytes the central directory will take (upper bound).
    central: u64,
    /// Set after a streamed entry: its compressor may still hold this much
    /// unwritten output until the next entry starts.
    unflushed: u64,
    files: u64,
    bytes: u64,
    /// Where the entry being added (or last added) starts.
    last_start: u64,
}

/// A volume written and made durable, not yet under its final name.
struct Closed {
    number: u32,
    object: Box<dyn Pending>,
    bytes: u64,
}

/// Writes the volumes of one backup.
pub(crate) struct VolumeWriter {
    repo: Repository,
    name: ArchiveName,
    version: VersionInfo,
    split: u64,
    compression: Compression,
    level: Option<i64>,
    current: Option<OpenVolume>,
    /// Finished volumes, under temporary names until committed (dropping
    /// them removes the temporaries).
    finished: Vec<Closed>,
    /// Files and bytes under `@backup/` written so far.
    pub files: u64,
    /// Uncompressed bytes written so far.
    pub bytes: u64,
}

impl VolumeWriter {
    pub(crate) fn new(
        repo: &Repository,
        version: VersionInfo,
        split: u64,
        compression: Compression,
        level: Option<i64>,
    ) -> Result<Self> {
        let name = ArchiveName::new(version.kind, version.started);
        let mut w = Self {
            repo: repo.clone(),
            name,
            version,
            split,
            compression,
            level,
            current: None,
            finished: Vec::new(),
            files: 0,
            bytes: 0,
        };
        w.open(0)?;
        Ok(w)
    }

    /// Number of the volume being written.
    pub(crate) fn volume(&self) -> u32 {
        self.current.as_ref().map_or(0, |v| v.number)
    }

    fn open(&mut self, number: u32) -> Result<()> {
        let final_name = self.name.with_volume(number).to_string();
        let temp = PathBuf::from(self.repo.storage().describe(&format!(
            "{}{final_name}",
            mailvault_repo::storage::TEMP_PREFIX
        )));
        let object = self.repo.storage().create(&final_name)?;
        let out = VolumeFile {
            inner: object,
            failed: false,
            pos: 0,
            len: 0,
            settle: std::sync::atomic::AtomicU64::new(0),
            settled: 0,
        };
        let mut zip = ZipWriter::new(out).set_auto_large_file();
        let mut version = self.version.clone();
        version.volume = number;
        let text = version.to_text();
        let opts = entry_options(
            Compression::Deflate,
            None,
            Mtime::from_system(std::time::SystemTime::now()),
            false,
        );
        zip.start_file(VERSION_ENTRY, opts)
            .and_then(|()| zip.write_all(text.as_bytes()).map_err(Into::into))
            .map_err(zip_err(&temp))?;
        let central = ENTRY_OVERHEAD + VERSION_ENTRY.len() as u64;
        self.current = Some(OpenVolume {
            zip,
            number,
            temp,
            central,
            unflushed: 0,
            files: 0,
            bytes: 0,
            last_start: 0,
        });
        Ok(())
    }

    /// Starts a new volume first if an entry of this compressed size and name
    /// would take the current one past the split size.
    /// Measured from the bytes actually written so far (the file's position)
    /// plus the central directory to come, so a large file that compressed
    /// well leaves room for the entries after it.
    fn make_room(&mut self, name_len: usize, compressed: u64) -> Result<()> {
        let need = ENTRY_OVERHEAD + 2 * name_len as u64 + compressed;
        let Some(cur) = &self.current else {
            return Ok(());
        };
        let written = cur.zip.get_ref().map_or(0, |f| f.pos);
        if cur.files > 0 && written + cur.unflushed + cur.central + need + TAIL_RESERVE > self.split
        {
            let number = cur.number + 1;
            self.close_current(None)?;
            self.open(number)?;
        }
        if let Some(cur) = self.current.as_mut() {
            cur.central += ENTRY_OVERHEAD + name_len as u64;
            cur.unflushed = 0;
            // The entry before the last may no longer change (the last one's
            // local header is patched when the next entry starts).
            if let Some(f) = cur.zip.get_ref() {
                f.settle
                    .store(cur.last_start, std::sync::atomic::Ordering::Relaxed);
                cur.last_start = f.pos;
            }
        }
        Ok(())
    }

    /// Adds an entry compressed off-thread.
    pub(crate) fn add_prepared(&mut self, entry: PreparedZipFile) -> Result<()> {
        let raw = entry.uncompressed_size();
        self.make_room(entry.file_name_raw().len(), entry.compressed_size())?;
        let cur = self.cur()?;
        cur.zip
            .add_prepared_file(entry)
            .map_err(zip_err(&cur.temp))?;
        cur.files += 1;
        cur.bytes += raw;
        self.files += 1;
        self.bytes += raw;
        Ok(())
    }

    /// Streams a large file into the archive on this thread. Returns the bytes
    /// read and their CRC-32 (what was stored, even if the file changed meanwhile).
    pub(crate) fn add_streamed(
        &mut self,
        name: &str,
        mut file: File,
        size_hint: u64,
        mtime: Mtime,
    ) -> Result<(u64, u32)> {
        // Deflate never grows data by more than ~0.03 % plus a few bytes per block.
        self.make_room(name.len(), size_hint + size_hint / 1000 + 1024)?;
        let (compression, level) = (self.compression, self.level);
        let cur = self.cur()?;
        let opts = entry_options(compression, level, mtime, size_hint >= (1 << 31));
        cur.zip.start_file(name, opts).map_err(zip_err(&cur.temp))?;
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Unreadable {
                        path: PathBuf::from(name),
                        source: e,
                    });
                }
            };
            hasher.update(&buf[..n]);
            cur.zip
                .write_all(&buf[..n])
                .map_err(Error::io("cannot write", &cur.temp))?;
            total += n as u64;
        }
        cur.files += 1;
        cur.bytes += total;
        cur.unflushed = 1 << 20;
        self.files += 1;
        self.bytes += total;
        Ok((total, hasher.finalize()))
    }

    fn cur(&mut self) -> Result<&mut OpenVolume> {
        self.current
            .as_mut()
            .ok_or_else(|| Error::Invalid("internal: no open volume".into()))
    }

    fn summary(
        &self,
        cur: &OpenVolume,
        totals: Option<Totals>,
        notes: &[String],
        skipped: &[mailvault_formats::Skipped],
    ) -> Summary {
        Summary {
            kind: self.version.kind,
            status: "complete".into(),
            started: self.version.started,
            ended: Utc::now(),
            volume: cur.number,
            last_volume: totals.is_some(),
            volume_files: cur.files,
            volume_bytes: cur.bytes,
            totals,
            notes: notes.to_vec(),
            // The summary stays under the readers' size bound however much was skipped.
            skipped: skipped
                .iter()
                .take(mailvault_formats::limits::MAX_SKIPPED_LINES)
                .cloned()
                .collect(),
            skipped_more: skipped
                .len()
                .saturating_sub(mailvault_formats::limits::MAX_SKIPPED_LINES)
                as u64,
        }
    }

    /// Writes `.summary.txt`, finishes the ZIP and fsyncs it. `last` carries
    /// what only the last volume holds: catalog text, totals, notes, skipped.
    fn close_current(
        &mut self,
        last: Option<(&str, Totals, &[String], &[mailvault_formats::Skipped])>,
    ) -> Result<()> {
        let Some(mut cur) = self.current.take() else {
            return Ok(());
        };
        let opts = entry_options(
            Compression::Deflate,
            None,
            Mtime::from_system(std::time::SystemTime::now()),
            false,
        );
        if let Some((catalog, ..)) = last {
            let entry = PreparedZipFile::from_data(CATALOG_ENTRY, opts.clone(), catalog.as_bytes())
                .map_err(zip_err(&cur.temp))?;
            cur.zip
                .add_prepared_file(entry)
                .map_err(zip_err(&cur.temp))?;
        }
        let summary = match last {
            Some((_, mut totals, notes, skipped)) => {
                totals.volumes = cur.number + 1;
                totals.files = self.files;
                totals.bytes = self.bytes;
                self.summary(&cur, Some(totals), notes, skipped)
            }
            None => self.summary(&cur, None, &[], &[]),
        };
        cur.zip
            .start_file(SUMMARY_ENTRY, opts)
            .map_err(zip_err(&cur.temp))?;
        cur.zip
            .write_all(summary.to_text().as_bytes())
            .map_err(Error::io("cannot write", &cur.temp))?;
        let mut out = cur.zip.finish().map_err(zip_err(&cur.temp))?;
        out.inner.finish()?;
        self.finished.push(Closed {
            number: cur.number,
            bytes: out.len,
            object: out.inner,
        });
        Ok(())
    }

    /// Closes the last volume with the catalog; if the catalog does not fit,
    /// it and the summary get a volume of their own.
    pub(crate) fn finish(
        mut self,
        catalog: &str,
        totals: Totals,
        notes: &[String],
        skipped: &[mailvault_formats::Skipped],
    ) -> Result<Finished> {
        // Room for the catalog, estimated at a third of its text (it compresses well).
        self.make_room(CATALOG_ENTRY.len(), catalog.len() as u64 / 3 + 4096)?;
        self.close_current(Some((catalog, totals, notes, skipped)))?;
        Ok(Finished { writer: self })
    }
}

/// All volumes written and fsynced, not yet under their final names.
pub(crate) struct Finished {
    writer: VolumeWriter,
}

impl Finished {
    /// Commits the volumes through the repository (continuation volumes
    /// first, the first volume last, under a journal). Returns the final
    /// names in volume order.
    pub(crate) fn commit(mut self, lock: &Lock) -> Result<Vec<String>> {
        let w = &mut self.writer;
        let volumes: Vec<(u32, Box<dyn Pending>)> =
            w.finished.drain(..).map(|c| (c.number, c.object)).collect();
        Ok(w.repo.commit_set(&w.name.stem(), volumes, lock)?)
    }

    /// Bytes of all volumes.
    pub(crate) fn compressed(&self) -> u64 {
        self.writer.finished.iter().map(|c| c.bytes).sum()
    }
}

impl Drop for VolumeWriter {
    fn drop(&mut self) {
        // Uncommitted objects remove their temporaries when dropped; the zip
        // writer of an unfinished volume goes first (it may try to finish).
        if let Some(cur) = self.current.take() {
            drop(cur.zip);
        }
    }
}

fn zip_err(path: &std::path::Path) -> impl FnOnce(zip::result::ZipError) -> Error + '_ {
    move |e| match e {
        zip::result::ZipError::Io(source) => Error::Io {
            action: "cannot write",
            path: path.to_path_buf(),
            source,
        },
        other => Error::Zip {
            archive: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}
