//! `.version.txt`: the first entry of every volume, written when the backup
//! starts (docs/formats/archive.md, "`.version.txt`").

use chrono::{DateTime, Utc};

use crate::keyvalue::Fields;
use crate::{ArchiveKind, ArchiveName, Error, FORMAT_VERSION, Result};

const FILE: &str = ".version.txt";

/// What is known about an archive when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// `format-version`: the archive format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// `tool`: program and version that wrote the archive.
    pub tool: String,
    /// `type`: what this archive is (after any fallback).
    pub kind: ArchiveKind,
    /// `requested`: what was asked for, when it differs from `type`
    /// (a differential with no usable full is written as a full).
    pub requested: Option<ArchiveKind>,
    /// `started`: UTC start time (equals the time in the name).
    pub started: DateTime<Utc>,
    /// `host`: host name of the backed-up server.
    pub host: String,
    /// `source`: the install directory that was backed up.
    pub source: String,
    /// `base`: for a differential, the stem of its base full (`F20261122T010000Z`).
    pub base: Option<String>,
    /// `volume`: 0 for the first volume, N for `.N.zip`.
    pub volume: u32,
    /// `scope` (repeated): for a partial backup (a kmsrecover safety copy),
    /// the install-relative roots it covers; empty for a whole install. A
    /// restore never replaces anything outside these roots.
    pub scope: Vec<String>,
}

impl VersionInfo {
    /// Parses `.version.txt`.
    ///
    /// # Errors
    /// Missing or malformed fields; a `format-version` newer than this reader.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let f = Fields::parse(FILE, bytes)?;
        let format_version: u32 = f.parse_field(FILE, "format-version")?;
        if format_version > FORMAT_VERSION {
            return Err(Error::BadField {
                file: FILE,
                key: "format-version".into(),
                value: format_version.to_string(),
                reason: format!(
                    "this mailvault reads format versions up to {FORMAT_VERSION}: upgrade mailvault"
                ),
            });
        }
        let kind = ArchiveKind::from_word(f.require(FILE, "type")?)?;
        let requested = f.get("requested").map(ArchiveKind::from_word).transpose()?;
        let started = parse_time(&f, FILE, "started")?;
        let base = f.get("base").map(str::to_string);
        if let Some(b) = &base {
            ArchiveName::parse_stem(b)?;
        }
        Ok(Self {
            format_version,
            tool: f.get("tool").unwrap_or_default().to_string(),
            kind,
            requested,
            started,
            host: f.get("host").unwrap_or_default().to_string(),
            source: f.get("source").unwrap_or_default().to_string(),
            base,
            volume: f.parse_opt(FILE, "volume")?.unwrap_or(0),
            scope: f
                .all("scope")
                .map(|r| crate::layout::check_relative(r).map(|()| r.to_string()))
                .collect::<Result<_>>()?,
        })
    }

    /// The text form.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut f = Fields::default();
        f.push("format-version", self.format_version);
        f.push("tool", &self.tool);
        f.push("type", self.kind);
        if let Some(r) = self.requested {
            f.push("requested", r);
        }
        f.push("started", format_time(self.started));
        f.push("host", &self.host);
        f.push("source", &self.source);
        if let Some(b) = &self.base {
            f.push("base", b);
        }
        f.push("volume", self.volume);
        for r in &self.scope {
            f.push("scope", r);
        }
        f.to_text()
    }
}

/// RFC 3339 UTC with a `Z` and whole seconds, the form every time field uses.
#[must_use]
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) fn parse_time(
    f: &Fields,
    file: &'static str,
    key: &'static str,
) -> Result<DateTime<Utc>> {
    let v = f.require(file, key)?;
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::BadField {
            file,
            key: key.into(),
            value: v.into(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VersionInfo {
        VersionInfo {
            format_version: FORMAT_VERSION,
            tool: "mailvault 0.1.0".into(),
            kind: ArchiveKind::Full,
            requested: Some(ArchiveKind::Differential),
            started: DateTime::from_timestamp(1_795_000_000, 0).unwrap(),
            host: "mail.example.com".into(),
            source: "/opt/kerio/mailserver".into(),
            base: None,
            volume: 2,
            scope: Vec::new(),
        }
    }

    #[test]
    fn written_form_is_stable() {
        assert_eq!(
            sample().to_text(),
            "format-version: 1\ntool: mailvault 0.1.0\ntype: full\nrequested: differential\n\
             started: 2026-11-18T11:06:40Z\nhost: mail.example.com\nsource: /opt/kerio/mailserver\nvolume: 2\n"
        );
    }

    #[test]
    fn round_trips() {
        let mut v = sample();
        v.kind = ArchiveKind::Differential;
        v.requested = None;
        v.base = Some("F20261122T010000Z".into());
        v.scope = vec!["store/mail/a.cz/jan".into(), "users.cfg".into()];
        assert_eq!(VersionInfo::parse(v.to_text().as_bytes()).unwrap(), v);
    }

    #[test]
    fn refuses_newer_format() {
        let text = sample()
            .to_text()
            .replace("format-version: 1", "format-version: 99");
        let e = VersionInfo::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("upgrade mailvault"), "{e}");
    }
}
