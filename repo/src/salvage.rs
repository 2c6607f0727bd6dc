//! Salvage of ZIP volumes whose central directory is truncated or damaged:
//! this module owns walking the local file headers from the start of a
//! volume (as bsdtar does) and extracting, size- and CRC-checked, the
//! entries found that way. It must not trust anything it reads (every size
//! and offset is checked, nothing panics, nothing is buffered beyond a
//! fixed window, and no entry expands past its recorded size), must not
//! write anywhere but the caller's sink, and knows nothing of the
//! repository, its sets or its central-directory reader: it depends on
//! `std`, `flate2` and `crc32fast` only.

use std::io::{self, Read, Seek, SeekFrom, Write};

use flate2::{Decompress, FlushDecompress, Status};

/// Signature of a local file header.
const LOCAL_SIG: [u8; 4] = *b"PK\x03\x04";
/// Optional signature of a data descriptor.
const DESC_SIG: [u8; 4] = *b"PK\x07\x08";
/// Fixed part of a local file header.
const LOCAL_HEADER_LEN: usize = 30;
/// The most bytes a data descriptor takes (signature, CRC, two 8-byte sizes)
/// plus the 4 bytes after it that tell whether another record follows.
const DESC_PEEK: usize = 28;
/// Bytes the scan keeps buffered at most (must exceed the largest header,
/// 30 + 65,535 + 65,535 bytes).
const WINDOW: usize = 1 << 20;
/// Buffer size for inflating and copying.
const CHUNK: usize = 64 * 1024;
/// General-purpose flag bit 0: the entry is encrypted.
const FLAG_ENCRYPTED: u16 = 1;
/// General-purpose flag bit 3: CRC and sizes follow the data.
const FLAG_DESCRIPTOR: u16 = 1 << 3;
/// Compression method: stored.
const STORED: u16 = 0;
/// Compression method: deflate.
const DEFLATED: u16 = 8;
/// Header id of the ZIP64 extended information extra field.
const ZIP64_EXTRA: u16 = 0x0001;
/// A 32-bit size that stands for "see the ZIP64 extra field".
const ZIP64_SENTINEL: u32 = 0xFFFF_FFFF;

/// One entry found by its local header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Entry name as stored (raw bytes; usually UTF-8).
    pub name: Vec<u8>,
    /// Offset of the local header in the volume.
    pub header_offset: u64,
    /// Offset of the compressed data.
    pub data_offset: u64,
    /// Compression method (0 stored, 8 deflate; others are reported, not extracted).
    pub method: u16,
    /// Compressed size (from the header, the ZIP64 extra field, or the data descriptor / end of the deflate stream).
    pub compressed_size: u64,
    /// Uncompressed size (same sources).
    pub size: u64,
    /// CRC-32 the header or data descriptor records.
    pub crc32: u32,
    /// Whether general-purpose flag bit 0 (encryption) is set (never extracted).
    pub encrypted: bool,
}

/// Limits so a hostile file cannot make the scan run away.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    /// The scan stops after this many entries.
    pub max_entries: usize,
    /// The scan stops at a header whose name is longer than this (bytes).
    pub max_name_len: usize,
}

impl Default for ScanLimits {
    /// 10,000,000 entries and 65,535 name bytes (the most a header can hold).
    fn default() -> Self {
        Self {
            max_entries: 10_000_000,
            max_name_len: 65_535,
        }
    }
}

/// Walks the local headers of `r` from offset 0 and returns every entry whose header and data lie wholly inside the file, in file order. Stops (without error) at the first byte sequence that is not a local header (e.g. the central directory signature `PK\x01\x02`, the end of the file, or garbage), or at the limits.
///
/// Sizes come from the local header, or from its ZIP64 extra field where a
/// size is `0xFFFFFFFF`. An entry with a data descriptor (flag bit 3) is
/// delimited by inflating its deflate stream to its end (work linear in its
/// uncompressed size) and reading the descriptor after it, 32- or 64-bit,
/// signed or not, whichever reading records the compressed and uncompressed
/// sizes just found (a reading followed by `PK` or the end of the file wins
/// a tie, then the 64-bit one if the header has a ZIP64 field); when none
/// does, the entry is dropped and the scan goes on only if a local header
/// sits where a descriptor would end. Stored (and encrypted or otherwise
/// compressed) entries with a descriptor are delimited by searching forward
/// for a signed descriptor whose compressed size equals the distance
/// searched and, for stored unencrypted data, whose size and CRC-32 match
/// the bytes (else it must be followed by `PK` or the end of the file);
/// without one the scan stops. At most about 1 MiB of `r` is buffered at a
/// time, read in large sequential chunks, seeking only to skip data that is
/// not buffered; `r` is left at an unspecified position.
///
/// # Errors
///
/// Only errors of `r` itself (other than reaching its end); a damaged or
/// hostile volume just ends the scan early.
pub fn scan<R: Read + Seek>(r: &mut R, limits: ScanLimits) -> io::Result<Vec<Found>> {
    let len = r.seek(SeekFrom::End(0))?;
    let mut scanner = Scanner {
        win: Window {
            r,
            data: vec![0; WINDOW],
            base: 0,
            filled: 0,
            r_pos: len,
        },
        len,
        out: Vec::new(),
        inflater: None,
    };
    let mut found = Vec::new();
    let mut pos = 0u64;
    while found.len() < limits.max_entries {
        match scanner.entry_at(pos, &limits)? {
            Step::Entry(entry, next) => {
                found.push(entry);
                pos = next;
            }
            Step::Skip(next) => pos = next,
            Step::Stop => break,
        }
    }
    Ok(found)
}

