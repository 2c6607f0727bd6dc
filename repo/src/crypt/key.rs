//! [`Key`]: the random 256-bit key of an encrypted repository, its key file
//! and its [`KeyId`]. Owns generating, writing (mode 0600, never over an
//! existing file) and loading (refusing files others may read) the key file;
//! the key bytes live in zeroized memory and are never printed: `Debug` and
//! every message show only the id. It does no encryption itself.
//!
//! Key file format (`docs/formats/encryption.md`, section Key file): UTF-8
//! text, exactly `mailvault-key v1\n` followed by the 64 lower-case hex
//! digits of the key and `\n`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::{Error, Result};

/// Key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Key id length in bytes (16 hex digits).
pub const KEY_ID_LEN: usize = 8;
/// First line of a key file.
pub const KEY_FILE_MAGIC: &str = "mailvault-key v1";
/// Environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "MAILVAULT_KEY_FILE";
/// Domain separation of the key id hash: an id is never usable as a key,
/// nor equal to any other hash of the key.
const KEY_ID_DOMAIN: &[u8] = b"mailvault key id v1\0";
/// A key file is a few dozen bytes; anything much larger is not one.
const KEY_FILE_MAX: u64 = 1024;

/// The public fingerprint of a key: the first 8 bytes of
/// SHA-256(`"mailvault key id v1\0"` ‖ key), shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit key, wiped from memory when dropped.
pub struct Key {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: KeyId,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A key of these bytes (tests, and keys read from a file).
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let id = key_id(&bytes);
        Self { bytes, id }
    }

    /// A new random key from the operating system's generator.
    ///
    /// # Errors
    /// [`Error::Key`] when the system has no usable random source.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(|e| Error::Key {
            place: "(new key)".into(),
            message: format!("the system's random number generator failed: {e}"),
        })?;
        let id = key_id(&bytes);
        Ok(Self { bytes, id })
    }

    /// The key's public id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key bytes, for the cipher only.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Writes the key file `path`: mode 0600, created new (an existing file
    /// is never replaced), synced. On failure nothing is left at `path`.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for an existing file; [`Error::Io`].
    pub fn write_new(&self, path: &Path) -> Result<()> {
        let place = format!("`{}`", path.display());
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::AlreadyExists(place.clone())
                } else {
                    Error::io("cannot create key file", place.clone())(e)
                }
            })?;
        let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_MAGIC.len() + 66));
        text.push_str(KEY_FILE_MAGIC);
        text.push('\n');
        for b in self.bytes.iter() {
            text.push(hex_digit(b >> 4));
            text.push(hex_digit(b & 0xf));
        }
        text.push('\n');
        // A umask cannot widen 0600, but a file system might ignore the mode.
        let written = file
            .set_permissions(fs::Permissions::from_mode(0o600))
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(Error::io("cannot write key file", place)(e));
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    /// Loads a key file, refusing one that group or others may read or
    /// write, a malformed one and a missing one.
    ///
    /// # Errors
    /// [`Error::Key`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let place = format!("`{}`", path.display());
        let key_err = |message: String| Error::Key {
            place: place.clone(),
            message,
        };
        let mut file = File::open(path).map_err(|e| {
            key_err(if e.kind() == std::io::ErrorKind::NotFound {
                "does not exist".into()
            } else {
                format!("cannot be opened: {e}")
            })
        })?;
        let meta = file
            .metadata()
            .map_err(|e| key_err(format!("cannot be read: {e}")))?;
        if !meta.is_file() {
            return Err(key_err("is not a regular file".into()));
        }
        if meta.len() > KEY_FILE_MAX {
            return Err(key_err(format!(
                "is {} bytes: not a mailvault key file",
                meta.len()
            )));
        }
        let mut text = Zeroizing::new(Vec::with_capacity(128));
        Read::by_ref(&mut file)
            .take(KEY_FILE_MAX + 1)
            .read_to_end(&mut text)
            .map_err(|e| key_err(format!("cannot be read: {e}")))?;
        let key = parse_key_file(&text).ok_or_else(|| {
            key_err(format!(
                "is not a mailvault key file (expected a line `{KEY_FILE_MAGIC}` then a line of 64 hex digits)"
            ))
        })?;
        // Checked only for a real key file: advising `chmod 600` on
        // whatever file was named by mistake (/etc/passwd) would do harm.
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(key_err(format!(
                "has mode {mode:04o}: group or others may read it; a key file must be private (run `chmod 600 {}`)",
                path.display()
            )));
        }
        Ok(key)
    }

    /// Loads the key file named by `MAILVAULT_KEY_FILE`.
    ///
    /// # Errors
    /// [`Error::Key`] when the variable is unset or empty, or as [`Key::load`].
    pub fn from_env() -> Result<Self> {
        match std::env::var_os(KEY_FILE_ENV) {
            Some(p) if !p.is_empty() => Self::load(Path::new(&p)),
            _ => Err(Error::Key {
                place: KEY_FILE_ENV.into(),
                message: "is not set".into(),
            }),
        }
    }
}

