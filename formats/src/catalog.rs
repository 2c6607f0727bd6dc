//! The catalog (`.catalog.tsv`, in the last volume): the complete backed-up
//! state at the time of the backup, one line per file (docs/formats/archive.md,
//! "Catalog"). A differential is computed from its base full's catalog alone,
//! and restoring a chain reproduces the catalog's state, deletions included.
//!
//! Columns are separated by one tab (shown as `→` here):
//!
//! ```text
//! # mailvault catalog 1
//! # crc32 → size → mtime → where → path
//! 1c291ca3 → 1133 → 1795000000.000000000 → 0 → store/mail/example.com/john/INBOX/#msgs/0000000a.eml
//! 9a0f11be → 2048 → 1794000000.500000000 → base → users.cfg
//! 00000000 → 512 → 1793000000.000000000 → deleted → store/mail/example.com/john/INBOX/#msgs/00000001.eml
//! ```

use std::fmt::Write as _;
use std::io::BufRead;

use crate::layout::RelPath;
use crate::limits::{CatalogBound, MAX_CATALOG_ROW_BYTES};
use crate::{Error, Result};

const FILE: &str = ".catalog.tsv";
const MAGIC: &str = "# mailvault catalog 1";

/// Modification time with nanoseconds, as the filesystem reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mtime {
    /// Seconds since the Unix epoch (may be negative).
    pub secs: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Mtime {
    /// From a `SystemTime`; times before the epoch are kept as negative seconds.
    #[must_use]
    pub fn from_system(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    Self { secs, nanos: 0 }
                } else {
                    Self {
                        secs: secs - 1,
                        nanos: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }

    /// Back to a `SystemTime`.
    #[must_use]
    pub fn to_system(self) -> std::time::SystemTime {
        let base = if self.secs >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.secs.unsigned_abs())
        } else {
            std::time::UNIX_EPOCH - std::time::Duration::from_secs(self.secs.unsigned_abs())
        };
        base + std::time::Duration::from_nanos(u64::from(self.nanos))
    }
}

/// Where the content of a catalogued file lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// In this archive, in the given volume (0 = first).
    Volume(u32),
    /// Unchanged since the base full: read it from there (differentials only).
    Base,
    /// Present in the base full but deleted since (differentials only); not part of the state.
    Deleted,
}

/// One line of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Install-root-relative path with `/` separators (`store/mail/...`), the
    /// archive entry being `@backup/<path>`.
    pub path: RelPath,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: Mtime,
    /// CRC-32 of the content (for `deleted` rows: of the content in the base).
    pub crc32: u32,
    /// Where the content is.
    pub location: Location,
}

/// The whole catalog, in archive order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Entries (state entries and, for a differential, `deleted` rows).
    pub entries: Vec<CatalogEntry>,
}

impl Catalog {
    /// Entries that make up the backed-up state (everything but `deleted` rows).
    pub fn state(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries
            .iter()
            .filter(|e| e.location != Location::Deleted)
    }

