//! Where an export writes a folder's mail: a Maildir++ folder ([`Sink::Maildir`]:
//! each message written under `tmp/`, its time set, then renamed into `cur/`
//! under its final name, never replacing one), an mbox file ([`Sink::Mbox`]:
//! messages appended the mboxrd way as they stream in, and cut off again
//! when one fails half-way), or a directory of `.eml` files ([`Sink::Eml`]).
//! Items stream from the store into the file: no message is held whole in
//! memory (the mbox writer keeps at most the header block, to name the
//! sender in the `From ` line). Each add tells a failure of the store (the
//! item is reported, the export goes on) from a failure of the output (the
//! export stops).

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mailvault_formats::{limits, mbox};

use crate::mail::store::{ItemRef, MailStore};

/// Why an item was not written.
pub(super) enum ItemError {
    /// The store could not give the item (unreadable, damaged): reported.
    Source(String),
    /// The output failed (a full disk...): the export stops.
    Output(&'static str, PathBuf, io::Error),
}

/// Counts what reaches `inner` and keeps its first failure, so a failed
/// copy can be blamed on the output or on the store.
pub(super) struct Guard<W> {
    pub(super) inner: W,
    pub(super) written: u64,
    pub(super) failed: Option<io::Error>,
}

impl<W> Guard<W> {
    pub(super) fn new(inner: W) -> Self {
        Self {
            inner,
            written: 0,
            failed: None,
        }
    }
}

impl<W: Write> Write for Guard<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self.inner.write(b) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.failed.get_or_insert(e);
                Err(io::Error::new(kind, "the export's output failed"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed
                    .get_or_insert_with(|| io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

/// Copies an item (or its content already read) into `out`; the error
/// says whose fault a failure is.
fn copy_into<W: Write>(
    store: &mut dyn MailStore,
    item: &ItemRef,
    preread: Option<&[u8]>,
    out: &mut Guard<W>,
    path: &Path,
) -> Result<(), ItemError> {
    let r = match preread {
        Some(c) => out.write_all(c).map(|()| 0).map_err(|e| e.to_string()),
        None => store
            .copy_item(item, out as &mut dyn Write)
            .map_err(|e| e.to_string()),
    };
    match (r, out.failed.take()) {
        (_, Some(e)) => Err(ItemError::Output("cannot write", path.to_path_buf(), e)),
        (Err(e), None) => Err(ItemError::Source(e)),
        (Ok(_), None) => Ok(()),
    }
}

/// Renames `from` to `to` unless `to` exists (`renameat2(RENAME_NOREPLACE)`,
/// or a hard link where the filesystem lacks it).
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) if !from.is_dir() => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

fn set_time(f: &File, unix: i64) -> io::Result<()> {
    let t = if unix >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.unsigned_abs())
    } else {
        std::time::UNIX_EPOCH
    };
    f.set_modified(t)
}

/// The Maildir info flags of Kerio's `index.fld` flag bits (seen 0x1 → S,
/// answered 0x2 → R, flagged 0x4 → F, draft 0x10 → D), in ASCII order as
/// the Maildir specification asks.
#[must_use]
pub(super) fn maildir_flags(bits: u32) -> String {
    [(0x10, 'D'), (0x4, 'F'), (0x2, 'R'), (0x1, 'S')]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// The output of one folder's mail.
pub(super) enum Sink {
    /// A Maildir (`cur/`, `new/`, `tmp/`).
    Maildir(PathBuf),
    /// An mbox file being appended to.
    Mbox {
        path: PathBuf,
        out: Guard<BufWriter<File>>,
    },
    /// A directory of `<8 hex>.eml` files.
    Eml(PathBuf),
}

impl Sink {
    /// A Maildir at `dir` (a Maildir++ subfolder when `sub`).
    ///
    /// # Errors
    /// The directories cannot be made.
    pub(super) fn maildir(dir: PathBuf, sub: bool) -> Result<Self, (PathBuf, io::Error)> {
        for d in ["cur", "new", "tmp"] {
            let p = dir.join(d);
            fs::create_dir_all(&p).map_err(|e| (p, e))?;
        }
        if sub {
            // Maildir++ marks subfolders so (Courier's quota code reads it).
            let p = dir.join("maildirfolder");
            File::create(&p).map_err(|e| (p, e))?;
        }
        Ok(Self::Maildir(dir))
    }

    /// An mbox file at `path`.
    ///
    /// # Errors
    /// It cannot be created (or exists).
    pub(super) fn mbox(path: PathBuf) -> Result<Self, (PathBuf, io::Error)> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
        }
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| (path.clone(), e))?;
        Ok(Self::Mbox {
            path,
            out: Guard::new(BufWriter::with_capacity(256 << 10, f)),
        })
    }

    /// A directory of `.eml` files at `dir`.
    ///
    /// # Errors
    /// It cannot be made.
    pub(super) fn eml(dir: PathBuf) -> Result<Self, (PathBuf, io::Error)> {
        fs::create_dir_all(&dir).map_err(|e| (dir.clone(), e))?;
        Ok(Self::Eml(dir))
    }

    /// Writes one message; returns its size as written.
    pub(super) fn add(
        &mut self,
        store: &mut dyn MailStore,
        item: &ItemRef,
        preread: Option<&[u8]>,
        flags: u32,
        time: i64,
    ) -> Result<u64, ItemError> {
        match self {
            Self::Maildir(dir) => {
                // Stable and unique within the folder: the Kerio item
                // number stands in for the usual pid/sequence part.
                let base = format!("{time}.K{:08x}.mailvault", item.uid);
                let tmp = dir.join("tmp").join(&base);
                let written = write_file(store, item, preread, &tmp, time)?;
                let name = format!("{base},S={written}:2,{}", maildir_flags(flags));
                let dest = dir.join("cur").join(name);
                rename_noreplace(&tmp, &dest).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    ItemError::Output("cannot rename into place", dest, e)
                })?;
                Ok(written)
            }
            Self::Eml(dir) => {
                let path = dir.join(format!("{:08x}.eml", item.uid));
                write_file(store, item, preread, &path, time)
            }
            Self::Mbox { path, out } => {
                let start = out.written;
                let mut msg = MboxMessage::new(&mut *out, time);
                let r = copy_into(store, item, preread, &mut msg.guard, path)
                    .and_then(|()| msg.finish().map_err(|e| ItemError::Source(e.to_string())));
                let failed = out.failed.take();
                match (r, failed) {
                    (_, Some(e)) => Err(ItemError::Output("cannot write", path.clone(), e)),
                    (Ok(()), None) => Ok(out.written - start),
                    (Err(ItemError::Source(reason)), None) => {
                        // Cut the half-written message off again.
                        let cut = out
                            .inner
                            .flush()
                            .and_then(|()| out.inner.get_ref().set_len(start))
                            .and_then(|()| out.inner.get_mut().seek(SeekFrom::Start(start)));
                        match cut {
                            Ok(_) => {
                                out.written = start;
                                Err(ItemError::Source(reason))
                            }
                            Err(e) => Err(ItemError::Output("cannot write", path.clone(), e)),
                        }
                    }
                    (Err(e), None) => Err(e),
                }
            }
        }
    }

    /// Ends the output (flushes an mbox).
    ///
    /// # Errors
    /// The final write.
    pub(super) fn finish(self) -> Result<(), (PathBuf, io::Error)> {
        match self {
            Self::Mbox { path, out } => out
                .inner
                .into_inner()
                .map(drop)
                .map_err(|e| (path, e.into_error())),
            Self::Maildir(_) | Self::Eml(_) => Ok(()),
        }
    }
}

