//! The sample install committed under `samples/install`: two domains, six
//! users (one disabled), aliases, a group, a mailing list, license, CA and
//! server certificates (placeholders, not real keys), INBOX / Sent Items /
//! Deleted Items, nested folders, a non-ASCII folder name, Calendar and
//! Contacts items, `#public` folders, mailing-list data, the SpamAssassin
//! database, and `store/logs`, `store/queue`, `store/tmp` that a backup must
//! leave out. Real messages come from CPython's `test_email` corpus (PSF
//! licence, copied beside the install with its licence); the rest is generated.

use std::fs;
use std::path::{Path, PathBuf};

use mailvault_formats::config::write_config;

use super::{Item, Rng, message, write_folder, write_with_mtime};
use crate::error::{Error, Result};

/// 2026-11-01T08:00:00Z: every generated time is after this.
const T0: i64 = 1_793_520_000;

/// Where CPython's `test_email/data` is on this machine (asks `python3`).
#[must_use]
pub fn find_cpython_corpus() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import test,os;print(os.path.join(os.path.dirname(test.__file__),'test_email','data'))"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    p.is_dir().then_some(p)
}

fn corpus_messages(corpus: &Path) -> Result<Vec<Vec<u8>>> {
    let mut names: Vec<PathBuf> = fs::read_dir(corpus)
        .map_err(Error::io("cannot list", corpus))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("msg_") && n.ends_with(".txt"))
        })
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| fs::read(p).map_err(Error::io("cannot read", p)))
        .collect()
}

fn user(
    name: &str,
    domain: &str,
    full: &str,
    enabled: bool,
    pw: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("Name", name.into()),
        ("Domain", domain.into()),
        ("FullName", full.into()),
        ("Password", pw.into()),
        ("PasswordHistory", String::new()),
        ("Account_enabled", if enabled { "1" } else { "0" }.into()),
        ("Rights", if name == "admin" { "Admin" } else { "" }.into()),
    ]
}

fn items(msgs: &[Vec<u8>], class: &'static str, start: i64) -> Vec<Item> {
    msgs.iter()
        .enumerate()
        .map(|(i, m)| Item {
            content: m.clone(),
            class,
            flags: if i % 3 == 0 { 0 } else { 1 },
            time: start + 3600 * i as i64,
        })
        .collect()
}

fn vevent(summary: &str, day: u32) -> Vec<u8> {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailvault//sample//EN\r\nBEGIN:VEVENT\r\nUID:sample-{day}@example.com\r\n\
         DTSTAMP:20261101T080000Z\r\nDTSTART:202612{day:02}T090000Z\r\nDTEND:202612{day:02}T100000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    .into_bytes()
}

fn vcard(name: &str, mail: &str) -> Vec<u8> {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:{name}\r\nEMAIL;TYPE=INTERNET:{mail}\r\nEND:VCARD\r\n"
    )
    .into_bytes()
}