    /// Parses `.catalog.tsv` held in memory (no row bound: for trusted input
    /// and tests; archive readers use [`Catalog::read`]).
    ///
    /// # Errors
    /// A missing header line or any malformed row, naming its line.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Self::read(bytes, CatalogBound::UNLIMITED)
    }

    /// Reads `.catalog.tsv` as a stream, refusing it as soon as it has more
    /// lines than `bound.rows` (comments count), more bytes than
    /// `bound.bytes`, or a row longer than [`MAX_CATALOG_ROW_BYTES`]: memory
    /// stays proportional to what is accepted, whatever the input claims.
    /// Archive readers derive the bound from the archive's own entries
    /// ([`CatalogBound::for_archive`]).
    ///
    /// # Errors
    /// A missing header line, a malformed row (naming its line), too many
    /// rows or bytes or too long a row ([`Error::TooLarge`]), or a read error
    /// of `input` (reported as a bad line).
    pub fn read<R: BufRead>(mut input: R, bound: CatalogBound) -> Result<Self> {
        let max_rows = bound.rows;
        let mut total = 0u64;
        let mut line = Vec::with_capacity(256);
        let mut entries = Vec::new();
        let mut n = 0usize;
        loop {
            line.clear();
            let got = std::io::Read::take(&mut input, MAX_CATALOG_ROW_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::BadLine {
                    file: FILE,
                    line: n + 1,
                    reason: format!("cannot read: {e}"),
                })?;
            if got == 0 {
                break;
            }
            n += 1;
            total += got as u64;
            if total > bound.bytes {
                return Err(Error::TooLarge {
                    file: FILE,
                    limit: bound.bytes,
                    unit: "bytes (more than the archive's entry names can account for)",
                });
            }
            // Comments and blank lines count too: a writer writes two header
            // lines, so a catalog of a million comments is as refused as one
            // of a million rows.
            if n as u64 > max_rows.saturating_add(16) {
                return Err(Error::TooLarge {
                    file: FILE,
                    limit: max_rows,
                    unit: "rows (more rows than the archive has entries)",
                });
            }
            if line.len() > MAX_CATALOG_ROW_BYTES {
                return Err(Error::TooLarge {
                    file: FILE,
                    limit: MAX_CATALOG_ROW_BYTES as u64,
                    unit: "bytes per row",
                });
            }
            let text = std::str::from_utf8(&line).map_err(|_| Error::BadLine {
                file: FILE,
                line: n,
                reason: "not UTF-8".into(),
            })?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if n == 1 {
                if text != MAGIC {
                    return Err(Error::BadLine {
                        file: FILE,
                        line: 1,
                        reason: format!("expected `{MAGIC}`"),
                    });
                }
                continue;
            }
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            if entries.len() as u64 >= max_rows {
                return Err(Error::TooLarge {
                    file: FILE,
                    limit: max_rows,
                    unit: "rows (more rows than the archive has entries)",
                });
            }
            entries.push(parse_row(text, n)?);
        }
        if n == 0 {
            return Err(Error::BadLine {
                file: FILE,
                line: 1,
                reason: format!("expected `{MAGIC}`"),
            });
        }
        entries.shrink_to_fit();
        Ok(Self { entries })
    }

    /// Writes the text form into `out`.
    pub fn write_to(&self, out: &mut String) {
        write_header(out);
        for e in &self.entries {
            write_row(out, &e.path, e.size, e.mtime, e.crc32, e.location);
        }
    }

    /// The text form.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.entries.len() * 96);
        self.write_to(&mut s);
        s
    }
}

/// Writes the header lines of a catalog (for writers that stream rows).
pub fn write_header(out: &mut String) {
    out.push_str(MAGIC);
    out.push_str("\n# crc32\tsize\tmtime\twhere\tpath\n");
}

/// Writes one catalog row, so a writer need not build [`CatalogEntry`] values.
pub fn write_row(
    out: &mut String,
    path: &str,
    size: u64,
    mtime: Mtime,
    crc32: u32,
    location: Location,
) {
    let _ = write!(
        out,
        "{crc32:08x}\t{size}\t{}.{:09}\t",
        mtime.secs, mtime.nanos
    );
    match location {
        Location::Volume(n) => {
            let _ = write!(out, "{n}");
        }
        Location::Base => out.push_str("base"),
        Location::Deleted => out.push_str("deleted"),
    }
    out.push('\t');
    out.push_str(&escape(path));
    out.push('\n');
}

fn parse_row(line: &str, n: usize) -> Result<CatalogEntry> {
    let bad = |reason: String| Error::BadLine {
        file: FILE,
        line: n,
        reason,
    };
    let mut cols = line.splitn(5, '\t');
    let (Some(crc), Some(size), Some(mtime), Some(loc), Some(path)) = (
        cols.next(),
        cols.next(),
        cols.next(),
        cols.next(),
        cols.next(),
    ) else {
        return Err(bad("expected 5 tab-separated columns".into()));
    };
    let crc32 = u32::from_str_radix(crc, 16).map_err(|_| bad(format!("bad crc32 `{crc}`")))?;
    let size = size
        .parse()
        .map_err(|_| bad(format!("bad size `{size}`")))?;
    let mtime = parse_mtime(mtime).ok_or_else(|| bad(format!("bad mtime `{mtime}`")))?;
    let location = match loc {
        "base" => Location::Base,
        "deleted" => Location::Deleted,
        n => Location::Volume(n.parse().map_err(|_| bad(format!("bad location `{n}`")))?),
    };
    let path = unescape(path).ok_or_else(|| bad("bad escape in path".into()))?;
    Ok(CatalogEntry {
        path: RelPath::new(path)?,
        size,
        mtime,
        crc32,
        location,
    })
}

