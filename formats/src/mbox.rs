//! mbox in the mboxrd variant: each message starts with a `From <sender>
//! <asctime>` line, lines of the message that match `>*From ` get one more
//! `>` (so the quoting is reversible), and each message ends with an empty
//! line. [`write_message`] writes one message; [`Reader`] splits an mbox
//! back into messages, undoing the quoting. Line endings inside messages are
//! kept as they are (a Kerio `.eml` has CRLF).

use std::io::{self, BufRead, Write};

/// The `From ` separator line for a message (without its line end):
/// `From sender Thu Nov 19 07:55:00 2026` (asctime, UTC).
#[must_use]
pub fn from_line(sender: &str, unix_time: i64) -> String {
    let sender: String = sender
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    let sender = if sender.is_empty() {
        "MAILER-DAEMON".to_string()
    } else {
        sender
    };
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp(unix_time, 0).unwrap_or_default();
    format!("From {sender} {}", t.format("%a %b %e %H:%M:%S %Y"))
}

/// Whether a line (without its end) is `>*From ` and so needs one more `>`.
fn needs_quote(line: &[u8]) -> bool {
    let rest = &line[line.iter().take_while(|&&b| b == b'>').count()..];
    rest.starts_with(b"From ")
}

/// Writes one message: the `From ` line, the content quoted the mboxrd way,
/// a line end if the content lacks a final one, and the empty line that
/// ends it. Returns the bytes written.
///
/// # Errors
/// The writer's.
pub fn write_message(
    out: &mut dyn Write,
    sender: &str,
    unix_time: i64,
    content: &[u8],
) -> io::Result<u64> {
    let mut n = 0u64;
    let head = from_line(sender, unix_time);
    out.write_all(head.as_bytes())?;
    out.write_all(b"\n")?;
    n += head.len() as u64 + 1;
    let mut rest = content;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let line = &rest[..end];
        if needs_quote(line) {
            out.write_all(b">")?;
            n += 1;
        }
        out.write_all(line)?;
        n += line.len() as u64;
        rest = &rest[end..];
    }
    if !content.ends_with(b"\n") {
        out.write_all(b"\n")?;
        n += 1;
    }
    out.write_all(b"\n")?;
    Ok(n + 1)
}

/// Bytes of a `From ` line kept (the rest of a longer one is skipped).
const FROM_LINE_CAP: usize = 4096;

/// Reads one line (through its `\n`) into `line`, keeping at most `cap`
/// bytes of it and skipping the rest; returns the bytes consumed (0 at the
/// end of the input) and whether the line was cut.
fn read_line_capped(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    cap: usize,
) -> io::Result<(usize, bool)> {
    let (mut total, mut cut) = (0, false);
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((total, cut));
        }
        let (n, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = cap.saturating_sub(line.len());
        if n > room {
            cut = true;
        }
        line.extend_from_slice(&buf[..n.min(room)]);
        input.consume(n);
        total += n;
        if done {
            return Ok((total, cut));
        }
    }
}

/// One message read back from an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// The `From ` line, without its line end.
    pub from_line: String,
    /// The content, unquoted, without the empty line that ended it.
    pub content: Vec<u8>,
    /// 1-based line number of the `From ` line (for error messages).
    pub line: usize,
}

/// What [`Reader::next_message`] can find wrong.
#[derive(Debug)]
pub enum MboxError {
    /// The input does not start with a `From ` line.
    NotMbox,
    /// A message longer than the bound the reader was given.
    TooLarge {
        /// 1-based line of its `From ` line.
        line: usize,
        /// The bound.
        limit: u64,
    },
    /// Reading failed.
    Io(io::Error),
}

impl std::fmt::Display for MboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotMbox => f.write_str("not an mbox: the first line is not a `From ` line"),
            Self::TooLarge { line, limit } => {
                write!(f, "the message at line {line} is larger than {limit} bytes")
            }
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MboxError {}

/// Splits an mbox into messages, one at a time, each bounded in size.
pub struct Reader<R> {
    input: R,
    limit: u64,
    pending: Option<(String, usize)>,
    line_no: usize,
    started: bool,
}

impl<R: BufRead> Reader<R> {
    /// A reader refusing messages over `limit` bytes.
    pub fn new(input: R, limit: u64) -> Self {
        Self {
            input,
            limit,
            pending: None,
            line_no: 0,
            started: false,
        }
    }

