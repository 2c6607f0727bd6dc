//! `mailvault search`: arguments, the run over
//! [`mailvault::mail::search`], and the table / `--json` output. Exit codes:
//! 0 messages found (and everything searched), 3 nothing found or something
//! could not be searched (listed), 1 error, 2 usage.

use std::process::ExitCode;

use clap::Args;

use crate::cli::KeyArg;
use mailvault::mail::search::{self, Hit, SearchQuery, SearchReport};
use mailvault_formats::ByteSize;
use mailvault_recover::source;
use mailvault_repo::chain::Pick;

use super::{EXIT_PARTIAL, SelectArgs};
use crate::cli::UsageError;
use crate::cli::progress::Drawer;

const AFTER_HELP: &str = "\
Examples:
  mailvault search /mnt/backup --subject invoice --user john@example.com
  mailvault search /mnt/backup --message-id '<4f2a9c@mail.example.net>'
  mailvault search /mnt/backup --from alice@ --date-from 2026-11-01 --date-to 2026-11-20
  mailvault search 's3://backups/kerio?endpoint=https://s3.example.net' --to jane --json
  mailvault search /mnt/encrypted --key /root/mailvault.key --subject 'Q4 report'
  mailvault search /mnt/backup/F20261122T010000Z.zip -d example.com -u john -f INBOX

Text criteria are case-insensitive substrings of the decoded headers (--to looks at To and Cc);
all criteria given must hold. Every archive is searched (fulls, differentials, copies); a message
stored in several is one row naming them all. Headers only: each message is read up to the
blank line that ends its headers. Progress on stderr; --json prints one document.

Give a found message back into the live store (the server stopped; nothing is replaced):
  kmsrecover --message 'store/mail/example.com/john/INBOX/#msgs/0000002a.eml' \
      /mnt/backup/F20261122T010000Z.zip

Exit codes:
  0  messages found, every archive searched
  1  error (nothing searched)
  2  usage error (no criterion)
  3  nothing found, or some archives or entries could not be searched (listed)
  4  the backup directory is in use by a backup or rotation";

/// `mailvault search` options.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct SearchArgs {
    /// A backup directory, one archive (only it is searched), or a target URL (s3://…, ftp://…, ftps://…).
    #[arg(value_name = "DIR|ARCHIVE|URL")]
    pub location: String,
    #[command(flatten)]
    pub key: KeyArg,
    /// Sender: text in From (name or address).
    #[arg(long, value_name = "TEXT")]
    pub from: Option<String>,
    /// Recipient: text in To or Cc.
    #[arg(long, value_name = "TEXT")]
    pub to: Option<String>,
    /// Text in Subject.
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// The Message-ID, whole (angle brackets optional).
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
    /// Date header at or after (YYYY-MM-DD, UTC, or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub date_from: Option<String>,
    /// Date header at or before (YYYY-MM-DD: the whole day, UTC; or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub date_to: Option<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Reading threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Turns the arguments into a query.
fn query(a: &SearchArgs) -> anyhow::Result<SearchQuery> {
    let usage = |m: String| anyhow::Error::from(UsageError(m));
    let (mut user, mut domain) = (a.select.user.clone(), a.select.domain.clone());
    if let Some((u, d)) = a.select.user.as_deref().and_then(|u| u.split_once('@')) {
        if domain
            .as_deref()
            .is_some_and(|x| !x.eq_ignore_ascii_case(d))
        {
            return Err(usage(format!(
                "--user {u}@{d} and --domain {} disagree",
                domain.unwrap_or_default()
            )));
        }
        user = Some(u.to_string());
        domain = Some(d.to_string());
    }
    if a.select.folder.is_some() && user.is_none() {
        return Err(usage("--folder needs --user".into()));
    }
    let date = |s: &Option<String>, end: bool| {
        s.as_deref()
            .map(|s| search::parse_date_bound(s, end))
            .transpose()
            .map_err(|e| usage(e.to_string()))
    };
    let q = SearchQuery {
        from: a.from.clone(),
        to: a.to.clone(),
        subject: a.subject.clone(),
        message_id: a.message_id.clone(),
        date_from: date(&a.date_from, false)?,
        date_to: date(&a.date_to, true)?,
        domain,
        user,
        folder: a.select.folder.clone(),
        archive: None,
        threads: a.threads,
    };
    if !q.has_criteria() {
        return Err(usage(
            "give at least one criterion: --from, --to, --subject, --message-id, --date-from, --date-to, --domain, --user or --folder".into(),
        ));
    }
    Ok(q)
}

/// Runs `mailvault search`.
///
/// # Errors
/// Usage errors, a repository that cannot be opened, listed or locked.
pub fn run(a: SearchArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut q = query(&a)?;
    let src = source::open(&a.location, a.key.key.as_deref(), None)?;
    if let Pick::Archive(file) = &src.pick {
        q.archive = Some(file.clone());
    }
    let drawer = Drawer::new(quiet || a.json);
    let report = search::search(&src.repo, &q, &drawer)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report, quiet);
    }
    Ok(if report.hits.is_empty() || !report.problems.is_empty() {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

/// Header text as a terminal may show it: control characters (escape
/// sequences in a hostile subject) replaced, cut to `width` characters.
fn cell(s: &str, width: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if clean.chars().count() > width {
        let mut t: String = clean.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        clean
    }
}

fn date_cell(h: &Hit) -> String {
    // RFC 3339 as the message wrote it, minutes only: 2002-08-22 12:46.
    h.date
        .as_deref()
        .and_then(|d| d.get(..16))
        .map_or_else(|| "(no date)".into(), |d| d.replace('T', " "))
}

fn print(r: &SearchReport, quiet: bool) {
    if !quiet {
        for h in &r.hits {
            println!(
                "{:<16}  {:>9}  {:<30}  {}",
                date_cell(h),
                ByteSize(h.size).to_string(),
                cell(&h.from, 30),
                cell(&h.subject, 60)
            );
            println!("    {}", cell(&h.path, usize::MAX));
            println!("    in {}", h.archives.join(", "));
        }
        println!(
            "{} message{} found; {} scanned in {} archive{}",
            r.hits.len(),
            if r.hits.len() == 1 { "" } else { "s" },
            r.scanned,
            r.archives.len(),
            if r.archives.len() == 1 { "" } else { "s" },
        );
    }
    // What could not be searched is always shown, as kmsrecover shows damage.
    for p in r.problems.iter().take(50) {
        println!("NOT searched: {}", cell(&p.to_string(), usize::MAX));
    }
    if r.problems.len() > 50 {
        println!(
            "NOT searched: … and {} more (--json lists them all)",
            r.problems.len() - 50
        );
    }
}
