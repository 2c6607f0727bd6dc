//! Size bounds on what a reader accepts from an archive
//! (docs/formats/archive.md, section 9). Every metadata file is small by
//! construction; a reader refuses one larger than its bound before reading
//! it, so a crafted archive cannot make `list`, `verify` or a restore
//! allocate more than a small constant beyond what honest archives need.
//! The catalog is bounded by the archive's own entry count (see
//! [`crate::Catalog::read`]).

/// Largest `.version.txt` accepted (its `scope:` lines included).
pub const MAX_VERSION_BYTES: u64 = 1 << 20;

/// Largest `.summary.txt` accepted (its `skipped:` lines included).
pub const MAX_SUMMARY_BYTES: u64 = 16 << 20;

/// Most `skipped:` lines a writer puts into `.summary.txt`; beyond that it
/// writes one `skipped-more: N` line, so the summary stays under
/// [`MAX_SUMMARY_BYTES`].
pub const MAX_SKIPPED_LINES: usize = 50_000;

/// Longest catalog row accepted: a path of 4096 bytes with every byte
/// escaped, plus the other columns.
pub const MAX_CATALOG_ROW_BYTES: usize = 2 * 4096 + 128;

/// Largest catalog text accepted for a row bound: every row (and the two
/// header lines) at the longest a row may be.
#[must_use]
pub const fn catalog_byte_bound(rows: u64) -> u64 {
    rows.saturating_add(2)
        .saturating_mul(MAX_CATALOG_ROW_BYTES as u64)
}

/// Rows a catalog may have besides the entries it describes: none. A full's
/// catalog has one row per stored file; a differential's adds one row per
/// file of its base (unchanged or deleted), so its bound is its own entries
/// plus twice its base's (see [`crate::Catalog::read`]).
pub const fn catalog_row_bound(own_entries: u64, base_entries: u64) -> u64 {
    own_entries.saturating_add(base_entries.saturating_mul(2))
}