/// Copies the decompressed content of `f` into `out` and returns (bytes written, CRC-32 of them). Errors (`io::ErrorKind::InvalidData` with a message naming the entry) when the method is not stored/deflate, the entry is encrypted, the data is truncated or corrupt, or the size or CRC-32 disagree with `f`. Never writes more than `f.size` bytes to `out`, whatever the compressed data expands to (zip-bomb safe): stop and error if the stream would produce more.
///
/// Compressed bytes left over after the deflate stream ends (inside
/// `f.compressed_size`) are ignored: the size and CRC-32 checks decide.
///
/// # Errors
///
/// `InvalidData` as above; errors of `r` or `out` as they come.
pub fn extract<R: Read + Seek>(
    r: &mut R,
    f: &Found,
    out: &mut dyn Write,
) -> io::Result<(u64, u32)> {
    if f.encrypted {
        return Err(invalid(f, "encrypted entries are not extracted"));
    }
    if f.method != STORED && f.method != DEFLATED {
        return Err(invalid(
            f,
            &format!("compression method {} is not supported", f.method),
        ));
    }
    if f.method == STORED && f.compressed_size != f.size {
        return Err(invalid(
            f,
            &format!(
                "stored entry records {} compressed but {} uncompressed bytes",
                f.compressed_size, f.size
            ),
        ));
    }
    r.seek(SeekFrom::Start(f.data_offset))?;
    let mut input = Read::by_ref(r).take(f.compressed_size);
    let mut sink = Sink {
        out,
        hasher: crc32fast::Hasher::new(),
        written: 0,
    };
    if f.method == STORED {
        copy_stored(&mut input, f, &mut sink)?;
    } else {
        inflate_into(&mut input, f, &mut sink)?;
    }
    let Sink {
        hasher, written, ..
    } = sink;
    if written != f.size {
        return Err(invalid(
            f,
            &format!("{written} bytes extracted but {} recorded", f.size),
        ));
    }
    let crc = hasher.finalize();
    if crc != f.crc32 {
        return Err(invalid(
            f,
            &format!("CRC-32 {crc:08x} of the data but {:08x} recorded", f.crc32),
        ));
    }
    Ok((written, crc))
}

/// An `InvalidData` error naming the entry.
fn invalid(f: &Found, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "salvaged entry {:?} at offset {}: {what}",
            String::from_utf8_lossy(&f.name),
            f.header_offset
        ),
    )
}

/// The caller's sink, with the CRC-32 and count of what went into it.
struct Sink<'a> {
    out: &'a mut dyn Write,
    hasher: crc32fast::Hasher,
    written: u64,
}

impl Sink<'_> {
    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.out.write_all(chunk)?;
        self.hasher.update(chunk);
        self.written = self.written.saturating_add(len64(chunk.len()));
        Ok(())
    }
}

/// Copies the stored data of `f` (its `compressed_size` bytes, which equal
/// its size) from `input` into `sink`.
fn copy_stored(input: &mut impl Read, f: &Found, sink: &mut Sink<'_>) -> io::Result<()> {
    let mut buf = vec![0u8; buf_len(f.compressed_size)];
    loop {
        let n = read_some(input, &mut buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        sink.write(chunk)?;
    }
    if sink.written < f.compressed_size {
        return Err(invalid(f, "compressed data is truncated"));
    }
    Ok(())
}

/// Inflates the deflate data of `f` from `input` (limited to its
/// compressed size) into `sink`, never writing past `f.size`.
fn inflate_into(input: &mut impl Read, f: &Found, sink: &mut Sink<'_>) -> io::Result<()> {
    let mut inflater = Decompress::new(false);
    let mut inbuf = vec![0u8; buf_len(f.compressed_size)];
    let mut outbuf = vec![0u8; buf_len(f.size.saturating_add(1))];
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut read_total = 0u64;
    let mut input_done = false;
    loop {
        if lo >= hi && !input_done {
            hi = read_some(input, &mut inbuf)?;
            lo = 0;
            read_total = read_total.saturating_add(len64(hi));
            input_done = hi == 0;
        }
        // One byte more than may still be written, so a stream that
        // expands past `f.size` shows itself without being written.
        let remaining = f.size.saturating_sub(sink.written);
        let cap = usize::try_from(remaining.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(outbuf.len());
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let status = inflater
            .decompress(
                inbuf.get(lo..hi).unwrap_or_default(),
                outbuf.get_mut(..cap).unwrap_or_default(),
                FlushDecompress::None,
            )
            .map_err(|e| invalid(f, &format!("corrupt deflate data: {e}")))?;
        let consumed = inflater.total_in().saturating_sub(in_before);
        let produced = inflater.total_out().saturating_sub(out_before);
        lo = lo.saturating_add(usize::try_from(consumed).unwrap_or(usize::MAX));
        if produced > remaining {
            return Err(invalid(
                f,
                &format!(
                    "deflate data expands past the recorded size of {} bytes",
                    f.size
                ),
            ));
        }
        sink.write(
            outbuf
                .get(..usize::try_from(produced).unwrap_or(usize::MAX))
                .unwrap_or_default(),
        )?;
        if status == Status::StreamEnd {
            return Ok(());
        }
        if consumed == 0 && produced == 0 && (input_done || lo < hi) {
            return Err(invalid(
                f,
                if !input_done {
                    "corrupt deflate data"
                } else if read_total < f.compressed_size {
                    "compressed data is truncated"
                } else {
                    "deflate stream does not end within the compressed size"
                },
            ));
        }
    }
}

/// What the scan found at one offset.
enum Step {
    /// An entry, and where the next header should be.
    Entry(Found, u64),
    /// A header whose entry cannot be trusted, but the next header was found.
    Skip(u64),
    /// No further header can be located.
    Stop,
}

/// A data descriptor as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Descriptor {
    crc32: u32,
    compressed_size: u64,
    size: u64,
    /// Bytes the descriptor takes (12, 16, 20 or 24).
    len: u64,
}

/// State of one scan: the buffered volume and reusable inflate buffers.
struct Scanner<'a, R> {
    win: Window<'a, R>,
    len: u64,
    out: Vec<u8>,
    inflater: Option<Decompress>,
}

