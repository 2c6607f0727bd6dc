//! `search`: messages across every archive of a repository (every full,
//! differential and copy, not only the newest chain), found by their
//! headers. It owns the query ([`SearchQuery`]), the header-only reading
//! and the merging of copies into one [`Hit`] per message; it never writes
//! anything, and it inflates no more of a message than its header block.
//!
//! How the work stays proportional to what is asked:
//! - entries are chosen by name from the central directories: with
//!   `--domain`/`--user`/`--folder`, entries outside are never opened;
//! - the same message (same path, size and CRC-32) stored in several
//!   archives is read once, from its first intact copy;
//! - each entry is inflated only until the blank line that ends its header
//!   block (at most [`limits::MAX_HEADER_BYTES`]), 1 KiB first, more only
//!   for longer header blocks;
//! - threads share the entries in runs of neighbours (sequential reads),
//!   each with its own open volumes.
//!
//! What a header-only reader cannot do: prove an entry intact. Damage is
//! found where the ZIP headers or the decompressor show it, and by the
//! CRC-32 in messages short enough to come out whole with their headers
//! (under 1 KiB); `verify` reads every byte.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, NaiveDate};
use mail_parser::{Address, HeaderName, MessageParser};
use mailvault_formats::layout::{self, MailboxPath};
use mailvault_formats::limits;
use mailvault_formats::store::folder_name::display_name;
use mailvault_formats::store::index_fld;
use mailvault_repo::reader::Volume;
use mailvault_repo::storage::{LockMode, Storage};
use mailvault_repo::{Problem, Repository};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::mail::headers::{header_end, normal_id};
use crate::progress::Progress;

/// What to look for. Text criteria are case-insensitive substrings of the
/// decoded header values (RFC 2047 encoded words decoded); all given
/// criteria must hold.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// In `From` (display names and addresses).
    pub from: Option<String>,
    /// In `To` or `Cc`.
    pub to: Option<String>,
    /// In `Subject`.
    pub subject: Option<String>,
    /// `Message-ID`, exactly (angle brackets optional).
    pub message_id: Option<String>,
    /// `Date` at or after this (Unix seconds).
    pub date_from: Option<i64>,
    /// `Date` at or before this (Unix seconds).
    pub date_to: Option<i64>,
    /// Only this domain.
    pub domain: Option<String>,
    /// Only this mailbox (login without domain, or `#public`).
    pub user: Option<String>,
    /// Only this folder and its subfolders (`INBOX`, `Projects/2026`), by
    /// directory or display name.
    pub folder: Option<String>,
    /// Only this archive (a stem or any volume's name): the others are not searched.
    pub archive: Option<String>,
    /// Threads reading entries (0: one per core).
    pub threads: usize,
}

impl SearchQuery {
    /// Whether anything narrows the search (a search of everything is refused).
    #[must_use]
    pub fn has_criteria(&self) -> bool {
        self.from.is_some()
            || self.to.is_some()
            || self.subject.is_some()
            || self.message_id.is_some()
            || self.date_from.is_some()
            || self.date_to.is_some()
            || self.domain.is_some()
            || self.user.is_some()
            || self.folder.is_some()
    }

    /// Whether an install-relative path is a message inside the scope
    /// (`--domain`, `--user`, `--folder`), decided on the name alone.
    #[must_use]
    pub fn in_scope(&self, rel: &str) -> bool {
        let Some(m) = MailboxPath::parse(rel) else {
            return false;
        };
        let Some((folder, file)) = m.rest.rsplit_once("/#msgs/") else {
            return false;
        };
        if folder.is_empty() || file.contains('/') || index_fld::uid_of_file_name(file).is_none() {
            return false;
        }
        if self
            .domain
            .as_ref()
            .is_some_and(|d| !d.eq_ignore_ascii_case(m.domain))
            || self
                .user
                .as_ref()
                .is_some_and(|u| !u.eq_ignore_ascii_case(m.mailbox))
        {
            return false;
        }
        let Some(want) = &self.folder else {
            return true;
        };
        let have: Vec<&str> = folder.split('/').collect();
        let want: Vec<&str> = want.trim_matches('/').split('/').collect();
        have.len() >= want.len()
            && want.iter().zip(&have).all(|(w, h)| {
                *w == *h
                    || display_name(h) == *w
                    || (w.eq_ignore_ascii_case("INBOX") && h.eq_ignore_ascii_case("INBOX"))
            })
    }

