//! [`DecryptReader`]: `Read + Seek` over an encrypted file that presents
//! its exact plaintext. Opening reads only the header (checking the key id
//! first, so a wrong key is named as such) and takes the plaintext length
//! from the file length; reads decrypt only the chunks they touch, keeping
//! the current one. An unauthentic chunk is an `io::Error` of kind
//! `InvalidData` wrapping [`Error::Crypt`] (object and chunk number), so
//! callers that read through `Read` (the ZIP reader, `io::copy`) still carry
//! the evidence; [`crypt_error`] gets it back.

use std::io::{self, Read, Seek, SeekFrom};

use super::format::{ChunkCipher, Geometry, HEADER_LEN, Header, TAG_LEN};
use super::key::Key;
use crate::error::{Error, Result};
use crate::storage::ReadSeek;

/// Decrypting, seekable reader.
pub struct DecryptReader {
    inner: Box<dyn ReadSeek>,
    place: String,
    cipher: ChunkCipher,
    geometry: Geometry,
    /// Plaintext position.
    pos: u64,
    /// The decrypted chunk in `buf`, if any.
    cached: Option<u64>,
    buf: Vec<u8>,
    decrypted: u64,
}

impl std::fmt::Debug for DecryptReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptReader")
            .field("place", &self.place)
            .field("geometry", &self.geometry)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl DecryptReader {
    /// Opens the encrypted file `inner`; `place` names it in errors.
    ///
    /// # Errors
    /// [`Error::Crypt`] (not an encrypted mailvault file, unknown version,
    /// impossible length), [`Error::WrongKey`], [`Error::Io`].
    pub fn new(mut inner: Box<dyn ReadSeek>, key: &Key, place: impl Into<String>) -> Result<Self> {
        let place = place.into();
        let file_len = inner
            .seek(SeekFrom::End(0))
            .and_then(|n| inner.seek(SeekFrom::Start(0)).map(|_| n))
            .map_err(Error::io("cannot read", place.clone()))?;
        let mut head = [0u8; HEADER_LEN];
        let got =
            read_full(&mut inner, &mut head).map_err(Error::io("cannot read", place.clone()))?;
        let header = Header::parse(&head[..got], &place)?;
        if header.key_id != key.id() {
            return Err(Error::WrongKey {
                place,
                found: header.key_id.to_string(),
                given: key.id().to_string(),
            });
        }
        let geometry = Geometry::of_file(file_len, header.chunk_size, &place)?;
        Ok(Self {
            inner,
            cipher: ChunkCipher::new(key, &header),
            buf: Vec::with_capacity(header.chunk_size as usize + TAG_LEN),
            place,
            geometry,
            pos: 0,
            cached: None,
            decrypted: 0,
        })
    }

    /// The plaintext length.
    #[must_use]
    pub fn plain_len(&self) -> u64 {
        self.geometry.plain_len
    }

    /// The file's chunk geometry.
    #[must_use]
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// How many chunks were decrypted so far (a chunk read twice, after
    /// another, counts twice).
    #[must_use]
    pub fn chunks_decrypted(&self) -> u64 {
        self.decrypted
    }

    /// Decrypts and checks every chunk (what `verify` of an encrypted
    /// object needs beyond reading it), leaving the position unchanged.
    ///
    /// # Errors
    /// The first unauthentic chunk, as [`Error::Crypt`].
    pub fn check_all(&mut self) -> Result<()> {
        for i in 0..self.geometry.chunks {
            self.load(i).map_err(|e| crypt_error(e, &self.place))?;
        }
        Ok(())
    }

    fn load(&mut self, index: u64) -> io::Result<()> {
        if self.cached == Some(index) {
            return Ok(());
        }
        self.cached = None;
        let g = self.geometry;
        let len = usize::try_from(g.plain_len_of(index) + TAG_LEN as u64)
            .map_err(|_| io::Error::other("chunk too large"))?;
        self.buf.resize(len, 0);
        self.inner.seek(SeekFrom::Start(g.offset_of(index)))?;
        let got = read_full(&mut self.inner, &mut self.buf)?;
        let last = index + 1 == g.chunks;
        if got < len {
            return Err(self.crypt(format!(
                "chunk {index} of {} ends after {got} of its {len} bytes: the file shrank while it was read",
                g.chunks
            )));
        }
        if self.cipher.open(index, last, &mut self.buf).is_err() {
            return Err(self.crypt(format!(
                "chunk {index} of {} (bytes {}..{}) failed authentication: the file was altered, truncated, reordered or extended",
                g.chunks,
                g.offset_of(index),
                g.offset_of(index) + len as u64
            )));
        }
        self.decrypted += 1;
        self.cached = Some(index);
        Ok(())
    }

    fn crypt(&self, message: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Error::Crypt {
                place: self.place.clone(),
                message,
            },
        )
    }
}

/// The [`Error`] an `io::Error` of this module carries, or an
/// [`Error::Io`] naming `place` for any other.
#[must_use]
pub fn crypt_error(e: io::Error, place: &str) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        // Checked just above: the downcast cannot fail.
        return match e.into_inner().map(|i| i.downcast::<Error>()) {
            Some(Ok(b)) => *b,
            _ => Error::Crypt {
                place: place.to_string(),
                message: "unreadable".into(),
            },
        };
    }
    Error::io("cannot read", place.to_string())(e)
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Read for DecryptReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let g = self.geometry;
        if out.is_empty() || self.pos >= g.plain_len {
            return Ok(0);
        }
        let index = self.pos / g.chunk_size;
        self.load(index)?;
        let within = usize::try_from(self.pos - index * g.chunk_size)
            .map_err(|_| io::Error::other("offset too large"))?;
        let n = out.len().min(self.buf.len() - within);
        out[..n].copy_from_slice(&self.buf[within..within + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DecryptReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.geometry.plain_len.checked_add_signed(d),
        };
        let t = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = t;
        Ok(t)
    }
}
