//! Authenticated encryption of whole archive files (issue 7): AES-256-GCM
//! in the STREAM construction, with a random 256-bit key kept in a key file.
//! Owns the key file ([`mod@key`]), the file format ([`mod@format`],
//! `docs/formats/encryption.md`), streaming encryption ([`writer`]),
//! random-access decryption ([`reader`]), the encrypting [`Storage`]
//! wrapper ([`mod@storage`]) and the file-to-file commands ([`mod@file`]). It
//! implements no cryptographic primitive itself: AES-GCM, STREAM and
//! SHA-256 are RustCrypto's.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mailvault_repo::crypt::{Encrypted, Key};
//! use mailvault_repo::storage::{LocalDir, Storage};
//! let key = Key::load("/root/mailvault.key".as_ref())?;
//! let repo = Encrypted::new(Arc::new(LocalDir::new("/mnt/backup")), key, "/var/tmp");
//! for name in repo.list()? {
//!     println!("{name} {}", repo.size(&name)?);
//! }
//! # Ok::<(), mailvault_repo::Error>(())
//! ```
//!
//! [`Storage`]: crate::storage::Storage

pub mod file;
pub mod format;
pub mod key;
pub mod reader;
pub mod storage;
pub mod writer;

#[cfg(test)]
mod tests;

pub use file::{CryptSummary, decrypt_file, encrypt_file};
pub use key::{Key, KeyId, KeyInfo, generate_key_file, show_key_file};
pub use reader::DecryptReader;
pub use storage::Encrypted;
pub use writer::EncryptWriter;
