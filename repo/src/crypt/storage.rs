//! [`Encrypted`]: encryption as a [`Storage`] wrapper over any other
//! storage. Object `X` is stored as `X.enc` in the inner storage, in the
//! format of `format.rs`; names are mapped both ways (temporaries too:
//! inner `.mailvault-tmp-X.enc` lists as `.mailvault-tmp-X`), and inner
//! names without `.enc` are listed as they are (a plain archive in an
//! encrypted repository), but reading one is an [`Error::Crypt`], so verify
//! flags it. Writes spool the plaintext to an unlinked temporary file in a
//! local spool directory (the ZIP writer seeks back into what it wrote) and
//! encrypt it sequentially into the inner object on `finish`. Locks,
//! removal, sync and the repository root are the inner storage's.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::{DEFAULT_CHUNK, Geometry, HEADER_LEN, Header, MAX_CHUNK, MIN_CHUNK, TAG_LEN};
use super::key::Key;
use super::reader::DecryptReader;
use super::writer::EncryptWriter;
use crate::error::{Error, Result};
use crate::storage::{Lock, LockMode, Pending, ReadSeek, Storage};

/// Suffix of encrypted objects in the inner storage.
pub const SUFFIX: &str = ".enc";

static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

/// An encrypting storage over `inner`.
pub struct Encrypted {
    inner: Arc<dyn Storage>,
    key: Arc<Key>,
    spool: PathBuf,
    chunk_size: u32,
}

impl std::fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("inner", &self.inner)
            .field("key", &self.key)
            .field("spool", &self.spool)
            .field("chunk_size", &self.chunk_size)
            .finish()
    }
}

impl Encrypted {
    /// Encrypts objects of `inner` with `key`; plaintext being written is
    /// spooled in `spool` (created when needed; a local directory with room
    /// for one volume).
    pub fn new(inner: Arc<dyn Storage>, key: Key, spool: impl Into<PathBuf>) -> Self {
        Self {
            inner,
            key: Arc::new(key),
            spool: spool.into(),
            chunk_size: DEFAULT_CHUNK,
        }
    }

    /// Refuses a repository holding archives encrypted with another key:
    /// read with this key they would all look damaged, and a backup would
    /// pick no base and rotation would delete them (each archive's header
    /// names its key; only the first 32 bytes of each are read).
    ///
    /// # Errors
    /// [`Error::WrongKey`] naming the archive and both key ids; I/O.
    pub fn check_key(&self) -> Result<()> {
        let names = match self.inner.list() {
            Ok(n) => n,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for n in names
            .iter()
            .filter(|n| !n.starts_with('.') && n.ends_with(".zip.enc"))
        {
            let place = self.inner.describe(n);
            // A plain archive under the same name would be hidden behind the
            // encrypted one: something else put it there; say so.
            if let Some(plain) = n.strip_suffix(SUFFIX)
                && names.iter().any(|m| m == plain)
            {
                return Err(Error::Request(format!(
                    "{} is a plain archive beside the encrypted {place} of the same name: it was not written with this key; move it out of the repository",
                    self.inner.describe(plain)
                )));
            }
            let mut head = Vec::with_capacity(HEADER_LEN);
            match self.inner.open(n) {
                Ok(mut r) => {
                    r.by_ref()
                        .take(HEADER_LEN as u64)
                        .read_to_end(&mut head)
                        .map_err(Error::io("cannot read", place.clone()))?;
                }
                // Removed meanwhile (rotation by another run).
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
            // A damaged header is the reader's to report, archive by archive.
            let Ok(header) = Header::parse(&head, &place) else {
                continue;
            };
            if header.key_id != self.key.id() {
                return Err(Error::WrongKey {
                    place,
                    found: header.key_id.to_string(),
                    given: self.key.id().to_string(),
                });
            }
        }
        Ok(())
    }

    /// The same, writing chunks of `chunk_size` plaintext bytes.
    ///
    /// # Errors
    /// [`Error::Request`] for a size outside the format's bounds.
    pub fn with_chunk_size(mut self, chunk_size: u32) -> Result<Self> {
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(Error::Request(format!(
                "chunk size {chunk_size} is outside {MIN_CHUNK}..={MAX_CHUNK}"
            )));
        }
        self.chunk_size = chunk_size;
        Ok(self)
    }

    /// The inner storage.
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    /// The key's id.
    #[must_use]
    pub fn key_id(&self) -> super::KeyId {
        self.key.id()
    }

    fn inner_name(name: &str) -> String {
        format!("{name}{SUFFIX}")
    }

    /// `name` has no `.enc` object: a plain object of that name is named as
    /// such, anything else is the inner storage's error.
    fn missing_or_plain(&self, name: &str, e: Error) -> Error {
        if matches!(e, Error::NotFound(_)) && self.inner.size(name).is_ok() {
            return Error::Crypt {
                place: self.inner.describe(name),
                message: format!(
                    "is not encrypted (there is no `{name}{SUFFIX}`), although a key was given: a plain archive in an encrypted repository"
                ),
            };
        }
        e
    }

    /// Opens object `name` as a typed reader (its geometry, chunk counts).
    ///
    /// # Errors
    /// As [`Storage::open`].
    pub fn open_reader(&self, name: &str) -> Result<DecryptReader> {
        let inner_name = Self::inner_name(name);
        let r = self
            .inner
            .open(&inner_name)
            .map_err(|e| self.missing_or_plain(name, e))?;
        DecryptReader::new(r, &self.key, self.inner.describe(&inner_name))
    }
}

impl Storage for Encrypted {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn describe(&self, name: &str) -> String {
        self.inner.describe(&Self::inner_name(name))
    }

