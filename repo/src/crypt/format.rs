//! The encrypted file format, in code: the 32-byte [`Header`], the chunk
//! geometry (how the plaintext length follows from the file length) and
//! [`ChunkCipher`], which seals and opens one chunk with AES-256-GCM in the
//! STREAM construction (`aead::stream::StreamBE32`), the header being the
//! associated data of every chunk. `docs/formats/encryption.md` is the
//! normative description; this file must agree with it byte for byte. It
//! does no I/O and holds no policy about files or storages.

use aead::stream::{NewStream as _, StreamBE32, StreamPrimitive as _};
use aes_gcm::{Aes256Gcm, KeyInit as _};

use super::key::{KEY_ID_LEN, Key, KeyId};
use crate::error::{Error, Result};

/// The first 8 bytes of every encrypted file: `MVENC`, a NUL (not text),
/// CR LF (a transfer that rewrites line ends damages the magic, PNG-style).
pub const MAGIC: [u8; 8] = *b"MVENC\0\r\n";
/// Format version written and the only one read.
pub const FORMAT_VERSION: u8 = 1;
/// Algorithm 1: AES-256-GCM, STREAM with a 32-bit big-endian counter and a
/// last-block byte in the nonce (`StreamBE32`).
pub const ALG_AES256GCM_STREAM_BE32: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 32;
/// Bytes of the random nonce prefix (12-byte GCM nonce less STREAM's 5).
pub const NONCE_PREFIX_LEN: usize = 7;
/// GCM tag length, appended to every chunk.
pub const TAG_LEN: usize = 16;
/// Smallest chunk size a header may declare.
pub const MIN_CHUNK: u32 = 4 * 1024;
/// Largest chunk size a header may declare (bounds a reader's memory).
pub const MAX_CHUNK: u32 = 16 * 1024 * 1024;
/// Chunk size written by default (see docs/performance.md, Encryption).
pub const DEFAULT_CHUNK: u32 = 64 * 1024;

/// The fixed header of an encrypted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Plaintext bytes per chunk (every chunk but the last is full).
    pub chunk_size: u32,
    /// Id of the key the file is encrypted with.
    pub key_id: KeyId,
    /// Random per-file nonce prefix.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl Header {
    /// A header for a new file: a fresh random nonce prefix.
    ///
    /// # Errors
    /// [`Error::Crypt`] for a chunk size out of bounds or a failing random
    /// source.
    pub fn new(key_id: KeyId, chunk_size: u32) -> Result<Self> {
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(Error::Request(format!(
                "chunk size {chunk_size} is outside {MIN_CHUNK}..={MAX_CHUNK}"
            )));
        }
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        getrandom::fill(&mut nonce_prefix).map_err(|e| Error::Crypt {
            place: "(new encrypted file)".into(),
            message: format!("the system's random number generator failed: {e}"),
        })?;
        Ok(Self {
            chunk_size,
            key_id,
            nonce_prefix,
        })
    }

    /// The header's bytes (also the associated data of every chunk).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8] = FORMAT_VERSION;
        b[9] = ALG_AES256GCM_STREAM_BE32;
        // 10..12 reserved, zero.
        b[12..16].copy_from_slice(&self.chunk_size.to_be_bytes());
        b[16..24].copy_from_slice(&self.key_id.0);
        b[24..31].copy_from_slice(&self.nonce_prefix);
        // 31 reserved, zero.
        b
    }

    /// Parses a header; `place` names the file in errors. Only the fields
    /// are checked here: the chunks' tags authenticate all of it.
    ///
    /// # Errors
    /// [`Error::Crypt`]: not an encrypted mailvault file, another version
    /// or algorithm, reserved bytes set, chunk size out of bounds.
    pub fn parse(b: &[u8], place: &str) -> Result<Self> {
        let crypt = |message: String| Error::Crypt {
            place: place.to_string(),
            message,
        };
        if b.len() < HEADER_LEN || b[0..8] != MAGIC {
            return Err(crypt(
                "is not an encrypted mailvault file (no `MVENC` header), although a key was given"
                    .into(),
            ));
        }
        if b[8] != FORMAT_VERSION {
            return Err(crypt(format!(
                "encryption format version {} is not supported (this mailvault reads version {FORMAT_VERSION})",
                b[8]
            )));
        }
        if b[9] != ALG_AES256GCM_STREAM_BE32 {
            return Err(crypt(format!(
                "encryption algorithm {} is not supported (this mailvault knows 1, AES-256-GCM STREAM)",
                b[9]
            )));
        }
        if b[10] != 0 || b[11] != 0 || b[31] != 0 {
            return Err(crypt("the header's reserved bytes are not zero".into()));
        }
        let chunk_size = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(crypt(format!(
                "the header's chunk size {chunk_size} is outside {MIN_CHUNK}..={MAX_CHUNK}"
            )));
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&b[16..24]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&b[24..31]);
        Ok(Self {
            chunk_size,
            key_id: KeyId(key_id),
            nonce_prefix,
        })
    }
}

/// Where the chunks of a file of known length are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Plaintext bytes per full chunk.
    pub chunk_size: u64,
    /// Number of chunks (at least 1: empty plaintext is one empty chunk).
    pub chunks: u64,
    /// Plaintext length.
    pub plain_len: u64,
}

impl Geometry {
    /// Ciphertext bytes of a full chunk.
    #[must_use]
    pub fn stride(&self) -> u64 {
        self.chunk_size + TAG_LEN as u64
    }

    /// The geometry of `plain_len` bytes in chunks of `chunk_size`.
    #[must_use]
    pub fn of_plain(plain_len: u64, chunk_size: u32) -> Self {
        let chunk_size = u64::from(chunk_size);
        Self {
            chunk_size,
            chunks: plain_len.div_ceil(chunk_size).max(1),
            plain_len,
        }
    }

