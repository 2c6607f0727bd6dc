//! Header blocks of messages as the mail tools compare them: where a block
//! ends (its blank line), and a Message-ID without its angle brackets. One
//! definition for search (header-only reads) and merge (duplicates).

/// Where the header block of `b` ends (just after its blank line).
#[must_use]
pub fn header_end(b: &[u8]) -> Option<usize> {
    if b.starts_with(b"\n") {
        return Some(1);
    }
    if b.starts_with(b"\r\n") {
        return Some(2);
    }
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'\n') {
        let nl = i + p;
        match b.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if b.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

/// A Message-ID as compared: trimmed, without one pair of angle brackets.
#[must_use]
pub fn normal_id(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_end_at_the_first_blank_line() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(header_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_end(b"A: b\r\nC: d\r\n"), None);
        assert_eq!(header_end(b"\r\nbody"), Some(2));
        assert_eq!(header_end(b"A: b\n\r\n"), Some(7));
    }

    #[test]
    fn message_ids_lose_one_pair_of_brackets() {
        assert_eq!(normal_id(" <a@b> "), "a@b");
        assert_eq!(normal_id("a@b"), "a@b");
        assert_eq!(normal_id("<a@b"), "<a@b");
    }
}