    fn matcher(&self) -> Matcher {
        let low = |s: &Option<String>| s.as_ref().map(|s| s.to_lowercase());
        Matcher {
            from: low(&self.from),
            to: low(&self.to),
            subject: low(&self.subject),
            message_id: self.message_id.as_ref().map(|m| normal_id(m).to_string()),
            date_from: self.date_from,
            date_to: self.date_to,
        }
    }
}

/// Parses a `--date-from`/`--date-to` value: RFC 3339, or `YYYY-MM-DD`
/// (UTC; its first second, or with `end_of_day` its last).
///
/// # Errors
/// Neither form.
pub fn parse_date_bound(s: &str, end_of_day: bool) -> Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.timestamp());
    }
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
        Error::Invalid(format!(
            "`{s}` is not a date: give YYYY-MM-DD or RFC 3339 (2026-11-20T12:00:00Z)"
        ))
    })?;
    let t = if end_of_day {
        d.and_hms_opt(23, 59, 59)
    } else {
        d.and_hms_opt(0, 0, 0)
    };
    t.map(|t| t.and_utc().timestamp())
        .ok_or_else(|| Error::Invalid(format!("`{s}` is not a date")))
}

/// The headers a search looks at, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// `Date`, Unix seconds, when it parses.
    pub date: Option<i64>,
    /// `Date` as RFC 3339 in the message's own offset.
    pub date_text: Option<String>,
    /// `From`: `Name <address>`, comma-separated.
    pub from: String,
    /// `To`.
    pub to: String,
    /// `Cc`.
    pub cc: String,
    /// `Subject`.
    pub subject: String,
    /// `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
}

/// A parser that decodes only the headers a search looks at.
#[must_use]
pub fn header_parser() -> MessageParser {
    MessageParser::new()
        .header_text(HeaderName::Subject)
        .header_address(HeaderName::From)
        .header_address(HeaderName::To)
        .header_address(HeaderName::Cc)
        .header_date(HeaderName::Date)
        .header_id(HeaderName::MessageId)
        .default_header_ignore()
}