impl<R: Read + Seek> Scanner<'_, R> {
    /// Reads the local header at `pos` and delimits its entry.
    fn entry_at(&mut self, pos: u64, limits: &ScanLimits) -> io::Result<Step> {
        let h = self.win.at(pos, LOCAL_HEADER_LEN)?;
        if h.get(..4) != Some(&LOCAL_SIG[..]) {
            return Ok(Step::Stop);
        }
        let (Some(flags), Some(method), Some(crc32), Some(c32), Some(u32_size)) = (
            u16_at(h, 6),
            u16_at(h, 8),
            u32_at(h, 14),
            u32_at(h, 18),
            u32_at(h, 22),
        ) else {
            return Ok(Step::Stop);
        };
        let (Some(name_len), Some(extra_len)) = (u16_at(h, 26), u16_at(h, 28)) else {
            return Ok(Step::Stop);
        };
        let (name_len, extra_len) = (usize::from(name_len), usize::from(extra_len));
        if name_len > limits.max_name_len {
            return Ok(Step::Stop);
        }
        let var_len = name_len.saturating_add(extra_len);
        let Some(data_offset) = pos
            .checked_add(len64(LOCAL_HEADER_LEN))
            .and_then(|p| p.checked_add(len64(var_len)))
            .filter(|&d| d <= self.len)
        else {
            return Ok(Step::Stop);
        };
        let v = self
            .win
            .at(pos.saturating_add(len64(LOCAL_HEADER_LEN)), var_len)?;
        let (Some(name), Some(extra)) = (v.get(..name_len), v.get(name_len..var_len)) else {
            return Ok(Step::Stop);
        };
        let name = name.to_vec();
        let zip64 = extra_field(extra, ZIP64_EXTRA);
        let (csize, size) = header_sizes(c32, u32_size, zip64);
        let has_zip64 = zip64.is_some();

        let encrypted = flags & FLAG_ENCRYPTED != 0;
        let inflatable = method == DEFLATED && !encrypted;
        let mut entry = Found {
            name,
            header_offset: pos,
            data_offset,
            method,
            compressed_size: 0,
            size: 0,
            crc32,
            encrypted,
        };

        if flags & FLAG_DESCRIPTOR != 0 {
            let desc = match self.delimit_by_descriptor(&entry, has_zip64)? {
                Ok(desc) => desc,
                Err(step) => return Ok(step),
            };
            let Some(next) = data_offset
                .checked_add(desc.compressed_size)
                .and_then(|e| e.checked_add(desc.len))
                .filter(|&e| e <= self.len)
            else {
                return Ok(Step::Stop);
            };
            entry.compressed_size = desc.compressed_size;
            entry.size = desc.size;
            entry.crc32 = desc.crc32;
            return Ok(Step::Entry(entry, next));
        }

        let (csize, size) = match (csize, size) {
            (Some(c), Some(s)) => (c, s),
            // The sizes are lost (a short ZIP64 field): a deflate stream
            // still tells where it ends.
            (_, recorded) if inflatable => {
                let Some((consumed, produced)) = self.inflate_to_end(data_offset)? else {
                    return Ok(Step::Stop);
                };
                (consumed, recorded.unwrap_or(produced))
            }
            _ => return Ok(Step::Stop),
        };
        let Some(next) = data_offset.checked_add(csize).filter(|&e| e <= self.len) else {
            return Ok(Step::Stop);
        };
        entry.compressed_size = csize;
        entry.size = size;
        Ok(Step::Entry(entry, next))
    }

    /// Finds the end of the data of `entry` (flag bit 3 set) and the data
    /// descriptor after it: by inflating a deflate stream to its end and
    /// reading what follows, or else by searching for the descriptor. `Err`
    /// says what the scan does instead when there is no fitting descriptor.
    fn delimit_by_descriptor(
        &mut self,
        entry: &Found,
        wide_first: bool,
    ) -> io::Result<Result<Descriptor, Step>> {
        if entry.method != DEFLATED || entry.encrypted {
            let check = entry.method == STORED && !entry.encrypted;
            return Ok(self
                .search_descriptor(entry.data_offset, check, wide_first)?
                .ok_or(Step::Stop));
        }
        let Some((consumed, produced)) = self.inflate_to_end(entry.data_offset)? else {
            return Ok(Err(Step::Stop));
        };
        let Some(data_end) = entry.data_offset.checked_add(consumed) else {
            return Ok(Err(Step::Stop));
        };
        let b = self.win.at(data_end, DESC_PEEK)?;
        if let Some(d) = choose_descriptor(b, wide_first, false, false, |d| {
            d.compressed_size == consumed && d.size == produced
        }) {
            return Ok(Ok(d));
        }
        // No reading fits: drop the entry, but go on if the next header
        // sits where some descriptor would end.
        Ok(Err([16u64, 12, 24, 20]
            .into_iter()
            .find(|&n| {
                usize::try_from(n)
                    .ok()
                    .and_then(|n| b.get(n..n.saturating_add(4)))
                    == Some(&LOCAL_SIG[..])
            })
            .and_then(|n| data_end.checked_add(n))
            .map_or(Step::Stop, Step::Skip)))
    }

    /// Inflates the raw deflate stream at `pos` to its end and returns
    /// (compressed bytes consumed, bytes produced), or `None` when the
    /// stream is corrupt or runs past the end of the volume.
    fn inflate_to_end(&mut self, pos: u64) -> io::Result<Option<(u64, u64)>> {
        let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
        inflater.reset(false);
        if self.out.is_empty() {
            self.out = vec![0; CHUNK];
        }
        let mut pos = pos;
        loop {
            let input = self.win.at(pos, 1)?;
            if input.is_empty() {
                return Ok(None);
            }
            let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
            let Ok(status) = inflater.decompress(input, &mut self.out, FlushDecompress::None)
            else {
                return Ok(None);
            };
            let consumed = inflater.total_in().saturating_sub(in_before);
            let Some(next) = pos.checked_add(consumed) else {
                return Ok(None);
            };
            pos = next;
            if status == Status::StreamEnd {
                return Ok(Some((inflater.total_in(), inflater.total_out())));
            }
            if consumed == 0 && inflater.total_out() == out_before {
                return Ok(None);
            }
        }
    }

    /// Searches forward from `data_offset` for a signed data descriptor
    /// whose compressed size equals the distance searched. With `check`
    /// (stored, unencrypted data) its size must equal it too and its CRC-32
    /// must match the bytes; without, it must be followed by a signature
    /// or the end of the volume.
    fn search_descriptor(
        &mut self,
        data_offset: u64,
        check: bool,
        wide_first: bool,
    ) -> io::Result<Option<Descriptor>> {
        let mut hasher = crc32fast::Hasher::new();
        let mut p = data_offset;
        loop {
            let buf = self.win.at(p, DESC_PEEK)?;
            if buf.len() < DESC_SIG.len() {
                return Ok(None);
            }
            let hit = buf.windows(DESC_SIG.len()).position(|w| w == DESC_SIG);
            let advance = hit.unwrap_or(buf.len().saturating_sub(DESC_SIG.len() - 1));
            if check {
                hasher.update(buf.get(..advance).unwrap_or_default());
            }
            let Some(next) = p.checked_add(len64(advance)) else {
                return Ok(None);
            };
            p = next;
            if hit.is_none() {
                continue;
            }
            let distance = p.saturating_sub(data_offset);
            let crc = hasher.clone().finalize();
            let b = self.win.at(p, DESC_PEEK)?;
            let found = choose_descriptor(b, wide_first, true, !check, |d| {
                d.compressed_size == distance && (!check || (d.size == distance && d.crc32 == crc))
            });
            if found.is_some() {
                return Ok(found);
            }
            if check {
                hasher.update(&DESC_SIG[..1]);
            }
            p = p.saturating_add(1);
        }
    }
}

