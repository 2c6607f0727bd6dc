//! `mailvault-formats`: the Kerio-style backup archive format in code.
//!
//! This crate owns parsing and writing of every file type mailvault reads or
//! writes: archive names ([`ArchiveName`]), `.version.txt` ([`VersionInfo`]),
//! `.summary.txt` ([`Summary`]), the catalog ([`Catalog`]), the `@backup/`
//! layout ([`layout`]), Kerio's XML configuration ([`config`]) and the store's
//! `index.fld` / `status.fld` ([`store`]). It does no I/O policy and no
//! networking: callers hand it bytes or a writer. `docs/formats/archive.md` is
//! the normative description; each type points at its section.
//!
//! ```
//! use mailvault_formats::{ArchiveKind, ArchiveName};
//! let name: ArchiveName = "D20261124T010000Z.1.zip".parse().unwrap();
//! assert_eq!(name.kind, ArchiveKind::Differential);
//! assert_eq!(name.volume, 1);
//! assert_eq!(name.first_volume().to_string(), "D20261124T010000Z.zip");
//! ```

pub mod catalog;
pub mod config;
mod error;
pub mod keyvalue;
pub mod layout;
pub mod limits;
pub mod mbox;
pub mod name;
pub mod size;
pub mod store;
pub mod summary;
pub mod version;

pub use catalog::{Catalog, CatalogEntry, Location, Mtime};
pub use error::{Error, Result};
pub use layout::RelPath;
pub use name::{ArchiveKind, ArchiveName};
pub use size::ByteSize;
pub use summary::{SkipReason, Skipped, Summary};
pub use version::VersionInfo;

/// Version of the archive format described in `docs/formats/archive.md`.
/// Bumped on any change a reader must know about.
pub const FORMAT_VERSION: u32 = 1;