/// Writes an item to a new file at `path` with mtime `time`; a failed
/// write removes the file again.
fn write_file(
    store: &mut dyn MailStore,
    item: &ItemRef,
    preread: Option<&[u8]>,
    path: &Path,
    time: i64,
) -> Result<u64, ItemError> {
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| ItemError::Output("cannot create", path.to_path_buf(), e))?;
    let mut g = Guard::new(f);
    let r = copy_into(store, item, preread, &mut g, path).and_then(|()| {
        set_time(&g.inner, time)
            .map_err(|e| ItemError::Output("cannot set the time of", path.to_path_buf(), e))
    });
    let written = g.written;
    drop(g);
    match r {
        Ok(()) => Ok(written),
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

/// The envelope sender for an mbox `From ` line: the `Return-Path`
/// address, else the `From` address, else empty (`MAILER-DAEMON`).
#[must_use]
pub(super) fn envelope_sender(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let address = |value: &str| -> Option<String> {
        let a = match (value.rfind('<'), value.rfind('>')) {
            (Some(l), Some(r)) if l < r => value[l + 1..r].trim().to_string(),
            _ => value
                .split_whitespace()
                .find(|w| w.contains('@'))
                .unwrap_or("")
                .trim_matches(|c| c == '"' || c == ',')
                .to_string(),
        };
        (!a.is_empty()).then_some(a)
    };
    ["return-path", "from"]
        .iter()
        .find_map(|h| {
            fields
                .iter()
                .find(|(n, _)| n == h)
                .and_then(|(_, v)| address(v))
        })
        .unwrap_or_default()
}

/// Streams one message into an mbox the way [`mbox::write_message`]
/// writes it: the header block is held back until it ends (it names the
/// sender of the `From ` line), then every line is passed on with one more
/// `>` when it reads `>*From `.
pub(super) struct MboxMessage<'a, W: Write> {
    guard: Guard<Quoter<'a, W>>,
}

pub(super) struct Quoter<'a, W: Write> {
    out: &'a mut W,
    time: i64,
    head: Option<Vec<u8>>,
    /// At a line start: the bytes of the line so far, while they may still
    /// turn out to be `>*From `.
    pending: Vec<u8>,
    at_line_start: bool,
    last: Option<u8>,
}