fn addresses(a: Option<&Address<'_>>) -> String {
    let Some(a) = a else {
        return String::new();
    };
    let parts: Vec<String> = a
        .iter()
        .map(|x| match (x.name(), x.address()) {
            (Some(n), Some(m)) => format!("{n} <{m}>"),
            (Some(n), None) => n.to_string(),
            (None, Some(m)) => m.to_string(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    parts.join(", ")
}

/// Decodes a header block (the bytes up to and including the blank line).
#[must_use]
pub fn parse_headers(parser: &MessageParser, block: &[u8]) -> Headers {
    let Some(m) = parser.parse_headers(block) else {
        return Headers::default();
    };
    let date = m.date().filter(|d| d.is_valid());
    Headers {
        date: date.map(mail_parser::DateTime::to_timestamp),
        date_text: date.map(mail_parser::DateTime::to_rfc3339),
        from: addresses(m.from()),
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        subject: m.subject().unwrap_or_default().to_string(),
        message_id: m.message_id().map(|s| normal_id(s).to_string()),
    }
}

struct Matcher {
    from: Option<String>,
    to: Option<String>,
    subject: Option<String>,
    message_id: Option<String>,
    date_from: Option<i64>,
    date_to: Option<i64>,
}

impl Matcher {
    fn matches(&self, h: &Headers) -> bool {
        let has = |hay: &str, needle: &Option<String>| {
            needle
                .as_ref()
                .is_none_or(|n| hay.to_lowercase().contains(n.as_str()))
        };
        if let Some(id) = &self.message_id
            && !h
                .message_id
                .as_ref()
                .is_some_and(|m| m.eq_ignore_ascii_case(id))
        {
            return false;
        }
        if (self.date_from.is_some() || self.date_to.is_some())
            && !h.date.is_some_and(|d| {
                self.date_from.is_none_or(|f| d >= f) && self.date_to.is_none_or(|t| d <= t)
            })
        {
            return false;
        }
        has(&h.subject, &self.subject)
            && has(&h.from, &self.from)
            && (self.to.is_none() || has(&h.to, &self.to) || has(&h.cc, &self.to))
    }
}

/// One message found.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// Install-relative path, as in the catalog
    /// (`store/mail/example.com/john/INBOX/#msgs/0000002a.eml`).
    pub path: String,
    /// The archives (first-volume names) that store this exact message,
    /// oldest first; any of them gives it back (`kmsrecover --message PATH ARCHIVE`).
    pub archives: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 (8 hex digits).
    pub crc32: String,
    /// `Date` (RFC 3339, the message's own offset), when it parses.
    pub date: Option<String>,
    /// `Date`, Unix seconds.
    pub date_unix: Option<i64>,
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// `Cc`.
    pub cc: String,
    /// `Subject`.
    pub subject: String,
    /// `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
}

/// What a search found and what it could not search.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SearchReport {
    /// Messages found, by date (undated last), then path.
    pub hits: Vec<Hit>,
    /// Messages whose headers were read (each once, however many archives hold it).
    pub scanned: u64,
    /// Entries in scope across all archives (copies counted each).
    pub entries: u64,
    /// Archives searched (first-volume names), oldest first.
    pub archives: Vec<String>,
    /// Archives, volumes and entries that could not be searched (or not
    /// wholly): damage, missing volumes, hostile names.
    pub problems: Vec<Problem>,
}

/// One stored copy of a message.
#[derive(Debug, Clone, Copy)]
struct Copy {
    volume: usize,
    index: usize,
}

/// A message to read: its path, size, CRC and every copy.
struct Task {
    rel: Box<str>,
    size: u64,
    crc32: u32,
    copies: Vec<Copy>,
}

/// A volume of the repository: its set (index into the archives) and name.
struct VolumeRef {
    set: usize,
    name: String,
}

/// Bytes inflated by the first read of an entry: most header blocks are
/// shorter (inflating more costs time in proportion); longer ones take a
/// few more reads.
const HEAD_STEP: usize = 1 << 10;

/// Entries per hand-out to a thread: neighbours, so reads stay sequential.
const RUN: usize = 64;

/// Searches every archive of `repo` (under its shared lock).
///
/// # Errors
/// No criterion; the repository cannot be listed or locked. Damage in
/// archives is not an error: it is listed in [`SearchReport::problems`].
pub fn search(
    repo: &Repository,
    query: &SearchQuery,
    progress: &dyn Progress,
) -> Result<SearchReport> {
    if !query.has_criteria() {
        return Err(Error::Invalid(
            "give at least one criterion (--from, --to, --subject, --message-id, --date-from, --date-to, --domain, --user or --folder)".into(),
        ));
    }
    let _lock = repo.lock(LockMode::Shared, "mailvault search")?;
    let listing = repo.listing()?;
    let storage = repo.storage();
    let only = match &query.archive {
        Some(a) => Some(
            a.parse::<mailvault_formats::ArchiveName>()
                .or_else(|_| format!("{a}.zip").parse())
                .map_err(|e| Error::Invalid(format!("`{a}`: {e}")))?
                .first_volume(),
        ),
        None => None,
    };
    let mut report = SearchReport::default();
    let mut volumes: Vec<VolumeRef> = Vec::new();
    let mut by_message: HashMap<(Box<str>, u64, u32), Vec<Copy>> = HashMap::new();
    for info in listing
        .sets
        .iter()
        .filter(|s| s.status.is_backup())
        .filter(|s| only.is_none_or(|o| s.set.name == o))
    {
        let set = report.archives.len();
        report.archives.push(info.set.volume_name(0));
        report.problems.extend(info.problem(storage));
        for name in info.set.volumes.values() {
            let vol = match Volume::open(storage, name) {
                Ok(v) => v,
                Err(p) => {
                    report.problems.push(p);
                    continue;
                }
            };
            // Hostile names are reported and their entries left alone.
            report.problems.extend(vol.check_entries());
            let volume = volumes.len();
            volumes.push(VolumeRef {
                set,
                name: name.clone(),
            });
            for (rel, f) in vol.backup_entries() {
                if layout::check_relative(&rel).is_err() || !query.in_scope(&rel) {
                    continue;
                }
                report.entries += 1;
                by_message
                    .entry((rel.into_boxed_str(), f.size, f.crc32))
                    .or_default()
                    .push(Copy {
                        volume,
                        index: f.index,
                    });
            }
        }
    }
    if only.is_some() && report.archives.is_empty() {
        return Err(Error::Invalid(format!(
            "no backup `{}` in {}",
            query.archive.as_deref().unwrap_or_default(),
            repo.location()
        )));
    }
    let mut tasks: Vec<Task> = by_message
        .into_iter()
        .map(|((rel, size, crc32), copies)| Task {
            rel,
            size,
            crc32,
            copies,
        })
        .collect();
    // In archive order, so that each run of neighbours is one sequential read.
    tasks.sort_by_key(|t| (t.copies[0].volume, t.copies[0].index));

    let found = read_all(storage, &volumes, &tasks, query, progress);
    report.scanned = found.scanned;
    report.problems.extend(found.problems);
    let mut seen = BTreeSet::new();
    report
        .problems
        .retain(|p| seen.insert((p.archive.clone(), p.entry.clone(), p.message.clone())));
    report.hits = found
        .hits
        .into_iter()
        .map(|(t, h, bad)| {
            let t = &tasks[t];
            let mut archives: Vec<usize> = t
                .copies
                .iter()
                .filter(|c| !bad.contains(&c.volume))
                .map(|c| volumes[c.volume].set)
                .collect();
            archives.sort_unstable();
            archives.dedup();
            Hit {
                path: t.rel.to_string(),
                archives: archives
                    .into_iter()
                    .map(|s| report.archives[s].clone())
                    .collect(),
                size: t.size,
                crc32: format!("{:08x}", t.crc32),
                date: h.date_text,
                date_unix: h.date,
                from: h.from,
                to: h.to,
                cc: h.cc,
                subject: h.subject,
                message_id: h.message_id,
            }
        })
        .collect();
    report.hits.sort_by(|a, b| {
        (a.date_unix.is_none(), a.date_unix, &a.path).cmp(&(
            b.date_unix.is_none(),
            b.date_unix,
            &b.path,
        ))
    });
    Ok(report)
}

/// Whether the header block in `b` has ended, looking only from the start
/// of the last line of the first `looked` bytes (already searched): a blank
/// line counts only at the start of a real line, wherever a read stopped.
fn headers_done(b: &[u8], looked: usize) -> bool {
    let from = b[..looked.min(b.len())]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |p| p + 1);
    header_end(&b[from..]).is_some()
}

