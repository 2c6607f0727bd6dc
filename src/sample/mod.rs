//! Generators of test material: [`install::write_sample_install`] makes the
//! small complete install committed under `samples/`, and
//! [`store::write_sample_store`] makes large realistic stores for tests and
//! benchmarks. Both are deterministic (same arguments, same bytes, same
//! mtimes) so that committed samples do not churn and benchmarks compare
//! like with like. The pseudo-random source is a local SplitMix64 rather
//! than `rand`, because its output must never change between crate versions.

pub mod install;
pub mod panel;
pub mod store;

use std::fs;
use std::io;
use std::path::Path;

use mailvault_formats::store::index_fld::IndexLine;
use mailvault_formats::store::status_fld::StatusFld;

/// SplitMix64: small, fast, and stable forever.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `0.0..1.0`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform in `lo..hi`: many small values, a few large ones, like mail sizes.
    pub(crate) fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (lo, hi) = (lo.max(1) as f64, hi.max(lo + 1) as f64);
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp() as u64
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)]
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "meeting",
    "report",
    "invoice",
    "project",
    "server",
    "backup",
    "please",
    "thanks",
    "regards",
    "attached",
    "schedule",
    "review",
    "budget",
    "customer",
    "order",
    "delivery",
    "quarter",
    "team",
    "update",
    "question",
    "answer",
    "tomorrow",
    "yesterday",
    "office",
    "contract",
    "price",
    "offer",
    "client",
    "support",
    "ticket",
    "issue",
    "release",
    "version",
    "migration",
    "mailbox",
    "folder",
    "message",
    "calendar",
    "contact",
    "task",
    "note",
    "draft",
    "approval",
    "payment",
    "account",
    "password",
    "security",
    "network",
    "storage",
    "disk",
    "memory",
    "service",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "morning",
    "afternoon",
    "evening",
    "week",
    "month",
    "year",
    "today",
    "could",
    "should",
    "might",
    "must",
    "about",
    "after",
    "before",
    "between",
    "during",
    "without",
    "within",
    "again",
    "also",
    "very",
    "much",
    "many",
    "some",
    "other",
    "new",
    "old",
    "first",
    "last",
    "next",
    "good",
    "great",
    "small",
    "large",
    "important",
    "possible",
    "available",
    "necessary",
    "different",
    "following",
    "current",
    "final",
    "additional",
    "several",
    "general",
];

/// Builds pseudo-English text that compresses like real mail bodies.
pub(crate) fn sentence(rng: &mut Rng, out: &mut String) {
    let n = 6 + rng.below(14);
    for i in 0..n {
        let w = rng.pick(WORDS);
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.extend(f.to_uppercase());
                out.push_str(c.as_str());
            }
        } else {
            out.push(' ');
            out.push_str(w);
        }
    }
    out.push_str(if rng.below(8) == 0 { "?" } else { "." });
}

/// Text of about `size` bytes in paragraphs of wrapped lines.
pub(crate) fn body_text(rng: &mut Rng, size: usize) -> String {
    let mut out = String::with_capacity(size + 200);
    let mut line_len = 0;
    while out.len() < size {
        let start = out.len();
        let mut s = String::new();
        sentence(rng, &mut s);
        if line_len + s.len() > 72 {
            out.push_str("\r\n");
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
        }
        out.push_str(&s);
        line_len += out.len() - start;
        if rng.below(6) == 0 {
            out.push_str("\r\n\r\n");
            line_len = 0;
        }
    }
    out.push_str("\r\n");
    out
}

/// Base64 of `len` random bytes in 76-column lines: attachments (PDF, JPEG)
/// are close to incompressible, so their base64 compresses to about 3/4.
pub(crate) fn base64_block(rng: &mut Rng, len: usize) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut raw = vec![0u8; len];
    rng.fill(&mut raw);
    let mut out = String::with_capacity(len * 4 / 3 + len / 38 + 8);
    let mut col = 0;
    for chunk in raw.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        col += 4;
        if col >= 76 {
            out.push_str("\r\n");
            col = 0;
        }
    }
    out.push_str("\r\n");
    out
}