/// Writes the sample install into `out` (which must not exist or be empty).
/// `corpus` is CPython's `test_email/data` directory.
///
/// # Errors
/// `out` is not empty, the corpus cannot be read, or a write fails.
pub fn write_sample_install(out: &Path, corpus: &Path) -> Result<()> {
    if out.exists()
        && fs::read_dir(out)
            .map_err(Error::io("cannot list", out))?
            .next()
            .is_some()
    {
        return Err(Error::Invalid(format!(
            "`{}` is not empty: give a new directory",
            out.display()
        )));
    }
    let w = |p: &str, content: &[u8], t: i64| {
        write_with_mtime(&out.join(p), content, t).map_err(Error::io("cannot write", out.join(p)))
    };
    let real = corpus_messages(corpus)?;
    if real.len() < 40 {
        return Err(Error::Invalid(format!(
            "`{}` holds {} msg_*.txt files, expected CPython's 48+",
            corpus.display(),
            real.len()
        )));
    }
    let mut rng = Rng::new(2026);
    let mut generated = |n: usize, from: &str, to: &str, start: i64| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                message(
                    &mut rng,
                    from,
                    to,
                    start + 600 * i as i64,
                    1500 + 900 * (i % 7),
                    if i == 2 { 30_000 } else { 0 },
                )
            })
            .collect()
    };

    let mailserver = write_config(&[
        (
            "Domain",
            vec![
                vec![
                    ("Domain", "example.com".into()),
                    ("Type", "local".into()),
                    ("Description", "Example Inc.".into()),
                ],
                vec![
                    ("Domain", "firma.cz".into()),
                    ("Type", "local".into()),
                    ("Description", "Firma s.r.o. – pobočka Brno".into()),
                ],
            ],
        ),
        (
            "MailingList",
            vec![vec![
                ("Domain", "example.com".into()),
                ("Name", "announce".into()),
                ("Description", "Company announcements".into()),
            ]],
        ),
        (
            "Resource",
            vec![vec![
                ("Domain", "example.com".into()),
                ("Name", "meeting-room".into()),
            ]],
        ),
    ]);
    let users = write_config(&[
        (
            "User",
            vec![
                user(
                    "admin",
                    "example.com",
                    "Administrator",
                    true,
                    "D3S:8f2a61b0c4e9d7a3",
                ),
                user(
                    "john",
                    "example.com",
                    "John Smith",
                    true,
                    "SHA:5e884898da28047151d0e56f8dc6292773603d0d",
                ),
                user(
                    "jane",
                    "example.com",
                    "Jane Doe",
                    true,
                    "SHA:2bb80d537b1da3e38bd30361aa855686bde0eacd",
                ),
                user(
                    "olduser",
                    "example.com",
                    "Former Employee",
                    false,
                    "D3S:0b9c2625dc21ef05",
                ),
                user(
                    "petr",
                    "firma.cz",
                    "Petr Novák",
                    true,
                    "SHA:7c4a8d09ca3762af61e59520943dc26494f8941b",
                ),
                user("jana", "firma.cz", "Jana Dvořáková", true, "NUL:"),
            ],
        ),
        (
            "Alias",
            vec![
                vec![
                    ("Domain", "example.com".into()),
                    ("Lhs", "info".into()),
                    ("Rhs", "john".into()),
                ],
                vec![
                    ("Domain", "firma.cz".into()),
                    ("Lhs", "obchod".into()),
                    ("Rhs", "petr".into()),
                ],
            ],
        ),
        (
            "Group",
            vec![vec![
                ("Domain", "example.com".into()),
                ("Name", "sales".into()),
                ("MailAddress", "sales".into()),
                ("Members", "john;jane".into()),
            ]],
        ),
    ]);
    w("mailserver.cfg", mailserver.as_bytes(), T0)?;
    w("users.cfg", users.as_bytes(), T0)?;
    w("license/license.key", b"# mailvault sample licence placeholder: not a real Kerio licence\nProduct: Kerio Connect\nUsers: 25\nExpires: 2027-12-31\n", T0)?;
    w("sslca/ca.crt", b"# placeholder CA certificate for tests, not a real certificate\n-----BEGIN CERTIFICATE-----\nTUFJTFZBVUxUIFNBTVBMRSBDQQ==\n-----END CERTIFICATE-----\n", T0)?;
    w("sslcert/server.crt", b"# placeholder server certificate for tests\n-----BEGIN CERTIFICATE-----\nbWFpbC5leGFtcGxlLmNvbQ==\n-----END CERTIFICATE-----\n", T0)?;
    w("sslcert/server.key", b"# placeholder private key for tests, not a real key\n-----BEGIN PRIVATE KEY-----\nTk9UIEEgUkVBTCBLRVk=\n-----END PRIVATE KEY-----\n", T0)?;

    let m = "store/mail";
    let folder = |rel: &str, it: &[Item], ty: u32| {
        write_folder(&out.join(m).join(rel), it, ty, 0x6720_0000)
            .map_err(Error::io("cannot write", out.join(m).join(rel)))
    };
    // example.com/john: the richest mailbox.
    folder(
        "example.com/john/INBOX",
        &items(&real[0..12], "IPM.Note", T0 + 86_400),
        0,
    )?;
    folder(
        "example.com/john/Sent Items",
        &items(
            &generated(3, "john@example.com", "client@example.net", T0 + 90_000),
            "IPM.Note",
            T0 + 90_000,
        ),
        0,
    )?;
    folder(
        "example.com/john/Deleted Items",
        &items(
            &generated(2, "newsletter@example.org", "john@example.com", T0 + 95_000),
            "IPM.Note",
            T0 + 95_000,
        ),
        0,
    )?;
    folder(
        "example.com/john/Projects",
        &items(
            &generated(2, "pm@example.com", "john@example.com", T0 + 100_000),
            "IPM.Note",
            T0 + 100_000,
        ),
        0,
    )?;
    folder(
        "example.com/john/Projects/2026/Q4 Migration",
        &items(
            &generated(3, "ops@example.com", "john@example.com", T0 + 110_000),
            "IPM.Note",
            T0 + 110_000,
        ),
        0,
    )?;
    folder(
        "example.com/john/Calendar",
        &items(
            &[
                vevent("Quarterly review", 3),
                vevent("Server migration window", 12),
            ],
            "IPM.Appointment",
            T0 + 120_000,
        ),
        1,
    )?;
    folder(
        "example.com/john/Contacts",
        &items(
            &[
                vcard("Jane Doe", "jane@example.com"),
                vcard("Petr Novák", "petr@firma.cz"),
            ],
            "IPM.Contact",
            T0 + 121_000,
        ),
        2,
    )?;
    w("store/mail/example.com/john/filter.siv", b"require [\"fileinto\"];\nif header :contains \"subject\" \"[announce]\" { fileinto \"Lists\"; }\n", T0)?;
    w(
        "store/mail/example.com/john/settings.usr",
        b"<settings><language>en</language></settings>\n",
        T0,
    )?;
    w(
        "store/mail/example.com/john/stats.usr",
        b"LastLogin: 2026-11-20T07:55:00Z\n",
        T0,
    )?;
    // Other users.
    folder(
        "example.com/jane/INBOX",
        &items(&real[12..24], "IPM.Note", T0 + 130_000),
        0,
    )?;
    folder(
        "example.com/jane/Sent Items",
        &items(
            &generated(2, "jane@example.com", "john@example.com", T0 + 131_000),
            "IPM.Note",
            T0 + 131_000,
        ),
        0,
    )?;
    folder(
        "example.com/admin/INBOX",
        &items(&real[24..30], "IPM.Note", T0 + 140_000),
        0,
    )?;
    folder(
        "example.com/olduser/INBOX",
        &items(
            &generated(3, "hr@example.com", "olduser@example.com", T0 + 150_000),
            "IPM.Note",
            T0 + 150_000,
        ),
        0,
    )?;
    folder(
        "firma.cz/petr/INBOX",
        &items(&real[30..38], "IPM.Note", T0 + 160_000),
        0,
    )?;
    folder(
        "firma.cz/petr/Odeslaná pošta",
        &items(
            &generated(2, "petr@firma.cz", "dodavatel@example.cz", T0 + 161_000),
            "IPM.Note",
            T0 + 161_000,
        ),
        0,
    )?;
    folder(
        "firma.cz/jana/INBOX",
        &items(&real[38..44], "IPM.Note", T0 + 170_000),
        0,
    )?;
    folder(
        "firma.cz/jana/Účtenky 2026",
        &items(
            &generated(2, "eshop@example.cz", "jana@firma.cz", T0 + 171_000),
            "IPM.Note",
            T0 + 171_000,
        ),
        0,
    )?;
    // Public folders and mailing-list data.
    folder(
        "example.com/#public/Company Calendar",
        &items(&[vevent("All hands", 15)], "IPM.Appointment", T0 + 180_000),
        1,
    )?;
    folder(
        "example.com/#public/Announcements",
        &items(
            &generated(2, "ceo@example.com", "all@example.com", T0 + 181_000),
            "IPM.Note",
            T0 + 181_000,
        ),
        0,
    )?;
    folder(
        "example.com/#lists/announce/Archive",
        &items(&real[44..], "IPM.Note", T0 + 190_000),
        0,
    )?;
    w(
        "store/mail/example.com/#lists/announce/members.txt",
        b"john@example.com\njane@example.com\npetr@firma.cz\n",
        T0,
    )?;
    // SpamAssassin database.
    let mut bayes = vec![0u8; 24 * 1024];
    rng.fill(&mut bayes);
    w("store/spamassassin/bayes_toks", &bayes, T0)?;
    w("store/spamassassin/bayes_seen", &bayes[..4096], T0)?;
    w(
        "store/spamassassin/user_prefs",
        b"required_score 5.0\nuse_bayes 1\n",
        T0,
    )?;
    // What a backup must leave out.
    w(
        "store/logs/mail.log",
        b"[20/Nov/2026 07:55:00] sample log line: must not be backed up\n",
        T0,
    )?;
    w(
        "store/queue/00000001.eml",
        b"Subject: queued, must not be backed up\r\n\r\nx\r\n",
        T0,
    )?;
    w(
        "store/tmp/upload.tmp",
        b"temporary, must not be backed up\n",
        T0,
    )?;
    Ok(())
}