    /// Total file length.
    #[must_use]
    pub fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + self.plain_len + self.chunks * TAG_LEN as u64
    }

    /// The geometry of a file of `file_len` bytes: every chunk full but the
    /// last, which holds 1..=chunk bytes (0 only when it is the only one).
    ///
    /// # Errors
    /// [`Error::Crypt`] when no plaintext length gives this file length
    /// (truncated or extended), or the chunk count overflows STREAM's
    /// 32-bit counter.
    pub fn of_file(file_len: u64, chunk_size: u32, place: &str) -> Result<Self> {
        let chunk = u64::from(chunk_size);
        let stride = chunk + TAG_LEN as u64;
        let bad = |why: &str| Error::Crypt {
            place: place.to_string(),
            message: format!(
                "length {file_len} is not that of a whole encrypted file ({why}): it was truncated or had bytes appended"
            ),
        };
        let body = file_len
            .checked_sub(HEADER_LEN as u64)
            .ok_or_else(|| bad("shorter than the header"))?;
        if body < TAG_LEN as u64 {
            return Err(bad("no final chunk"));
        }
        let chunks = body.div_ceil(stride);
        let last = body - (chunks - 1) * stride;
        if last < TAG_LEN as u64 || (chunks > 1 && last == TAG_LEN as u64) {
            return Err(bad("the last chunk is shorter than its tag or empty"));
        }
        if chunks > u64::from(u32::MAX) + 1 {
            return Err(bad("more chunks than the format allows"));
        }
        Ok(Self {
            chunk_size: chunk,
            chunks,
            plain_len: body - chunks * TAG_LEN as u64,
        })
    }

    /// Plaintext bytes of chunk `i`.
    #[must_use]
    pub fn plain_len_of(&self, i: u64) -> u64 {
        if i + 1 == self.chunks {
            self.plain_len - i * self.chunk_size
        } else {
            self.chunk_size
        }
    }

    /// File offset of chunk `i`.
    #[must_use]
    pub fn offset_of(&self, i: u64) -> u64 {
        HEADER_LEN as u64 + i * self.stride()
    }
}

/// Seals and opens chunks of one file: the key, the file's nonce prefix and
/// its header as associated data.
pub struct ChunkCipher {
    stream: StreamBE32<Aes256Gcm>,
    aad: [u8; HEADER_LEN],
}

/// A chunk that did not authenticate (or an index out of STREAM's range).
#[derive(Debug, Clone, Copy)]
pub struct ChunkError;

impl ChunkCipher {
    /// The cipher for a file with this header.
    #[must_use]
    pub fn new(key: &Key, header: &Header) -> Self {
        let aead = Aes256Gcm::new(key.bytes().into());
        let stream = StreamBE32::from_aead(aead, (&header.nonce_prefix).into());
        Self {
            stream,
            aad: header.to_bytes(),
        }
    }

    /// Encrypts `buf` (plaintext) in place and appends the tag.
    ///
    /// # Errors
    /// Chunk index beyond the 32-bit counter.
    pub fn seal(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), ChunkError> {
        let pos = u32::try_from(index).map_err(|_| ChunkError)?;
        self.stream
            .encrypt_in_place(pos, last, &self.aad, buf)
            .map_err(|_| ChunkError)
    }

    /// Checks and decrypts `buf` (ciphertext and tag) in place, leaving the
    /// plaintext.
    ///
    /// # Errors
    /// The chunk is not authentic at this position with this last flag.
    pub fn open(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), ChunkError> {
        let pos = u32::try_from(index).map_err(|_| ChunkError)?;
        self.stream
            .decrypt_in_place(pos, last, &self.aad, buf)
            .map_err(|_| ChunkError)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_plaintext_length_follows_from_the_file_length_and_back() {
        for chunk in [MIN_CHUNK, 65_536] {
            let c = u64::from(chunk);
            for plain in [0, 1, c - 1, c, c + 1, 3 * c, 3 * c + 7, 1 << 30] {
                let g = Geometry::of_plain(plain, chunk);
                let back = Geometry::of_file(g.file_len(), chunk, "x").unwrap();
                assert_eq!(back, g, "plain {plain} chunk {chunk}");
                // No other length nearby is valid but for other plaintexts.
                for d in 1..=TAG_LEN as u64 {
                    if let Ok(o) = Geometry::of_file(g.file_len() + d, chunk, "x") {
                        assert_eq!(o.file_len(), g.file_len() + d);
                        assert_ne!(o.plain_len, plain);
                    }
                }
            }
        }
        assert!(Geometry::of_file(HEADER_LEN as u64 + 15, MIN_CHUNK, "x").is_err());
        let stride = u64::from(MIN_CHUNK) + TAG_LEN as u64;
        // A full chunk followed by an empty last chunk is never written.
        assert!(Geometry::of_file(HEADER_LEN as u64 + stride + 16, MIN_CHUNK, "x").is_err());
    }

    #[test]
    fn header_round_trips_and_refuses_strangers() {
        let k = Key::from_bytes([1; 32]);
        let h = Header::new(k.id(), DEFAULT_CHUNK).unwrap();
        let b = h.to_bytes();
        assert_eq!(Header::parse(&b, "x").unwrap(), h);
        let mut v = b;
        v[8] = 2;
        assert!(
            Header::parse(&v, "x")
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        let mut v = b;
        v[12..16].copy_from_slice(&(MAX_CHUNK + 1).to_be_bytes());
        assert!(Header::parse(&v, "x").is_err());
        assert!(
            Header::parse(b"PK\x03\x04", "x")
                .unwrap_err()
                .to_string()
                .contains("not an encrypted")
        );
        assert!(Header::new(k.id(), 100).is_err());
    }
}
