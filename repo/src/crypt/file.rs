//! File-to-file encryption and decryption (`mailvault encrypt` /
//! `mailvault decrypt`): the output is written to a temporary beside it,
//! fsynced and renamed into place without replacing anything, so on any
//! error (wrong key, an altered chunk, a full disk) nothing is left under
//! the output name. Decryption authenticates every chunk before the output
//! appears.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::format::{DEFAULT_CHUNK, MAGIC};
use super::key::Key;
use super::reader::{DecryptReader, crypt_error};
use super::writer::EncryptWriter;
use crate::error::{Error, Result};

/// What an encrypt or decrypt run did.
#[derive(Debug, Clone, Serialize)]
pub struct CryptSummary {
    /// The input file.
    pub input: PathBuf,
    /// The output file.
    pub output: PathBuf,
    /// Id of the key used.
    pub key_id: String,
    /// Plaintext bytes.
    pub plain_bytes: u64,
    /// Encrypted bytes (header and tags included).
    pub encrypted_bytes: u64,
    /// Chunks.
    pub chunks: u64,
}

fn place(p: &Path) -> String {
    format!("`{}`", p.display())
}

/// Writes `output` through `fill` on a temporary beside it; renames it into
/// place (never replacing) only when `fill` and the fsync succeeded.
fn write_beside<T>(output: &Path, fill: impl FnOnce(&mut File, &str) -> Result<T>) -> Result<T> {
    if fs::symlink_metadata(output).is_ok() {
        return Err(Error::AlreadyExists(place(output)));
    }
    let name = output
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Request(format!("{} is not a file name", place(output))))?;
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        "{}{name}.{}",
        crate::storage::TEMP_PREFIX,
        std::process::id()
    ));
    let temp_place = place(&temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(Error::io("cannot create", temp_place.clone()))?;
    let result = fill(&mut file, &temp_place).and_then(|v| {
        file.sync_all()
            .map_err(Error::io("cannot sync", temp_place.clone()))?;
        drop(file);
        crate::storage::local::rename_noreplace(&temp, output)?;
        let _ = File::open(dir).and_then(|d| d.sync_all());
        Ok(v)
    });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Encrypts `input` into the new file `output` with `key`.
///
/// # Errors
/// [`Error::AlreadyExists`] for an existing output, [`Error::Request`] for
/// an input that is already encrypted, [`Error::Io`] naming the file.
pub fn encrypt_file(input: &Path, output: &Path, key: &Key) -> Result<CryptSummary> {
    let in_place = place(input);
    let mut src = File::open(input).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::NotFound(in_place.clone())
        } else {
            Error::io("cannot open", in_place.clone())(e)
        }
    })?;
    let mut head = Vec::new();
    (&mut src)
        .take(MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(Error::io("cannot read", in_place.clone()))?;
    if head == MAGIC {
        return Err(Error::Request(format!(
            "{in_place} is already encrypted (it starts with the `MVENC` header); nothing was written"
        )));
    }
    let written = write_beside(output, |out, temp_place| {
        let mut enc = EncryptWriter::new(&mut *out, key, DEFAULT_CHUNK)?;
        enc.write_all(&head)
            .map_err(Error::io("cannot write", temp_place.to_string()))?;
        copy(&mut src, &mut enc, &in_place, temp_place)?;
        let (_, w) = enc
            .finish()
            .map_err(Error::io("cannot write", temp_place.to_string()))?;
        Ok(w)
    })?;
    Ok(CryptSummary {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        key_id: key.id().to_string(),
        plain_bytes: written.plain,
        encrypted_bytes: written.encrypted,
        chunks: written.chunks,
    })
}

/// Decrypts `input` into the new file `output` with `key`, checking every
/// chunk; the output appears only when all of them were authentic.
///
/// # Errors
/// [`Error::WrongKey`], [`Error::Crypt`] (not encrypted, altered,
/// truncated, reordered, extended: naming the chunk), [`Error::AlreadyExists`],
/// [`Error::Io`].
pub fn decrypt_file(input: &Path, output: &Path, key: &Key) -> Result<CryptSummary> {
    let in_place = place(input);
    let src = File::open(input).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::NotFound(in_place.clone())
        } else {
            Error::io("cannot open", in_place.clone())(e)
        }
    })?;
    let encrypted_bytes = src
        .metadata()
        .map_err(Error::io("cannot read", in_place.clone()))?
        .len();
    let mut reader = DecryptReader::new(Box::new(src), key, in_place.clone())?;
    if fs::symlink_metadata(output).is_ok() {
        return Err(Error::AlreadyExists(place(output)));
    }
    let geometry = reader.geometry();
    write_beside(output, |out, temp_place| {
        copy(&mut reader, out, &in_place, temp_place)
    })?;
    Ok(CryptSummary {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        key_id: key.id().to_string(),
        plain_bytes: geometry.plain_len,
        encrypted_bytes,
        chunks: geometry.chunks,
    })
}

fn copy(src: &mut dyn Read, dst: &mut dyn Write, src_place: &str, dst_place: &str) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(crypt_error(e, src_place)),
        };
        dst.write_all(&buf[..n])
            .map_err(Error::io("cannot write", dst_place.to_string()))?;
        total += n as u64;
    }
}