/// One item of a folder.
pub(crate) struct Item {
    pub content: Vec<u8>,
    pub class: &'static str,
    pub flags: u32,
    /// Unix time: the file's mtime and index.fld's D/M.
    pub time: i64,
}

/// Writes a Kerio folder: `#msgs/<8 hex>.eml`, `index.fld`, `status.fld`.
pub(crate) fn write_folder(
    dir: &Path,
    items: &[Item],
    folder_type: u32,
    uid_validity: u32,
) -> io::Result<()> {
    let msgs = dir.join("#msgs");
    fs::create_dir_all(&msgs)?;
    let mut index = String::new();
    let mut newest = 0;
    for (i, item) in items.iter().enumerate() {
        let uid = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let t = u32::try_from(item.time.max(0)).unwrap_or(u32::MAX);
        let line = IndexLine {
            uid,
            flags: item.flags,
            size: item.content.len() as u64,
            created: t,
            modified: t,
            item: "0001".into(),
            class: item.class.into(),
        };
        let path = msgs.join(line.file_name());
        write_with_mtime(&path, &item.content, item.time)?;
        index.push_str(&line.to_string());
        index.push('\n');
        newest = newest.max(item.time);
    }
    write_with_mtime(&dir.join("index.fld"), index.as_bytes(), newest)?;
    let status = StatusFld {
        folder_type,
        uid_validity,
        next_uid: u32::try_from(items.len() + 1).unwrap_or(u32::MAX),
        other: Vec::new(),
    };
    write_with_mtime(&dir.join("status.fld"), status.to_text().as_bytes(), newest)
}

/// Writes a file and sets its mtime, so generated trees are reproducible.
pub(crate) fn write_with_mtime(path: &Path, content: &[u8], time: i64) -> io::Result<()> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p)?;
    }
    fs::write(path, content)?;
    let t = mailvault_formats::Mtime {
        secs: time,
        nanos: 0,
    }
    .to_system();
    fs::File::options().write(true).open(path)?.set_modified(t)
}

/// An RFC 5322 message of about `size` bytes; some are multipart with HTML,
/// `attachment` adds a base64 attachment of that many raw bytes.
pub(crate) fn message(
    rng: &mut Rng,
    from: &str,
    to: &str,
    time: i64,
    size: usize,
    attachment: usize,
) -> Vec<u8> {
    let date = chrono::DateTime::<chrono::Utc>::from_timestamp(time, 0).unwrap_or_default();
    let mut subject = String::new();
    sentence(rng, &mut subject);
    subject.pop();
    let id = rng.next_u64();
    let mut m = format!(
        "Return-Path: <{from}>\r\nReceived: from mx.example.net (mx.example.net [192.0.2.25])\r\n\tby mail.example.com with ESMTPS id {id:016x}\r\n\tfor <{to}>; {}\r\n\
         Message-ID: <{id:016x}@example.net>\r\nDate: {}\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n",
        date.format("%a, %d %b %Y %H:%M:%S +0000"),
        date.format("%a, %d %b %Y %H:%M:%S +0000"),
    );
    let text = body_text(rng, size.saturating_sub(m.len() + 200).max(64));
    let html = attachment == 0 && rng.below(4) == 0;
    if attachment > 0 || html {
        let boundary = format!("----=_Part_{:012x}", rng.next_u64() >> 16);
        m.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n"));
        m.push_str(&format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}"));
        if html {
            let paras: String = text
                .split("\r\n\r\n")
                .map(|p| format!("<p style=\"margin:0 0 1em 0\">{p}</p>\r\n"))
                .collect();
            m.push_str(&format!("--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n{paras}</body></html>\r\n"));
        }
        if attachment > 0 {
            m.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/pdf; name=\"document-{:04}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
                 Content-Disposition: attachment; filename=\"document-{:04}.pdf\"\r\n\r\n{}",
                id % 10000,
                id % 10000,
                base64_block(rng, attachment)
            ));
        }
        m.push_str(&format!("--{boundary}--\r\n"));
    } else {
        m.push_str(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        m.push_str(&text);
    }
    m.into_bytes()
}