/// What the threads found: (task, headers, volumes whose copy was damaged).
struct Found {
    hits: Vec<(usize, Headers, Vec<usize>)>,
    problems: Vec<Problem>,
    scanned: u64,
}

fn read_all(
    storage: &dyn Storage,
    volumes: &[VolumeRef],
    tasks: &[Task],
    query: &SearchQuery,
    progress: &dyn Progress,
) -> Found {
    let threads = if query.threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        query.threads
    }
    .clamp(1, tasks.len().div_ceil(RUN).max(1));
    // Bytes: the size of the messages gone over (not what is read of them).
    progress.start(
        "searching",
        tasks.len() as u64,
        tasks.iter().map(|t| t.size).sum(),
    );
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Found {
        hits: Vec::new(),
        problems: Vec::new(),
        scanned: 0,
    });
    let matcher = query.matcher();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mine = worker(storage, volumes, tasks, &matcher, &next, progress);
                if let Ok(mut o) = out.lock() {
                    o.hits.extend(mine.hits);
                    o.problems.extend(mine.problems);
                    o.scanned += mine.scanned;
                }
            });
        }
    });
    progress.finish();
    out.into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn worker(
    storage: &dyn Storage,
    volumes: &[VolumeRef],
    tasks: &[Task],
    matcher: &Matcher,
    next: &AtomicUsize,
    progress: &dyn Progress,
) -> Found {
    let parser = header_parser();
    let mut found = Found {
        hits: Vec::new(),
        problems: Vec::new(),
        scanned: 0,
    };
    let mut open: BTreeMap<usize, Option<Volume>> = BTreeMap::new();
    let mut buf = Vec::with_capacity(8 << 10);
    loop {
        let start = next.fetch_add(RUN, Ordering::Relaxed);
        if start >= tasks.len() {
            break;
        }
        for (ti, t) in tasks
            .iter()
            .enumerate()
            .skip(start)
            .take(RUN.min(tasks.len() - start))
        {
            let mut bad = Vec::new();
            let mut head = None;
            for c in &t.copies {
                let vol = open.entry(c.volume).or_insert_with(|| {
                    match Volume::open(storage, &volumes[c.volume].name) {
                        Ok(v) => Some(v),
                        Err(p) => {
                            found.problems.push(p);
                            None
                        }
                    }
                });
                let Some(vol) = vol else {
                    bad.push(c.volume);
                    continue;
                };
                let mut looked = 0usize;
                let mut enough = |b: &[u8]| {
                    let done = headers_done(b, looked);
                    looked = b.len();
                    done
                };
                match vol.read_head(
                    c.index,
                    limits::MAX_HEADER_BYTES,
                    HEAD_STEP,
                    &mut buf,
                    &mut enough,
                ) {
                    Ok(_) => {
                        let end = header_end(&buf).unwrap_or(buf.len());
                        head = Some(parse_headers(&parser, &buf[..end]));
                        break;
                    }
                    Err(p) => {
                        found.problems.push(p);
                        bad.push(c.volume);
                    }
                }
            }
            progress.inc(1, t.size);
            let Some(h) = head else { continue };
            found.scanned += 1;
            if matcher.matches(&h) {
                found.hits.push((ti, h, bad));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_read_that_stops_at_a_line_end_is_not_the_end_of_the_headers() {
        let b = b"A: b\r\nC: d\r\nE: f\r\n";
        // The previous read stopped right after "C: d\r\n".
        assert!(!headers_done(b, 12));
        assert!(!headers_done(b, 11));
        assert!(!headers_done(b, 13));
        let done = b"A: b\r\nC: d\r\n\r\nbody";
        // Up to the blank line (a read past it has found it already).
        for looked in 0..14 {
            assert!(headers_done(done, looked), "{looked}");
        }
    }

    #[test]
    fn encoded_words_are_decoded_and_matched_without_case() {
        let block = b"From: =?utf-8?q?Ji=C5=99=C3=AD_Nov=C3=A1k?= <jiri@firma.cz>\r\n\
            To: jane@example.com\r\nCc: \"Petr\" <petr@firma.cz>\r\n\
            Subject: =?iso-8859-2?q?P=F8=EDloha_k_faktu=F8e?=\r\n\
            Date: Thu, 22 Aug 2002 12:46:39 +0100\r\nMessage-ID: <abc@x.cz>\r\n\r\n";
        let h = parse_headers(&header_parser(), block);
        assert_eq!(h.subject, "Příloha k faktuře");
        assert_eq!(h.from, "Jiří Novák <jiri@firma.cz>");
        assert_eq!(h.message_id.as_deref(), Some("abc@x.cz"));
        assert_eq!(h.date, Some(1_030_016_799));
        let q = |f: fn(&mut SearchQuery)| {
            let mut q = SearchQuery::default();
            f(&mut q);
            q.matcher().matches(&h)
        };
        assert!(q(|q| q.subject = Some("FAKTUŘE".into())));
        assert!(q(|q| q.from = Some("novák".into())));
        assert!(
            q(|q| q.to = Some("PETR@".into())),
            "Cc counts as a recipient"
        );
        assert!(q(|q| q.message_id = Some("<abc@x.cz>".into())));
        assert!(
            !q(|q| q.message_id = Some("abc@x".into())),
            "ids match whole"
        );
        assert!(q(
            |q| q.date_from = Some(parse_date_bound("2002-08-22", false).unwrap())
        ));
        assert!(!q(
            |q| q.date_to = Some(parse_date_bound("2002-08-21", true).unwrap())
        ));
        assert!(q(
            |q| q.date_to = Some(parse_date_bound("2002-08-22", true).unwrap())
        ));
        assert!(!q(|q| {
            q.subject = Some("faktuře".into());
            q.from = Some("jane".into());
        }));
    }

    #[test]
    fn scope_is_decided_on_the_name() {
        let q = SearchQuery {
            domain: Some("Example.com".into()),
            user: Some("john".into()),
            folder: Some("Projects".into()),
            ..SearchQuery::default()
        };
        assert!(q.in_scope("store/mail/example.com/john/Projects/#msgs/0000000a.eml"));
        assert!(q.in_scope("store/mail/example.com/john/Projects/2026/#msgs/0000000a.eml"));
        assert!(!q.in_scope("store/mail/example.com/john/Projects2/#msgs/0000000a.eml"));
        assert!(!q.in_scope("store/mail/example.com/jane/Projects/#msgs/0000000a.eml"));
        assert!(!q.in_scope("store/mail/example.com/john/Projects/index.fld"));
        assert!(!q.in_scope("store/mail/example.com/john/Projects/#msgs/junk.eml"));
        let all = SearchQuery::default();
        assert!(all.in_scope("store/mail/a.cz/#public/Team/#msgs/00000001.eml"));
        assert!(!all.in_scope("users.cfg"));
    }
}