impl<'a, W: Write> MboxMessage<'a, W> {
    pub(super) fn new(out: &'a mut W, time: i64) -> Self {
        Self {
            guard: Guard::new(Quoter {
                out,
                time,
                head: Some(Vec::new()),
                pending: Vec::new(),
                at_line_start: true,
                last: None,
            }),
        }
    }

    /// Ends the message: a line end if it lacks one, and the empty line.
    ///
    /// # Errors
    /// The writer's.
    pub(super) fn finish(mut self) -> io::Result<()> {
        let q = &mut self.guard.inner;
        q.start()?;
        let p = std::mem::take(&mut q.pending);
        q.out.write_all(&p)?;
        if q.last != Some(b'\n') {
            q.out.write_all(b"\n")?;
        }
        q.out.write_all(b"\n")
    }
}

impl<W: Write> Quoter<'_, W> {
    fn start(&mut self) -> io::Result<()> {
        if let Some(head) = self.head.take() {
            let line = mbox::from_line(&envelope_sender(&head), self.time);
            self.out.write_all(line.as_bytes())?;
            self.out.write_all(b"\n")?;
            self.body(&head)?;
        }
        Ok(())
    }

    fn body(&mut self, mut buf: &[u8]) -> io::Result<()> {
        const FROM: &[u8] = b"From ";
        if let Some(&b) = buf.last() {
            self.last = Some(b);
        }
        while !buf.is_empty() {
            if self.at_line_start {
                let b = buf[0];
                buf = &buf[1..];
                self.pending.push(b);
                let quotes = self.pending.iter().take_while(|&&c| c == b'>').count();
                let tail = &self.pending[quotes..];
                if tail == FROM {
                    self.out.write_all(b">")?;
                } else if FROM.starts_with(tail) && b != b'\n' {
                    continue;
                }
                self.out.write_all(&self.pending)?;
                self.pending.clear();
                self.at_line_start = b == b'\n';
            } else {
                match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.out.write_all(&buf[..=i])?;
                        buf = &buf[i + 1..];
                        self.at_line_start = true;
                    }
                    None => {
                        self.out.write_all(buf)?;
                        buf = &[];
                    }
                }
            }
        }
        Ok(())
    }
}

/// The end of a header block (after its empty line), if `head` has one.
fn header_end(head: &[u8]) -> bool {
    head.windows(2).any(|w| w == b"\n\n") || head.windows(4).any(|w| w == b"\r\n\r\n")
}

impl<W: Write> Write for Quoter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(head) = self.head.as_mut() {
            let seen = head.len();
            head.extend_from_slice(buf);
            // Only the new bytes (and three before them) can complete the end.
            let from = seen.saturating_sub(3);
            if header_end(&head[from..]) || head.len() >= limits::MAX_HEADER_BYTES {
                self.start()?;
            }
            return Ok(buf.len());
        }
        self.body(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_in_ascii_order() {
        assert_eq!(maildir_flags(0), "");
        assert_eq!(maildir_flags(0x1), "S");
        assert_eq!(maildir_flags(0x17), "DFRS");
        assert_eq!(maildir_flags(0x8000_0006), "FR");
    }

    #[test]
    fn senders_from_headers() {
        assert_eq!(
            envelope_sender(b"Received: x\r\nReturn-Path: <a@b.cz>\r\nFrom: c@d\r\n\r\n"),
            "a@b.cz"
        );
        assert_eq!(
            envelope_sender(b"From: \"Jan N\xc3\xa1prstek\"\n <jan@firma.cz>\nSubject: x\n\n"),
            "jan@firma.cz"
        );
        assert_eq!(envelope_sender(b"From: bob@x.org (Bob)\n\n"), "bob@x.org");
        assert_eq!(envelope_sender(b"Return-Path: <>\nSubject: x\n\n"), "");
        assert_eq!(envelope_sender(b"BEGIN:VCARD\nFN:x\n"), "");
    }

    /// Whatever the chunking, the stream writes what `mbox::write_message` writes.
    #[test]
    fn streaming_matches_write_message() {
        let msgs: [&[u8]; 7] = [
            b"Return-Path: <a@b.c>\r\nSubject: a\r\n\r\nFrom here\r\n>From there\r\n>>From x\r\nFromage\r\n>Fro\r\nFrom",
            b"Subject: b\n\nno final newline",
            b"Subject: c\n\n\n",
            b"",
            b"From nobody\nFrom: x@y\n\nFrom \n>From\n",
            b"no header end at all, >From\nFrom x",
            b"Subject: d\r\n\r\n\r\nFrom \r\n\r\n",
        ];
        for m in msgs {
            let mut want = Vec::new();
            mbox::write_message(&mut want, &envelope_sender(m), 1_700_000_000, m).unwrap();
            for chunk in [1, 2, 3, 5, 7, 64, 4096] {
                let mut got = Vec::new();
                let mut w = MboxMessage::new(&mut got, 1_700_000_000);
                for c in m.chunks(chunk) {
                    w.guard.write_all(c).unwrap();
                }
                w.finish().unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "chunk {chunk}"
                );
            }
        }
    }
}