fn parse_mtime(s: &str) -> Option<Mtime> {
    let (secs, nanos) = s.split_once('.')?;
    let nanos: u32 = nanos.parse().ok()?;
    if nanos >= 1_000_000_000 {
        return None;
    }
    Some(Mtime {
        secs: secs.parse().ok()?,
        nanos,
    })
}

fn escape(path: &str) -> String {
    if !path.contains(['\\', '\t', '\n', '\r']) {
        return path.to_string();
    }
    path.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn unescape(s: &str) -> Option<String> {
    if !s.contains('\\') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            out.push(match it.next()? {
                '\\' => '\\',
                't' => '\t',
                'n' => '\n',
                'r' => '\r',
                _ => return None,
            });
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_odd_paths_and_locations() {
        let c = Catalog {
            entries: vec![
                CatalogEntry {
                    path: RelPath::new("store/mail/a.cz/Žluťoučký/#msgs/0000000a.eml").unwrap(),
                    size: 5,
                    mtime: Mtime {
                        secs: 1_795_000_000,
                        nanos: 123,
                    },
                    crc32: 0xdead_beef,
                    location: Location::Volume(2),
                },
                CatalogEntry {
                    path: RelPath::new("store/x y w").unwrap(),
                    size: 0,
                    mtime: Mtime {
                        secs: -5,
                        nanos: 999_999_999,
                    },
                    crc32: 0,
                    location: Location::Base,
                },
                CatalogEntry {
                    path: RelPath::new("users.cfg").unwrap(),
                    size: 9,
                    mtime: Mtime::default(),
                    crc32: 1,
                    location: Location::Deleted,
                },
            ],
        };
        let text = c.to_text();
        assert!(text.starts_with("# mailvault catalog 1\n"));
        assert!(text.contains("deadbeef\t5\t1795000000.000000123\t2\tstore/mail/a.cz/"));
        assert_eq!(Catalog::parse(text.as_bytes()).unwrap(), c);
        assert_eq!(c.state().count(), 2);
    }

    #[test]
    fn rejects_bad_rows_and_hostile_paths() {
        let e = Catalog::parse(b"# mailvault catalog 1\n00000000\t1\t1.0\t0\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(
            Catalog::parse(b"# mailvault catalog 1\n00000000\t1\t1.0\t0\t../etc/passwd\n").is_err()
        );
        assert!(Catalog::parse(b"nonsense\n").is_err());
    }

    fn rows(n: u64) -> CatalogBound {
        CatalogBound {
            rows: n,
            bytes: u64::MAX,
        }
    }

    #[test]
    fn row_bound_refuses_early() {
        let mut text = String::from("# mailvault catalog 1\n");
        for i in 0..10 {
            text.push_str(&format!("00000000\t1\t1.0\t0\tstore/f{i}\n"));
        }
        assert_eq!(
            Catalog::read(text.as_bytes(), rows(10))
                .unwrap()
                .entries
                .len(),
            10
        );
        let e = Catalog::read(text.as_bytes(), rows(9))
            .unwrap_err()
            .to_string();
        assert!(e.contains("9 rows"), "{e}");
        let long = format!(
            "# mailvault catalog 1\n00000000\t1\t1.0\t0\t{}\n",
            "a".repeat(20_000)
        );
        assert!(Catalog::read(long.as_bytes(), rows(10)).is_err());
        let comments = format!("# mailvault catalog 1\n{}", "#\n".repeat(100));
        assert!(
            Catalog::read(comments.as_bytes(), rows(10)).is_err(),
            "comment lines count"
        );
        assert!(Catalog::read(&b""[..], rows(10)).is_err());
        assert!(Catalog::read(&b"# mailvault catalog 1\r\n"[..], rows(10)).is_ok());
        // Row lengths are bounded by what the archive's names account for.
        let b = CatalogBound::for_archive(10, 10 * "store/fN".len() as u64, 0, 0);
        assert!(Catalog::read(text.as_bytes(), b).is_ok());
        let padded = text.replace("store/f1\n", &format!("store/f1{}\n", "x".repeat(3000)));
        assert!(
            Catalog::read(padded.as_bytes(), b).is_err(),
            "long paths beyond the names' bytes"
        );
    }

    #[test]
    fn mtime_survives_system_time() {
        for m in [
            Mtime {
                secs: 1_795_000_000,
                nanos: 42,
            },
            Mtime {
                secs: -10,
                nanos: 5,
            },
        ] {
            assert_eq!(Mtime::from_system(m.to_system()), m);
        }
    }
}