/// A key file and its key's id (what `mailvault key generate` and
/// `mailvault key show` print; never the key).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// The key file.
    pub file: PathBuf,
    /// The key's id.
    pub key_id: String,
}

/// Generates a new key into the new file `path` (mode 0600, never over an
/// existing file).
///
/// # Errors
/// As [`Key::generate`] and [`Key::write_new`].
pub fn generate_key_file(path: &Path) -> Result<KeyInfo> {
    let key = Key::generate()?;
    key.write_new(path)?;
    Ok(KeyInfo {
        file: path.to_path_buf(),
        key_id: key.id().to_string(),
    })
}

/// Loads the key file `path` and names its key's id.
///
/// # Errors
/// As [`Key::load`].
pub fn show_key_file(path: &Path) -> Result<KeyInfo> {
    let key = Key::load(path)?;
    Ok(KeyInfo {
        file: path.to_path_buf(),
        key_id: key.id().to_string(),
    })
}

fn key_id(bytes: &[u8; KEY_LEN]) -> KeyId {
    let mut h = Sha256::new();
    h.update(KEY_ID_DOMAIN);
    h.update(bytes);
    let digest = h.finalize();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    KeyId(id)
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0xf)])
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `mailvault-key v1\n<64 hex>\n` (the final newline optional).
fn parse_key_file(text: &[u8]) -> Option<Key> {
    let rest = text.strip_prefix(KEY_FILE_MAGIC.as_bytes())?;
    let rest = rest.strip_prefix(b"\n")?;
    let hex = rest.strip_suffix(b"\n").unwrap_or(rest);
    if hex.len() != 2 * KEY_LEN {
        return None;
    }
    let mut bytes = [0u8; KEY_LEN];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(h), Some(l)) => bytes[i] = (h << 4) | l,
            _ => {
                bytes.zeroize();
                return None;
            }
        }
    }
    let key = Key::from_bytes(bytes);
    bytes.zeroize();
    Some(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_key_file_round_trips_with_mode_0600_and_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k");
        let k = Key::generate().unwrap();
        k.write_new(&p).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("mailvault-key v1\n") && text.len() == 17 + 65);
        assert_eq!(Key::load(&p).unwrap().id(), k.id());
        let other = Key::generate().unwrap();
        assert!(matches!(other.write_new(&p), Err(Error::AlreadyExists(_))));
        assert_eq!(fs::read_to_string(&p).unwrap(), text, "unchanged");
    }

    #[test]
    fn loading_refuses_open_malformed_and_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k");
        Key::generate().unwrap().write_new(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let e = Key::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("0640") && e.contains("chmod 600") && e.contains("`"),
            "{e}"
        );
        // Not a key file at all: no chmod advice for it.
        let other = tmp.path().join("passwd");
        fs::write(&other, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).unwrap();
        let e = Key::load(&other).unwrap_err().to_string();
        assert!(
            e.contains("not a mailvault key file") && !e.contains("chmod"),
            "{e}"
        );

        for bad in [
            "".to_string(),
            "mailvault-key v1\n".to_string(),
            format!("mailvault-key v1\n{}\n", "zz".repeat(32)),
            format!("mailvault-key v2\n{}\n", "00".repeat(32)),
            format!("mailvault-key v1\n{}\n", "00".repeat(31)),
            format!("mailvault-key v1\n{}\n\n", "00".repeat(32)),
        ] {
            let q = tmp.path().join("bad");
            let _ = fs::remove_file(&q);
            fs::write(&q, &bad).unwrap();
            fs::set_permissions(&q, fs::Permissions::from_mode(0o600)).unwrap();
            let e = Key::load(&q).unwrap_err();
            assert!(matches!(e, Error::Key { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains("not a mailvault key file"), "{e}");
        }
        let e = Key::load(&tmp.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist") && e.contains("missing"), "{e}");
    }

    #[test]
    fn the_id_is_a_domain_separated_hash_and_debug_shows_only_it() {
        let k = Key::from_bytes([7u8; KEY_LEN]);
        let id = k.id().to_string();
        assert_eq!(id.len(), 16);
        let plain: String = Sha256::digest([7u8; KEY_LEN])[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(id, plain, "the id is not the bare hash of the key");
        let dbg = format!("{k:?}");
        assert!(dbg.contains(&id) && !dbg.contains("0707"), "{dbg}");
        assert_ne!(Key::from_bytes([8u8; KEY_LEN]).id(), k.id());
    }
}
