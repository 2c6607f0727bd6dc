//! The one error type of this crate. Every parse error names the file and
//! the line (1-based) or offset where it went wrong, and what was expected.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while parsing a mailvault or Kerio file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An archive file name that is not `{F|D|C}YYYYMMDDTHHMMSSZ[.N].zip`.
    #[error("`{name}` is not a backup archive name: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// What did not match.
        reason: &'static str,
    },
    /// A line of a text file that does not have the expected shape.
    #[error("{file} line {line}: {reason}")]
    BadLine {
        /// Which file (`.version.txt`, `.catalog.tsv`, `index.fld`, ...).
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// What was expected and what was found.
        reason: String,
    },
    /// A required `key: value` field is absent.
    #[error("{file}: missing field `{key}`")]
    MissingField {
        /// Which file.
        file: &'static str,
        /// The key that was required.
        key: &'static str,
    },
    /// A field is present but its value cannot be understood.
    #[error("{file}: field `{key}` has bad value `{value}`: {reason}")]
    BadField {
        /// Which file.
        file: &'static str,
        /// The key.
        key: String,
        /// The value found.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Malformed Kerio XML configuration.
    #[error("{file}: malformed XML at byte {offset}: {reason}")]
    Xml {
        /// Which file (`users.cfg`, `mailserver.cfg`).
        file: String,
        /// Byte offset in the input.
        offset: u64,
        /// The parser's message.
        reason: String,
    },
    /// A size such as `2G` that cannot be parsed.
    #[error("`{0}` is not a size: use a number with an optional K, M, G or T suffix (500M, 2G)")]
    BadSize(String),
    /// A file larger than its bound (see [`crate::limits`]).
    #[error("{file} is larger than the {limit} {unit} a reader accepts")]
    TooLarge {
        /// Which file.
        file: &'static str,
        /// The bound.
        limit: u64,
        /// `bytes` or `rows`.
        unit: &'static str,
    },
    /// A path that may not appear in an archive (absolute, `..`, empty part, backslash, NUL).
    #[error("unsafe archive path `{path}`: {reason}")]
    UnsafePath {
        /// The path as found.
        path: String,
        /// Which rule it broke.
        reason: &'static str,
    },
}