    fn exists(&self) -> Result<bool> {
        self.inner.exists()
    }

    fn create_root(&self) -> Result<bool> {
        self.inner.create_root()
    }

    fn remove_root_if_empty(&self) -> Result<()> {
        self.inner.remove_root_if_empty()
    }

    fn list(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .inner
            .list()?
            .into_iter()
            .map(|n| match n.strip_suffix(SUFFIX) {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => n,
            })
            .collect();
        // `X` and `X.enc` both present: one object `X` (reading it reads `X.enc`).
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn size(&self, name: &str) -> Result<u64> {
        let inner_name = Self::inner_name(name);
        let place = self.inner.describe(&inner_name);
        let mut r = self
            .inner
            .open(&inner_name)
            .map_err(|e| self.missing_or_plain(name, e))?;
        let mut head = Vec::with_capacity(HEADER_LEN);
        r.by_ref()
            .take(HEADER_LEN as u64)
            .read_to_end(&mut head)
            .map_err(Error::io("cannot read", place.clone()))?;
        let header = Header::parse(&head, &place)?;
        let len = self.inner.size(&inner_name)?;
        Ok(Geometry::of_file(len, header.chunk_size, &place)?.plain_len)
    }

    fn open(&self, name: &str) -> Result<Box<dyn ReadSeek>> {
        Ok(Box::new(self.open_reader(name)?))
    }

    fn create(&self, name: &str) -> Result<Box<dyn Pending>> {
        let spool_place = format!("`{}`", self.spool.display());
        fs::create_dir_all(&self.spool).map_err(Error::io(
            "cannot create spool directory",
            spool_place.clone(),
        ))?;
        let path = self.spool.join(format!(
            ".mailvault-spool-{}-{}",
            std::process::id(),
            SPOOL_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(Error::io(
                "cannot create spool file in",
                spool_place.clone(),
            ))?;
        // Unlinked at once: nothing is left behind, whatever happens to this run.
        fs::remove_file(&path).map_err(Error::io(
            "cannot remove spool file in",
            spool_place.clone(),
        ))?;
        let inner = self.inner.create(&Self::inner_name(name))?;
        Ok(Box::new(EncryptedPending {
            name: name.to_string(),
            spool: Some(BufWriter::with_capacity(1 << 20, file)),
            spool_place,
            target: inner.name().to_string(),
            inner: Some(inner),
            enc: None,
            consumed: 0,
            key: Arc::clone(&self.key),
            chunk_size: self.chunk_size,
            finished: false,
        }))
    }

    fn remove(&self, name: &str) -> Result<()> {
        match self.inner.remove(&Self::inner_name(name)) {
            // A plain object listed under this name (see `list`) is removed as such.
            Err(Error::NotFound(_)) if self.inner.size(name).is_ok() => self.inner.remove(name),
            other => other,
        }
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    fn lock(&self, mode: LockMode, holder: &str) -> Result<Lock> {
        self.inner.lock(mode, holder)
    }

    fn unlock(&self) -> Result<Vec<String>> {
        self.inner.unlock()
    }
}

/// An object being written: plaintext in the spool. What the writer has
/// settled is encrypted into the inner object as it comes (so a remote
/// target can send it meanwhile); the rest at `finish`.
struct EncryptedPending {
    name: String,
    spool: Option<BufWriter<File>>,
    spool_place: String,
    /// The inner object's name (for messages).
    target: String,
    /// The inner object until encryption starts, then inside `enc`.
    inner: Option<Box<dyn Pending>>,
    enc: Option<EncryptWriter<Box<dyn Pending>>>,
    /// Plaintext bytes already given to `enc`.
    consumed: u64,
    key: Arc<Key>,
    chunk_size: u32,
    finished: bool,
}

impl EncryptedPending {
    fn spool(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.spool
            .as_mut()
            .ok_or_else(|| io::Error::other("object already finished"))
    }

    /// Encrypts spooled plaintext `[consumed, upto)` into the inner object.
    fn encrypt_upto(&mut self, upto: u64) -> Result<()> {
        use std::os::unix::fs::FileExt as _;
        let place = self.spool_place.clone();
        let target = format!("`{}` (temporary)", self.target);
        if self.enc.is_none() {
            let inner = self
                .inner
                .take()
                .ok_or_else(|| Error::Request(format!("{target}: already finished")))?;
            self.enc = Some(EncryptWriter::new(inner, &self.key, self.chunk_size)?);
        }
        let spool = self
            .spool
            .as_mut()
            .ok_or_else(|| Error::Request(format!("{target}: already finished")))?;
        spool
            .flush()
            .map_err(Error::io("cannot write spool file in", place.clone()))?;
        let Some(enc) = self.enc.as_mut() else {
            return Ok(());
        };
        let mut buf = vec![0u8; 1 << 20];
        while self.consumed < upto {
            let want = usize::try_from((upto - self.consumed).min(buf.len() as u64)).unwrap_or(0);
            let n = match spool.get_ref().read_at(&mut buf[..want], self.consumed) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("cannot read spool file in", place)(e)),
            };
            enc.write_all(&buf[..n])
                .map_err(Error::io("cannot write", target.clone()))?;
            self.consumed += n as u64;
        }
        Ok(())
    }
}

/// A local spool failure named as such (it is not the target's disk).
fn spool_err(place: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("plaintext spool file in {place} (--spool-dir, MAILVAULT_SPOOL_DIR): {e}"),
    )
}

impl Write for EncryptedPending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.spool()?.write(buf);
        r.map_err(|e| spool_err(&self.spool_place, e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.spool()?.flush();
        r.map_err(|e| spool_err(&self.spool_place, e))
    }
}

impl Seek for EncryptedPending {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let r = self.spool()?.seek(pos);
        r.map_err(|e| spool_err(&self.spool_place, e))
    }
}

impl Pending for EncryptedPending {
    fn name(&self) -> &str {
        &self.name
    }

