//! The `key: value` text codec shared by `.version.txt` and `.summary.txt`
//! (docs/formats/archive.md, "Key-value files"). One field per line, keys are
//! lower-case words with `-`, a key may repeat (`skipped:`), order is kept,
//! lines starting with `#` are comments. Readers ignore unknown keys so that
//! newer writers stay readable.

use crate::{Error, Result};

/// An ordered list of fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// Parses the text of a key-value file named `file` (for errors).
    ///
    /// # Errors
    /// A non-comment line without `: `, or invalid UTF-8.
    pub fn parse(file: &'static str, bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|e| Error::BadLine {
            file,
            line: bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
            reason: "not UTF-8".into(),
        })?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.chars().any(|c| c.is_control() && c != '\t') {
                return Err(Error::BadLine {
                    file,
                    line: i + 1,
                    reason: "control character in line".into(),
                });
            }
            let (k, v) = line.split_once(':').ok_or_else(|| Error::BadLine {
                file,
                line: i + 1,
                reason: format!("expected `key: value`, got `{line}`"),
            })?;
            out.push((
                k.trim().to_string(),
                v.strip_prefix(' ').unwrap_or(v).to_string(),
            ));
        }
        Ok(Self(out))
    }

    /// Appends a field. Control characters other than tab (line breaks
    /// included) cannot be written; they are replaced by spaces.
    pub fn push(&mut self, key: &str, value: impl ToString) {
        let v: String = value
            .to_string()
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        self.0.push((key.to_string(), v));
    }

    /// The first value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a required key.
    ///
    /// # Errors
    /// [`Error::MissingField`].
    pub fn require(&self, file: &'static str, key: &'static str) -> Result<&str> {
        self.get(key).ok_or(Error::MissingField { file, key })
    }

    /// A required key parsed with `FromStr`.
    ///
    /// # Errors
    /// Missing, or unparsable.
    pub fn parse_field<T: std::str::FromStr>(
        &self,
        file: &'static str,
        key: &'static str,
    ) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.require(file, key)?;
        v.parse().map_err(|e: T::Err| Error::BadField {
            file,
            key: key.into(),
            value: v.into(),
            reason: e.to_string(),
        })
    }

    /// An optional key parsed with `FromStr`.
    ///
    /// # Errors
    /// Present but unparsable.
    pub fn parse_opt<T: std::str::FromStr>(
        &self,
        file: &'static str,
        key: &'static str,
    ) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.parse_field(file, key).map(Some),
        }
    }

    /// The text form, one `key: value` line each, `\n` line ends.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.0 {
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_repeats() {
        let mut f = Fields::default();
        f.push("type", "full");
        f.push("skipped", "a b");
        f.push("skipped", "c: d");
        let text = f.to_text();
        assert_eq!(text, "type: full\nskipped: a b\nskipped: c: d\n");
        let back = Fields::parse("t", text.as_bytes()).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.all("skipped").collect::<Vec<_>>(), ["a b", "c: d"]);
    }

    #[test]
    fn names_the_bad_line() {
        let err = Fields::parse(".version.txt", b"# c\ntype: full\nnonsense\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            ".version.txt line 3: expected `key: value`, got `nonsense`"
        );
    }
}
