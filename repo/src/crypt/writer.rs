//! [`EncryptWriter`]: a `Write` that encrypts a plaintext stream into the
//! format of `format.rs`, one chunk at a time, in bounded memory. It never
//! seeks its output (so it can feed an upload), and holds back each full
//! chunk until more plaintext arrives, because only the last chunk carries
//! STREAM's last-block flag. A writer dropped without [`EncryptWriter::finish`]
//! leaves a file with no last chunk, which every reader rejects.

use std::io::{self, Write};

use super::format::{ChunkCipher, HEADER_LEN, Header, TAG_LEN};
use super::key::Key;
use crate::error::Result;

/// Encrypts everything written to it into `out`.
pub struct EncryptWriter<W: Write> {
    out: Option<W>,
    cipher: ChunkCipher,
    chunk_size: usize,
    /// Plaintext of the chunk being filled (capacity chunk + tag: sealed in place).
    buf: Vec<u8>,
    /// Index of the chunk in `buf`.
    index: u64,
    plain: u64,
}

impl<W: Write> std::fmt::Debug for EncryptWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptWriter")
            .field("chunk_size", &self.chunk_size)
            .field("index", &self.index)
            .field("plain", &self.plain)
            .finish_non_exhaustive()
    }
}

/// What [`EncryptWriter::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Plaintext bytes.
    pub plain: u64,
    /// Encrypted bytes (header and tags included).
    pub encrypted: u64,
    /// Chunks.
    pub chunks: u64,
}

impl<W: Write> EncryptWriter<W> {
    /// Starts an encrypted file in `out` (writes the header now).
    ///
    /// # Errors
    /// A chunk size out of bounds, the random source, or writing the header.
    pub fn new(mut out: W, key: &Key, chunk_size: u32) -> Result<Self> {
        let header = Header::new(key.id(), chunk_size)?;
        out.write_all(&header.to_bytes())
            .map_err(crate::Error::io("cannot write", "the encrypted output"))?;
        let chunk = chunk_size as usize;
        Ok(Self {
            out: Some(out),
            cipher: ChunkCipher::new(key, &header),
            chunk_size: chunk,
            buf: Vec::with_capacity(chunk + TAG_LEN),
            index: 0,
            plain: 0,
        })
    }

    fn seal_and_write(&mut self, last: bool) -> io::Result<()> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("encrypted output already finished"))?;
        self.cipher
            .seal(self.index, last, &mut self.buf)
            .map_err(|_| io::Error::other("more chunks than the encryption format allows"))?;
        let written = out.write_all(&self.buf);
        self.buf.clear();
        written?;
        self.index += 1;
        Ok(())
    }

    /// The output, to signal it (what was written stays written).
    pub fn get_mut(&mut self) -> Option<&mut W> {
        self.out.as_mut()
    }

    /// Seals the last chunk and returns the output and the counts. The
    /// output is not flushed to stable storage: that is the caller's.
    ///
    /// # Errors
    /// Writing the last chunk.
    pub fn finish(mut self) -> io::Result<(W, Written)> {
        self.seal_and_write(true)?;
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("encrypted output already finished"))?;
        out.flush()?;
        let written = Written {
            plain: self.plain,
            encrypted: HEADER_LEN as u64 + self.plain + self.index * TAG_LEN as u64,
            chunks: self.index,
        };
        Ok((out, written))
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        // A full buffer is sealed only now that more plaintext follows it.
        if self.buf.len() == self.chunk_size {
            self.seal_and_write(false)?;
        }
        let n = data.len().min(self.chunk_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.plain += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are written whole; a partial one cannot be flushed.
        match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}
