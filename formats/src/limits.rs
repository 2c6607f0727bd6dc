//! Size bounds on what a reader accepts from an archive
//! (docs/formats/archive.md, section 9). Every metadata file is small by
//! construction; a reader refuses one larger than its bound before reading
//! it, so a crafted archive cannot make `list`, `verify` or a restore
//! allocate more than a small constant beyond what honest archives need.
//! The catalog is bounded by the archive's own entry count (see
//! [`crate::Catalog::read`]).

/// Largest `.version.txt` accepted (its `scope:` lines included).
pub const MAX_VERSION_BYTES: u64 = 1 << 20;

/// Largest `status.fld` read (a few lines; ACL lines make it grow).
pub const MAX_STATUS_BYTES: u64 = 1 << 20;

/// Largest `index.fld` read: about 64 bytes per item, so four million items.
pub const MAX_INDEX_BYTES: u64 = 256 << 20;

/// Largest message the mail tools read whole (merge, export to mbox):
/// Kerio's own default message size limit is far below this.
pub const MAX_MESSAGE_BYTES: u64 = 1 << 30;

/// Largest header block a header-only reader takes (search): past it the
/// headers are treated as ended.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// Largest `.summary.txt` accepted (its `skipped:` lines included).
pub const MAX_SUMMARY_BYTES: u64 = 16 << 20;

/// Most `skipped:` lines a writer puts into `.summary.txt`; beyond that it
/// writes one `skipped-more: N` line, so the summary stays under
/// [`MAX_SUMMARY_BYTES`].
pub const MAX_SKIPPED_LINES: usize = 50_000;

/// Longest catalog row accepted: a path of 4096 bytes with every byte
/// escaped, plus the other columns.
pub const MAX_CATALOG_ROW_BYTES: usize = 2 * 4096 + 128;

/// Bytes a catalog row takes besides its path: CRC, size, mtime,
/// location, four tabs and the line end, with room to spare.
pub const CATALOG_ROW_OVERHEAD: u64 = 96;

/// How much catalog a reader accepts for an archive: rows, and bytes.
///
/// A catalog describes the archive's own entries (and, for a differential,
/// its base full's), so both bounds follow from what the archive's central
/// directories hold: as many rows as entries, and as many path bytes as
/// their names (twice, for escapes), plus a small overhead per row. Memory
/// for a catalog then grows with the archive itself, never with what the
/// catalog claims (see [`crate::Catalog::read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogBound {
    /// Most rows.
    pub rows: u64,
    /// Most bytes of text.
    pub bytes: u64,
}

impl CatalogBound {
    /// No bound (trusted input, tests).
    pub const UNLIMITED: Self = Self {
        rows: u64::MAX,
        bytes: u64::MAX,
    };

    /// The bound for an archive holding `own_entries` entries whose names
    /// total `own_path_bytes`, over a base full with `base_entries` and
    /// `base_path_bytes` (zero for a full): a differential's catalog has a
    /// row per base file too, unchanged or deleted.
    #[must_use]
    pub const fn for_archive(
        own_entries: u64,
        own_path_bytes: u64,
        base_entries: u64,
        base_path_bytes: u64,
    ) -> Self {
        let rows = own_entries.saturating_add(base_entries.saturating_mul(2));
        let paths = own_path_bytes.saturating_add(base_path_bytes.saturating_mul(2));
        Self {
            rows,
            bytes: paths
                .saturating_mul(2)
                .saturating_add(rows.saturating_mul(CATALOG_ROW_OVERHEAD))
                .saturating_add(256),
        }
    }
}