/// A fixed buffer over the volume: hands out the bytes at an offset,
/// refilling with large sequential reads and seeking only on a jump.
struct Window<'a, R> {
    r: &'a mut R,
    data: Vec<u8>,
    /// Offset in the volume of `data[0]`.
    base: u64,
    /// Valid bytes in `data`.
    filled: usize,
    /// Where `r` stands.
    r_pos: u64,
}

impl<R: Read + Seek> Window<'_, R> {
    /// The buffered bytes from `pos` on: at least `min` of them (at most the
    /// window size) unless the volume ends first, and an empty slice when
    /// `pos` is at or past the end.
    fn at(&mut self, pos: u64, min: usize) -> io::Result<&[u8]> {
        let min = min.clamp(1, self.data.len());
        let rel = pos
            .checked_sub(self.base)
            .and_then(|d| usize::try_from(d).ok())
            .filter(|&d| d <= self.filled);
        match rel {
            Some(off) if self.filled - off >= min => {
                return Ok(self.data.get(off..self.filled).unwrap_or_default());
            }
            Some(off) => {
                // Keep the tail, read on after it.
                self.data.copy_within(off..self.filled, 0);
                self.filled -= off;
            }
            None => self.filled = 0,
        }
        self.base = pos;
        let want = pos.saturating_add(len64(self.filled));
        if self.r_pos != want {
            self.r_pos = self.r.seek(SeekFrom::Start(want))?;
            if self.r_pos != want {
                return Ok(self.data.get(..self.filled).unwrap_or_default());
            }
        }
        while self.filled < min {
            let n = read_some(self.r, self.data.get_mut(self.filled..).unwrap_or_default())?;
            if n == 0 {
                break;
            }
            self.filled = self.filled.saturating_add(n).min(self.data.len());
            self.r_pos = self.r_pos.saturating_add(len64(n));
        }
        Ok(self.data.get(..self.filled).unwrap_or_default())
    }
}

/// Sizes from the local header, resolved through the ZIP64 extra field when
/// a 32-bit field holds the sentinel (`None`: unknown). The field holds the
/// uncompressed then the compressed size when it has 16 bytes; with 8 it
/// holds whichever was the sentinel, the uncompressed size first. Without a
/// ZIP64 field a sentinel is taken literally (an old writer's 4 GiB - 1).
fn header_sizes(c32: u32, u32_size: u32, zip64: Option<&[u8]>) -> (Option<u64>, Option<u64>) {
    let mut csize = Some(u64::from(c32));
    let mut size = Some(u64::from(u32_size));
    let Some(z) = zip64 else {
        return (csize, size);
    };
    let (c_wide, s_wide) = (c32 == ZIP64_SENTINEL, u32_size == ZIP64_SENTINEL);
    if !c_wide && !s_wide {
        return (csize, size);
    }
    if let (Some(s), Some(c)) = (u64_at(z, 0), u64_at(z, 8)) {
        return (Some(c), Some(s));
    }
    let first = u64_at(z, 0);
    if s_wide {
        size = first;
        if c_wide {
            csize = None;
        }
    } else {
        csize = first;
    }
    (csize, size)
}

/// The data of the first extra field with header id `id`, if whole.
fn extra_field(extra: &[u8], id: u16) -> Option<&[u8]> {
    let mut rest = extra;
    while let (Some(field_id), Some(len)) = (u16_at(rest, 0), u16_at(rest, 2)) {
        let end = 4usize.saturating_add(usize::from(len));
        let data = rest.get(4..end)?;
        if field_id == id {
            return Some(data);
        }
        rest = rest.get(end..)?;
    }
    None
}

/// Picks the reading of `b` (the bytes right after an entry's data) as a
/// data descriptor that `accept` takes. Signed readings come before
/// unsigned ones, and the 8-byte-size (ZIP64) readings before the 4-byte
/// ones when `wide_first`. Of the accepted readings the first one followed
/// by `PK` (another record) or by the end of the volume wins; failing that
/// the first accepted one, unless `require_follow`.
fn choose_descriptor(
    b: &[u8],
    wide_first: bool,
    signed_only: bool,
    require_follow: bool,
    accept: impl Fn(&Descriptor) -> bool,
) -> Option<Descriptor> {
    let layouts = if wide_first {
        [(true, true), (true, false), (false, true), (false, false)]
    } else {
        [(true, false), (true, true), (false, false), (false, true)]
    };
    let mut fallback = None;
    for (signed, wide) in layouts {
        if signed_only && !signed {
            continue;
        }
        let Some((d, after)) = read_descriptor(b, signed, wide) else {
            continue;
        };
        if !accept(&d) {
            continue;
        }
        // `b` holds DESC_PEEK bytes unless the volume ends, so an empty
        // rest means the end of the volume.
        if after.is_empty() || after.starts_with(b"PK") {
            return Some(d);
        }
        if fallback.is_none() && !require_follow {
            fallback = Some(d);
        }
    }
    fallback
}

/// Reads `b` as a data descriptor of one layout; returns it and the bytes
/// after it.
fn read_descriptor(b: &[u8], signed: bool, wide: bool) -> Option<(Descriptor, &[u8])> {
    let body = if signed {
        b.strip_prefix(&DESC_SIG[..])?
    } else {
        b
    };
    let crc32 = u32_at(body, 0)?;
    let (compressed_size, size, body_len) = if wide {
        (u64_at(body, 4)?, u64_at(body, 12)?, 20usize)
    } else {
        (
            u64::from(u32_at(body, 4)?),
            u64::from(u32_at(body, 8)?),
            12usize,
        )
    };
    let len = len64(body_len + if signed { DESC_SIG.len() } else { 0 });
    Some((
        Descriptor {
            crc32,
            compressed_size,
            size,
            len,
        },
        body.get(body_len..)?,
    ))
}

/// One `read`, retried when interrupted.
fn read_some<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// A buffer length for `n` bytes of data: `n`, at most `CHUNK`, at least 1.
fn buf_len(n: u64) -> usize {
    usize::try_from(n).unwrap_or(CHUNK).clamp(1, CHUNK)
}