    /// The next message, or `None` at the end.
    ///
    /// # Errors
    /// [`MboxError`]; after `TooLarge` the reader skips to the next message.
    pub fn next_message(&mut self) -> Result<Option<MboxMessage>, MboxError> {
        let mut line = Vec::new();
        if !self.started {
            self.started = true;
            // Leading blank lines are tolerated; anything else must be `From `.
            loop {
                line.clear();
                if read_line_capped(&mut self.input, &mut line, FROM_LINE_CAP)
                    .map_err(MboxError::Io)?
                    .0
                    == 0
                {
                    return Ok(None);
                }
                self.line_no += 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if !line.starts_with(b"From ") {
                    return Err(MboxError::NotMbox);
                }
                let head = String::from_utf8_lossy(&line).trim_end().to_string();
                self.pending = Some((head, self.line_no));
                break;
            }
        }
        let Some((from_line, at)) = self.pending.take() else {
            return Ok(None);
        };
        let mut content = Vec::new();
        let mut too_large = false;
        loop {
            line.clear();
            // A line is kept up to what a message may hold (a longer one
            // makes the message too large): a file of one endless line
            // never fills memory.
            let room = self
                .limit
                .saturating_add(3)
                .saturating_sub(content.len() as u64);
            let cap = usize::try_from(room).unwrap_or(usize::MAX);
            let (n, cut) =
                read_line_capped(&mut self.input, &mut line, cap).map_err(MboxError::Io)?;
            if n == 0 {
                break;
            }
            self.line_no += 1;
            if cut && !line.starts_with(b"From ") {
                too_large = true;
                content = Vec::new();
                continue;
            }
            if line.starts_with(b"From ") {
                let head = String::from_utf8_lossy(&line).trim_end().to_string();
                self.pending = Some((head, self.line_no));
                break;
            }
            if too_large {
                continue;
            }
            let body = if line.starts_with(b">") && needs_quote(&line[1..]) {
                &line[1..]
            } else {
                &line[..]
            };
            content.extend_from_slice(body);
            if content.len() as u64 > self.limit.saturating_add(2) {
                too_large = true;
                content = Vec::new();
            }
        }
        if too_large {
            return Err(MboxError::TooLarge {
                line: at,
                limit: self.limit,
            });
        }
        // The empty line that ends a message belongs to the format.
        if content.ends_with(b"\r\n\r\n") {
            content.truncate(content.len() - 2);
        } else if content.ends_with(b"\n\n") {
            content.truncate(content.len() - 1);
        }
        Ok(Some(MboxMessage {
            from_line,
            content,
            line: at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_unquotes_from_lines() {
        let msgs: [&[u8]; 3] = [
            b"Subject: a\r\n\r\nFrom here\r\n>From there\r\n>>From x\r\nFromage\r\n",
            b"Subject: b\n\nno final newline",
            b"Subject: c\n\n\n",
        ];
        let mut out = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            write_message(&mut out, "a@example.com", 1_700_000_000 + i as i64, m).unwrap();
        }
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("From a@example.com Tue Nov 14 22:13:20 2023\n"));
        assert!(text.contains("\r\n>From here\r\n>>From there\r\n>>>From x\r\nFromage\r\n"));
        let mut r = Reader::new(&out[..], 1 << 20);
        let mut back = Vec::new();
        while let Some(m) = r.next_message().unwrap() {
            back.push(m.content);
        }
        assert_eq!(back.len(), 3);
        assert_eq!(back[0], msgs[0]);
        assert_eq!(back[1], b"Subject: b\n\nno final newline\n");
        assert_eq!(back[2], msgs[2]);
    }

    #[test]
    fn refuses_non_mbox_and_bounds_messages() {
        let mut r = Reader::new(&b"Subject: x\n\nbody\n"[..], 100);
        assert!(matches!(r.next_message(), Err(MboxError::NotMbox)));
        let big = format!("From a b\n{}\nFrom c d\nSubject: ok\n\n", "x".repeat(500));
        let mut r = Reader::new(big.as_bytes(), 100);
        assert!(matches!(
            r.next_message(),
            Err(MboxError::TooLarge { line: 1, .. })
        ));
        let next = r.next_message().unwrap().unwrap();
        assert_eq!(next.content, b"Subject: ok\n");
        assert_eq!(next.line, 3);
        assert!(r.next_message().unwrap().is_none());
    }

    #[test]
    fn an_endless_line_is_cut_not_read_whole() {
        // 64 MiB without a line end: kept only up to the bound, the message
        // refused, the next one read.
        let input = std::io::Read::chain(
            std::io::Read::chain(
                &b"From a b\nSubject: x\n\n"[..],
                std::io::Read::take(std::io::repeat(b'x'), 64 << 20),
            ),
            &b"\nFrom c d\nSubject: ok\n\n"[..],
        );
        let mut r = Reader::new(std::io::BufReader::new(input), 100);
        assert!(matches!(
            r.next_message(),
            Err(MboxError::TooLarge { line: 1, .. })
        ));
        assert_eq!(r.next_message().unwrap().unwrap().content, b"Subject: ok\n");
        // An endless first line: not an mbox, and not read whole either.
        let endless = std::io::Read::take(std::io::repeat(b' '), 8 << 20);
        let mut r = Reader::new(std::io::BufReader::new(endless), 100);
        assert!(r.next_message().unwrap().is_none());
    }
}