    fn settled(&mut self, upto: u64) {
        // Encrypting in steps of a few MiB keeps the writes large.
        if self.finished || upto < self.consumed + (4 << 20) {
            return;
        }
        if self.encrypt_upto(upto).is_err() {
            // `finish` meets the same error again and reports it.
            return;
        }
        // Whole chunks before the last one given are in the inner object.
        let cs = u64::from(self.chunk_size);
        let chunks = (self.consumed / cs).saturating_sub(1);
        let ciphertext = HEADER_LEN as u64 + chunks * (cs + TAG_LEN as u64);
        if let Some(out) = self.enc.as_mut().and_then(EncryptWriter::get_mut) {
            out.settled(ciphertext);
        }
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        let place = self.spool_place.clone();
        let len = self
            .spool()
            .and_then(|s| s.seek(SeekFrom::End(0)))
            .map_err(Error::io("cannot read spool file in", place))?;
        self.encrypt_upto(len)?;
        let target = format!("`{}` (temporary)", self.target);
        let enc = self
            .enc
            .take()
            .ok_or_else(|| Error::Request(format!("{target}: already finished")))?;
        let (mut inner, _) = enc.finish().map_err(Error::io("cannot write", target))?;
        inner.finish()?;
        self.inner = Some(inner);
        self.spool = None;
        self.finished = true;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.finish()?;
        match self.inner.take() {
            Some(inner) => inner.commit(),
            None => Err(Error::Request(format!(
                "`{}`: nothing to commit",
                self.target
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::LocalDir;
    use crate::storage::mem::MemStorage;

    fn key() -> Key {
        Key::from_bytes([42u8; 32])
    }

    #[test]
    fn passes_the_conformance_suite_over_a_local_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        crate::storage::conformance::run(&|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let inner = LocalDir::new(tmp.path().join(format!("repo{i}")));
            Box::new(Encrypted::new(
                Arc::new(inner),
                key(),
                tmp.path().join("spool"),
            ))
        });
        // Nothing was left in the spool.
        assert_eq!(fs::read_dir(tmp.path().join("spool")).unwrap().count(), 0);
    }

    #[test]
    fn passes_the_conformance_suite_over_memory_with_small_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        crate::storage::conformance::run(&|| {
            Box::new(
                Encrypted::new(Arc::new(MemStorage::new()), key(), tmp.path())
                    .with_chunk_size(MIN_CHUNK)
                    .unwrap(),
            )
        });
    }

    fn put(s: &dyn Storage, name: &str, bytes: &[u8]) {
        let mut p = s.create(name).unwrap();
        p.write_all(bytes).unwrap();
        p.commit().unwrap();
    }

    #[test]
    fn objects_are_stored_as_dot_enc_and_never_in_the_clear() {
        let tmp = tempfile::tempdir().unwrap();
        let mem = MemStorage::new();
        let s = Encrypted::new(Arc::new(mem.clone()), key(), tmp.path());
        s.create_root().unwrap();
        let secret = b"Subject: secret plans\r\n\r\nthe launch is on tuesday".repeat(100);
        put(&s, "F20261122T010000Z.zip", &secret);
        assert_eq!(mem.list().unwrap(), vec!["F20261122T010000Z.zip.enc"]);
        assert_eq!(s.list().unwrap(), vec!["F20261122T010000Z.zip"]);
        assert_eq!(
            s.size("F20261122T010000Z.zip").unwrap(),
            secret.len() as u64
        );
        assert!(
            s.describe("F20261122T010000Z.zip")
                .contains("F20261122T010000Z.zip.enc")
        );
        let mut raw = Vec::new();
        mem.open("F20261122T010000Z.zip.enc")
            .unwrap()
            .read_to_end(&mut raw)
            .unwrap();
        assert!(!raw.windows(6).any(|w| w == b"secret"), "ciphertext only");
        // The inner temporary lists as the wrapper's temporary.
        let mut p = s.create("a.zip").unwrap();
        p.write_all(b"x").unwrap();
        p.finish().unwrap();
        assert!(
            mem.list()
                .unwrap()
                .contains(&".mailvault-tmp-a.zip.enc".to_string())
        );
        assert!(
            s.list()
                .unwrap()
                .contains(&".mailvault-tmp-a.zip".to_string())
        );
        s.remove(".mailvault-tmp-a.zip").unwrap();
        drop(p);
    }

    #[test]
    fn a_plain_archive_in_an_encrypted_repository_is_listed_but_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mem = MemStorage::new();
        mem.put("F20261122T010000Z.zip", b"PK\x03\x04 plain".to_vec())
            .unwrap();
        let s = Encrypted::new(Arc::new(mem.clone()), key(), tmp.path());
        assert_eq!(s.list().unwrap(), vec!["F20261122T010000Z.zip"]);
        let e = s.open_reader("F20261122T010000Z.zip").unwrap_err();
        assert!(matches!(e, Error::Crypt { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("not encrypted") && msg.contains("key was given"),
            "{msg}"
        );
        assert!(matches!(
            s.size("F20261122T010000Z.zip"),
            Err(Error::Crypt { .. })
        ));
        s.remove("F20261122T010000Z.zip").unwrap();
        assert!(mem.list().unwrap().is_empty());
    }

    #[test]
    fn another_key_is_named_as_the_wrong_key() {
        let tmp = tempfile::tempdir().unwrap();
        let mem = Arc::new(MemStorage::new());
        let s = Encrypted::new(mem.clone(), key(), tmp.path());
        s.create_root().unwrap();
        put(&s, "x.zip", b"data");
        let other = Key::from_bytes([43u8; 32]);
        let (want_found, want_given) = (key().id().to_string(), other.id().to_string());
        let t = Encrypted::new(mem, other, tmp.path());
        match t.open_reader("x.zip") {
            Err(Error::WrongKey {
                found,
                given,
                place,
            }) => {
                assert_eq!((found, given), (want_found, want_given));
                assert!(place.contains("x.zip.enc"), "{place}");
            }
            other => panic!("expected WrongKey, got {other:?}"),
        }
    }

    #[test]
    fn a_volume_read_through_the_archive_reader_touches_only_its_chunks() {
        // A ZIP of many stored entries, encrypted in small chunks; reading the
        // central directory then two entries decrypts only those chunks.
        let tmp = tempfile::tempdir().unwrap();
        let mem = Arc::new(MemStorage::new());
        let s = Encrypted::new(mem, key(), tmp.path())
            .with_chunk_size(MIN_CHUNK)
            .unwrap();
        s.create_root().unwrap();
        let mut p = s.create("F20261122T010000Z.zip").unwrap();
        {
            let mut z = zip::ZipWriter::new(&mut p);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            for i in 0..200u32 {
                z.start_file(format!("e{i:03}"), opts).unwrap();
                z.write_all(&vec![u8::try_from(i % 251).unwrap(); 10_000])
                    .unwrap();
            }
            z.finish().unwrap();
        }
        p.commit().unwrap();
        let r = s.open_reader("F20261122T010000Z.zip").unwrap();
        let total = r.geometry().chunks;
        assert!(total > 400, "{total}");
        let mut z = zip::ZipArchive::new(r).unwrap();
        let mut v = Vec::new();
        z.by_name("e100").unwrap().read_to_end(&mut v).unwrap();
        assert_eq!(v, vec![100u8; 10_000]);
        v.clear();
        z.by_name("e007").unwrap().read_to_end(&mut v).unwrap();
        assert_eq!(v, vec![7u8; 10_000]);
        let touched = z.into_inner().chunks_decrypted();
        assert!(touched <= 12, "decrypted {touched} of {total} chunks");
    }
}