/// A buffer length as a volume offset.
fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Little-endian `u16` at `i`.
fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(i..i.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Little-endian `u32` at `i`.
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(i..i.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Little-endian `u64` at `i`.
fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(i..i.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::{BufReader, Cursor};
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipArchive, ZipWriter};

    /// Deterministic xorshift64* generator.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn byte(&mut self) -> u8 {
            self.next().to_le_bytes()[0]
        }
    }

    /// Content for entry `i`: empty, compressible text or random bytes.
    fn content(i: usize, rng: &mut Rng) -> Vec<u8> {
        let len = usize::try_from(rng.below(4000)).unwrap();
        match i % 5 {
            0 if i.is_multiple_of(10) => Vec::new(),
            1 | 3 => (0..len).map(|_| rng.byte()).collect(),
            _ => format!("Subject: message {i}\r\n\r\n")
                .into_bytes()
                .into_iter()
                .chain((0..len).map(|k| b"lorem ipsum dolor sit amet "[k % 27]))
                .collect(),
        }
    }

    fn method_for(i: usize) -> CompressionMethod {
        if i.is_multiple_of(2) {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        }
    }

    /// A seekable archive of `n` files (every 17th a directory first).
    fn archive(n: usize, seed: u64, large: bool) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
        let mut rng = Rng(seed);
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let mut files = Vec::new();
        for i in 0..n {
            let opts = SimpleFileOptions::default()
                .compression_method(method_for(i))
                .large_file(large);
            if i % 17 == 5 {
                let dir = format!("dir{i}/");
                zip.add_directory(dir.as_str(), opts).unwrap();
                files.push((dir, Vec::new()));
            }
            let name = format!("store/mail/user{i}/#msgs/{i:08x}.eml");
            let data = content(i, &mut rng);
            zip.start_file(name.as_str(), opts).unwrap();
            zip.write_all(&data).unwrap();
            files.push((name, data));
        }
        (zip.finish().unwrap().into_inner(), files)
    }

    /// The same through the streaming writer, which writes data descriptors.
    fn stream_archive(entries: &[(&str, &[u8], CompressionMethod)], large: bool) -> Vec<u8> {
        let mut zip = ZipWriter::new_stream(Vec::new());
        for (name, data, method) in entries {
            let opts = SimpleFileOptions::default()
                .compression_method(*method)
                .large_file(large);
            if name.ends_with('/') {
                zip.add_directory(*name, opts).unwrap();
            } else {
                zip.start_file(*name, opts).unwrap();
                zip.write_all(data).unwrap();
            }
        }
        zip.finish().unwrap().into_inner()
    }

    fn scan_bytes(bytes: &[u8]) -> Vec<Found> {
        scan(
            &mut BufReader::new(Cursor::new(bytes)),
            ScanLimits::default(),
        )
        .unwrap()
    }

    fn extract_bytes(bytes: &[u8], f: &Found) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let (n, crc) = extract(&mut BufReader::new(Cursor::new(bytes)), f, &mut out)?;
        assert_eq!(n, out.len() as u64);
        assert_eq!(crc, crc32fast::hash(&out));
        Ok(out)
    }

    fn names(found: &[Found]) -> Vec<String> {
        found
            .iter()
            .map(|f| String::from_utf8(f.name.clone()).unwrap())
            .collect()
    }

    /// (name, header offset, data offset, compressed size, size, crc) from the central directory.
    fn central(bytes: &[u8]) -> Vec<(String, u64, u64, u64, u64, u32)> {
        let mut a = ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..a.len())
            .map(|i| {
                let f = a.by_index(i).unwrap();
                (
                    f.name().unwrap().to_string(),
                    f.header_start(),
                    f.data_start().unwrap(),
                    f.compressed_size(),
                    f.size(),
                    f.crc32(),
                )
            })
            .collect()
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A hand-made local header and its data.
    #[allow(clippy::too_many_arguments)] // mirrors the header's fields
    fn local(
        name: &str,
        flags: u16,
        method: u16,
        crc: u32,
        csize: u32,
        size: u32,
        extra: &[u8],
        data: &[u8],
    ) -> Vec<u8> {
        let mut v = LOCAL_SIG.to_vec();
        v.extend_from_slice(&20u16.to_le_bytes());
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(&method.to_le_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&crc.to_le_bytes());
        v.extend_from_slice(&csize.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&u16::try_from(name.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&u16::try_from(extra.len()).unwrap().to_le_bytes());
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(extra);
        v.extend_from_slice(data);
        v
    }

    fn zip64_extra(values: &[u64]) -> Vec<u8> {
        let mut v = ZIP64_EXTRA.to_le_bytes().to_vec();
        v.extend_from_slice(&u16::try_from(values.len() * 8).unwrap().to_le_bytes());
        for x in values {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }

    fn descriptor(signed: bool, wide: bool, crc: u32, csize: u64, size: u64) -> Vec<u8> {
        let mut v = if signed {
            DESC_SIG.to_vec()
        } else {
            Vec::new()
        };
        v.extend_from_slice(&crc.to_le_bytes());
        if wide {
            v.extend_from_slice(&csize.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
        } else {
            v.extend_from_slice(&u32::try_from(csize).unwrap().to_le_bytes());
            v.extend_from_slice(&u32::try_from(size).unwrap().to_le_bytes());
        }
        v
    }

    /// Checks `found` against the central directory records it should match.
    fn assert_matches(found: &[Found], cd: &[(String, u64, u64, u64, u64, u32)]) {
        assert_eq!(found.len(), cd.len());
        for (f, (name, header, data, csize, size, crc)) in found.iter().zip(cd) {
            assert_eq!(f.name, name.as_bytes());
            assert_eq!(f.header_offset, *header, "{name}");
            assert_eq!(f.data_offset, *data, "{name}");
            assert_eq!(f.compressed_size, *csize, "{name}");
            assert_eq!(f.size, *size, "{name}");
            assert_eq!(f.crc32, *crc, "{name}");
            assert!(!f.encrypted);
        }
    }

    /// Case 1: Half of a 200-entry volume: exactly the entries whose data lie
    /// before the cut, each extracted to its original bytes.
    #[test]
    fn truncated_volume_yields_entries_before_the_cut() {
        let (bytes, files) = archive(200, 7, false);
        let cd = central(&bytes);
        let cut = bytes.len() / 2;
        let expected: Vec<_> = cd
            .iter()
            .filter(|e| e.2 + e.3 <= cut as u64)
            .cloned()
            .collect();
        assert!(expected.len() > 50 && expected.len() < cd.len());
        let truncated = &bytes[..cut];
        let found = scan_bytes(truncated);
        assert_matches(&found, &expected);
        assert!(found.iter().any(|f| f.method == 0) && found.iter().any(|f| f.method == 8));
        assert!(found.iter().any(|f| f.name.ends_with(b"/")));
        for f in &found {
            let (_, data) = files.iter().find(|(n, _)| n.as_bytes() == f.name).unwrap();
            assert_eq!(&extract_bytes(truncated, f).unwrap(), data);
        }
    }

    /// Case 2: A volume without its central directory: every entry; with it, the
    /// scan stops at the central directory and finds the same.
    #[test]
    fn volume_without_central_directory_yields_every_entry() {
        let (bytes, files) = archive(60, 11, false);
        let cd_start = ZipArchive::new(Cursor::new(&bytes))
            .unwrap()
            .central_directory_start();
        let cd = central(&bytes);
        let bare = &bytes[..usize::try_from(cd_start).unwrap()];
        let found = scan_bytes(bare);
        assert_matches(&found, &cd);
        assert_eq!(scan_bytes(&bytes), found);
        for (f, (_, data)) in found.iter().zip(&files) {
            assert_eq!(&extract_bytes(bare, f).unwrap(), data);
        }
    }

    /// Case 3: Entries written with data descriptors (streaming writer and hand
    /// made: signed, unsigned, 32- and 64-bit sizes; stored data holding
    /// descriptor look-alikes).
    #[test]
    fn data_descriptor_entries_are_found_and_extracted() {
        let text = b"Received: from mx\r\n".repeat(300);
        // Look-alike descriptors inside stored data: one whose sizes fit
        // the distance (only its CRC-32 gives it away), then stray
        // signatures.
        let mut tricky = b"stored".to_vec();
        tricky.extend_from_slice(&descriptor(true, false, 0, 6, 6));
        tricky.extend_from_slice(b"PK\x03\x04 and more PK\x07\x08 PK\x07\x08\x00");
        let entries: Vec<(&str, &[u8], CompressionMethod)> = vec![
            ("a.eml", &text, CompressionMethod::Deflated),
            ("b.eml", &text, CompressionMethod::Stored),
            ("dir/", b"", CompressionMethod::Stored),
            ("empty-deflated", b"", CompressionMethod::Deflated),
            ("empty-stored", b"", CompressionMethod::Stored),
            ("tricky.bin", &tricky, CompressionMethod::Stored),
            ("c.eml", b"short", CompressionMethod::Deflated),
        ];
        let bytes = stream_archive(&entries, false);
        let found = scan_bytes(&bytes);
        assert_matches(&found, &central(&bytes));
        for f in &found {
            let at = usize::try_from(f.header_offset).unwrap() + 6;
            let flags = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
            let is_dir = f.name.ends_with(b"/");
            assert_eq!(
                flags & FLAG_DESCRIPTOR != 0,
                !is_dir,
                "descriptors on every file"
            );
        }
        for (f, (_, data, _)) in found.iter().zip(&entries) {
            assert_eq!(&extract_bytes(&bytes, f).unwrap(), data);
        }

        // Hand made: every descriptor layout, deflated and stored.
        let body = b"hello hello hello hello, descriptor".repeat(20);
        let (packed, crc) = (deflate(&body), crc32fast::hash(&body));
        let (clen, blen) = (packed.len() as u64, body.len() as u64);
        let mut v = Vec::new();
        let mut expect = Vec::new();
        for (i, (signed, wide)) in [(true, false), (false, false), (true, true), (false, true)]
            .into_iter()
            .enumerate()
        {
            let extra = if wide {
                zip64_extra(&[0, 0])
            } else {
                Vec::new()
            };
            let name = format!("deflated{i}");
            expect.push((name.clone(), v.len() as u64, clen, blen));
            v.extend(local(
                &name,
                FLAG_DESCRIPTOR,
                DEFLATED,
                0,
                0,
                0,
                &extra,
                &packed,
            ));
            v.extend(descriptor(signed, wide, crc, clen, blen));
            if signed {
                let name = format!("stored{i}");
                expect.push((name.clone(), v.len() as u64, blen, blen));
                v.extend(local(
                    &name,
                    FLAG_DESCRIPTOR,
                    STORED,
                    0,
                    0,
                    0,
                    &extra,
                    &body,
                ));
                v.extend(descriptor(signed, wide, crc, blen, blen));
            }
        }
        let found = scan_bytes(&v);
        assert_eq!(found.len(), expect.len());
        for (f, (name, header, csize, size)) in found.iter().zip(&expect) {
            assert_eq!(f.name, name.as_bytes());
            assert_eq!(
                (f.header_offset, f.compressed_size, f.size, f.crc32),
                (*header, *csize, *size, crc)
            );
            assert_eq!(extract_bytes(&v, f).unwrap(), body);
        }
    }

    /// Case 3b: Ambiguous descriptors: an empty deflated entry with a ZIP64
    /// descriptor but no ZIP64 extra reads as a valid 32-bit descriptor
    /// too; the reading followed by the next header wins.
    #[test]
    fn ambiguous_descriptor_is_resolved_by_what_follows() {
        let packed = deflate(b"");
        let clen = packed.len() as u64;
        let mut v = local("empty", FLAG_DESCRIPTOR, DEFLATED, 0, 0, 0, &[], &packed);
        v.extend(descriptor(true, true, 0, clen, 0));
        v.extend(local(
            "next",
            0,
            STORED,
            crc32fast::hash(b"x"),
            1,
            1,
            &[],
            b"x",
        ));
        let found = scan_bytes(&v);
        assert_eq!(names(&found), ["empty", "next"]);
        assert_eq!((found[0].compressed_size, found[0].size), (clen, 0));

        // No reading matches the inflated sizes: the entry is dropped, and
        // the scan goes on at the header after it.
        let mut v = local("liar", FLAG_DESCRIPTOR, DEFLATED, 0, 0, 0, &[], &packed);
        v.extend(descriptor(true, false, 0, clen + 1, 0));
        v.extend(local(
            "next",
            0,
            STORED,
            crc32fast::hash(b"x"),
            1,
            1,
            &[],
            b"x",
        ));
        assert_eq!(names(&scan_bytes(&v)), ["next"]);

        // A stored entry with a descriptor that was never written: dropped,
        // and the scan stops.
        let mut v = local("a", 0, STORED, crc32fast::hash(b"x"), 1, 1, &[], b"x");
        v.extend(local(
            "nodesc",
            FLAG_DESCRIPTOR,
            STORED,
            0,
            0,
            0,
            &[],
            b"data",
        ));
        v.extend(local(
            "b",
            0,
            STORED,
            crc32fast::hash(b"x"),
            1,
            1,
            &[],
            b"x",
        ));
        assert_eq!(names(&scan_bytes(&v)), ["a"]);
    }

    /// Case 4: ZIP64 local headers (`large_file`) and ZIP64 descriptors.
    #[test]
    fn zip64_entries_have_their_real_sizes() {
        let (bytes, files) = archive(6, 3, true);
        let first_sizes = &bytes[18..26];
        assert_eq!(
            first_sizes, &[0xFF; 8],
            "large_file writes ZIP64 local headers"
        );
        let found = scan_bytes(&bytes);
        assert_matches(&found, &central(&bytes));
        for (f, (_, data)) in found.iter().zip(&files) {
            assert_eq!(&extract_bytes(&bytes, f).unwrap(), data);
        }

        let text = b"zip64 ".repeat(1000);
        let entries: Vec<(&str, &[u8], CompressionMethod)> = vec![
            ("a", &text, CompressionMethod::Deflated),
            ("b", &text, CompressionMethod::Stored),
            ("c", b"", CompressionMethod::Deflated),
        ];
        let bytes = stream_archive(&entries, true);
        let found = scan_bytes(&bytes);
        assert_matches(&found, &central(&bytes));
        for pair in found.windows(2) {
            let end = pair[0].data_offset + pair[0].compressed_size;
            assert_eq!(pair[1].header_offset - end, 24, "a signed ZIP64 descriptor");
        }
        for (f, (_, data, _)) in found.iter().zip(&entries) {
            assert_eq!(&extract_bytes(&bytes, f).unwrap(), data);
        }

        // An 8-byte ZIP64 field holds whichever size was the sentinel.
        let body = b"eight byte field";
        let crc = crc32fast::hash(body);
        let mut v = local("u", 0, STORED, crc, 16, u32::MAX, &zip64_extra(&[16]), body);
        v.extend(local(
            "c",
            0,
            STORED,
            crc,
            u32::MAX,
            16,
            &zip64_extra(&[16]),
            body,
        ));
        let found = scan_bytes(&v);
        assert_eq!(names(&found), ["u", "c"]);
        for f in &found {
            assert_eq!((f.compressed_size, f.size), (16, 16));
            assert_eq!(extract_bytes(&v, f).unwrap(), body);
        }
    }

    /// Case 5: A corrupted byte in one entry's deflate data fails that entry only.
    #[test]
    fn corrupt_deflate_data_fails_only_its_entry() {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let mut files = Vec::new();
        for i in 0..10 {
            let data = format!("line {i} of a long message body\r\n")
                .repeat(700 + i)
                .into_bytes();
            zip.start_file(format!("m{i}"), SimpleFileOptions::default())
                .unwrap();
            zip.write_all(&data).unwrap();
            files.push(data);
        }
        let mut bytes = zip.finish().unwrap().into_inner();
        let cd = central(&bytes);
        let victim = 4;
        let at = usize::try_from(cd[victim].2 + cd[victim].3 / 2).unwrap();
        bytes[at] ^= 0x5A;
        let found = scan_bytes(&bytes);
        assert_eq!(found.len(), 10);
        for (i, f) in found.iter().enumerate() {
            let got = extract_bytes(&bytes, f);
            if i == victim {
                let e = got.unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                assert!(e.to_string().contains("m4"), "{e}");
            } else {
                assert_eq!(got.unwrap(), files[i]);
            }
        }
    }

    /// Case 6: Hostile headers: huge sizes, names past the end, overflowing
    /// ZIP64 sizes, limits, and a hostile `Found`.
    #[test]
    fn hostile_headers_end_the_scan_quietly() {
        let ok = local("ok", 0, STORED, crc32fast::hash(b"x"), 1, 1, &[], b"x");
        let with = |tail: Vec<u8>| [ok.clone(), tail].concat();

        // A huge compressed size.
        let v = with(local(
            "huge",
            0,
            STORED,
            0,
            0xFFFF_FFF0,
            0xFFFF_FFF0,
            &[],
            b"abc",
        ));
        assert_eq!(names(&scan_bytes(&v)), ["ok"]);
        // ZIP64 sizes that overflow every addition.
        let v = with(local(
            "z",
            0,
            STORED,
            0,
            u32::MAX,
            u32::MAX,
            &zip64_extra(&[u64::MAX, u64::MAX]),
            b"",
        ));
        assert_eq!(names(&scan_bytes(&v)), ["ok"]);
        // A name (and extra field) running past the end.
        let mut v = with(local("n", 0, STORED, 0, 0, 0, &[], b""));
        let at = ok.len() + 26;
        v[at..at + 4].copy_from_slice(&[0xFF; 4]);
        assert_eq!(names(&scan_bytes(&v)), ["ok"]);
        // A truncated header, and a lone signature.
        assert_eq!(names(&scan_bytes(&with(LOCAL_SIG.to_vec()))), ["ok"]);
        assert!(scan_bytes(&ok[..29]).is_empty());
        assert!(scan_bytes(b"").is_empty());
        // A descriptor entry whose deflate stream runs past the end.
        let packed = deflate(&b"truncated stream ".repeat(100));
        let v = with(local(
            "t",
            FLAG_DESCRIPTOR,
            DEFLATED,
            0,
            0,
            0,
            &[],
            &packed[..packed.len() / 2],
        ));
        assert_eq!(names(&scan_bytes(&v)), ["ok"]);
        // A descriptor entry whose deflate data is garbage.
        let v = with(local(
            "g",
            FLAG_DESCRIPTOR,
            DEFLATED,
            0,
            0,
            0,
            &[],
            &[0xFF; 64],
        ));
        assert_eq!(names(&scan_bytes(&v)), ["ok"]);
        // An unknown method with a descriptor nobody can find.
        let v = with(local("m", FLAG_DESCRIPTOR, 93, 0, 0, 0, &[], b"zstd?"));
        assert_eq!(names(&scan_bytes(&v)), ["ok"]);

        // Limits.
        let three = [
            ok.clone(),
            ok.clone(),
            local("long-name", 0, STORED, 0, 0, 0, &[], b""),
        ]
        .concat();
        let limits = ScanLimits {
            max_entries: 2,
            ..ScanLimits::default()
        };
        assert_eq!(scan(&mut Cursor::new(&three), limits).unwrap().len(), 2);
        let limits = ScanLimits {
            max_name_len: 4,
            ..ScanLimits::default()
        };
        assert_eq!(scan(&mut Cursor::new(&three), limits).unwrap().len(), 2);
        let limits = ScanLimits {
            max_entries: 0,
            ..ScanLimits::default()
        };
        assert!(scan(&mut Cursor::new(&three), limits).unwrap().is_empty());

        // A hostile `Found`: errors, no panic, nothing written.
        let mut f = scan_bytes(&ok).remove(0);
        for (offset, csize, size, method) in [
            (u64::MAX, u64::MAX, u64::MAX, STORED),
            (u64::MAX - 1, 5, 5, DEFLATED),
            (0, u64::MAX, u64::MAX, DEFLATED),
            (0, 2, 2, STORED),
            (0, 1, 1, 12),
        ] {
            (f.data_offset, f.compressed_size, f.size, f.method) = (offset, csize, size, method);
            let mut out = Vec::new();
            let e = extract(&mut Cursor::new(&ok), &f, &mut out).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        }
        let mut enc = scan_bytes(&ok).remove(0);
        enc.encrypted = true;
        assert!(extract(&mut Cursor::new(&ok), &enc, &mut Vec::new()).is_err());
    }

    /// Encrypted entries and other methods are reported (and delimited,
    /// with a descriptor too) but not extracted.
    #[test]
    fn other_methods_and_encrypted_entries_are_reported() {
        let body = b"not really encrypted or bzip2";
        let n = u32::try_from(body.len()).unwrap();
        let crc = crc32fast::hash(body);
        let mut v = local("enc", FLAG_ENCRYPTED, DEFLATED, crc, n, 99, &[], body);
        v.extend(local("bz2", 0, 12, crc, n, 99, &[], body));
        let flags = FLAG_ENCRYPTED | FLAG_DESCRIPTOR;
        v.extend(local("enc-dd", flags, DEFLATED, 0, 0, 0, &[], body));
        v.extend(descriptor(true, false, crc, n.into(), 99));
        v.extend(local("plain", 0, STORED, crc, n, n, &[], body));
        let found = scan_bytes(&v);
        assert_eq!(names(&found), ["enc", "bz2", "enc-dd", "plain"]);
        assert_eq!(
            found.iter().map(|f| f.encrypted).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        assert_eq!(
            (found[2].compressed_size, found[2].size, found[2].crc32),
            (n.into(), 99, crc)
        );
        for f in &found[..3] {
            let e = extract_bytes(&v, f).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        assert_eq!(extract_bytes(&v, &found[3]).unwrap(), body);
    }

    /// A sink that fails the test if it gets more than `cap` bytes.
    struct Capped {
        cap: u64,
        got: u64,
    }

    impl Write for Capped {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.got += buf.len() as u64;
            assert!(
                self.got <= self.cap,
                "{} bytes written, at most {} allowed",
                self.got,
                self.cap
            );
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Case 7: A deflate stream that expands past the recorded size: an error,
    /// and never more than the recorded size written.
    #[test]
    fn bomb_never_writes_past_the_recorded_size() {
        let zeros = vec![0u8; 8 << 20];
        let packed = deflate(&zeros);
        let clen = u32::try_from(packed.len()).unwrap();
        for size in [0u32, 1, 1000, 65_536, 1 << 20] {
            let crc = crc32fast::hash(&zeros[..size as usize]);
            let v = local("bomb", 0, DEFLATED, crc, clen, size, &[], &packed);
            let found = scan_bytes(&v);
            assert_eq!(found.len(), 1);
            let mut out = Capped {
                cap: u64::from(size),
                got: 0,
            };
            let e = extract(&mut Cursor::new(&v), &found[0], &mut out).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("expands past"), "{e}");
        }
    }

    /// Case 8: Random mutations of a small valid volume: no panic, and no
    /// extraction past an entry's size.
    #[test]
    fn random_mutations_never_panic() {
        let (plain, _) = archive(8, 5, false);
        let cd_start = ZipArchive::new(Cursor::new(&plain))
            .unwrap()
            .central_directory_start();
        let text = b"mutate me ".repeat(50);
        let entries: Vec<(&str, &[u8], CompressionMethod)> = vec![
            ("d1", &text, CompressionMethod::Deflated),
            ("s1", &text, CompressionMethod::Stored),
            ("dir/", b"", CompressionMethod::Stored),
        ];
        let mut base = plain[..usize::try_from(cd_start).unwrap()].to_vec();
        let streamed = stream_archive(&entries, false);
        let cd_start = ZipArchive::new(Cursor::new(&streamed))
            .unwrap()
            .central_directory_start();
        base.extend(&streamed[..usize::try_from(cd_start).unwrap()]);
        base.extend(stream_archive(&entries, true));
        assert_eq!(scan_bytes(&base).len(), 9 + 3 + 3);

        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut entries_seen = 0usize;
        for _ in 0..2000 {
            let mut v = base.clone();
            for _ in 0..=rng.below(4) {
                let at = usize::try_from(rng.below(v.len() as u64)).unwrap();
                match rng.below(4) {
                    0 => v[at] ^= 1 << rng.below(8),
                    1 => v[at] = rng.byte(),
                    2 => {
                        let end = (at + 4).min(v.len());
                        v[at..end].fill(0xFF);
                    }
                    _ => v.truncate(at),
                }
                if v.is_empty() {
                    break;
                }
            }
            let found = scan_bytes(&v);
            entries_seen += found.len();
            for f in &found {
                let mut out = Capped {
                    cap: f.size,
                    got: 0,
                };
                let _ = extract(&mut BufReader::new(Cursor::new(&v)), f, &mut out);
            }
        }
        assert!(entries_seen > 2000);
    }

    /// A reader that counts seeks and reads.
    struct Counting<R> {
        inner: R,
        seeks: usize,
        reads: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            self.inner.read(buf)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.seeks += 1;
            self.inner.seek(pos)
        }
    }

    /// Many small entries are read in a few large reads, without a seek
    /// per entry; a reader left anywhere is scanned from offset 0.
    #[test]
    fn scan_reads_sequentially() {
        let (bytes, _) = archive(3000, 9, false);
        let mut r = Counting {
            inner: Cursor::new(&bytes),
            seeks: 0,
            reads: 0,
        };
        r.inner.set_position(12_345);
        let found = scan(&mut r, ScanLimits::default()).unwrap();
        assert_eq!(found.len(), central(&bytes).len());
        // At most one seek per window (to jump over data that straddles
        // its end), never one per entry.
        assert!(r.seeks <= bytes.len() / WINDOW + 3, "{} seeks", r.seeks);
        assert!(r.reads <= bytes.len() / WINDOW + 3, "{} reads", r.reads);
    }
}
