//! Folder names: Kerio stores a folder as a directory named by its display
//! name (`Sent Items`, nested folders as subdirectories). Non-ASCII names are
//! seen both as raw UTF-8 and as IMAP modified UTF-7 (RFC 3501 5.1.3,
//! `Odeslan&AOE- po&AWE-ta`), so [`display_name`] decodes the latter and
//! keeps anything else verbatim. [`maildir_folder`] names a folder the
//! Maildir++ way (Dovecot's default layout): `.` as the hierarchy separator,
//! each component in modified UTF-7.

/// The modified base64 alphabet of RFC 3501 (`,` instead of `/`).
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a name in IMAP modified UTF-7.
#[must_use]
pub fn encode_mutf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes IMAP modified UTF-7; `None` when `name` is not valid modified
/// UTF-7 (raw non-ASCII, a lone `&`, bad base64, an unpaired surrogate).
#[must_use]
pub fn decode_mutf7(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(amp) = rest.find('&') {
        let plain = &rest[..amp];
        if !plain.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return None;
        }
        out.push_str(plain);
        let after = &rest[amp + 1..];
        let end = after.find('-')?;
        let enc = &after[..end];
        if enc.is_empty() {
            out.push('&');
        } else {
            let mut bits = 0u32;
            let mut nbits = 0;
            let mut units = Vec::new();
            let mut bytes = Vec::new();
            for c in enc.bytes() {
                let v = B64.iter().position(|&x| x == c)? as u32;
                bits = (bits << 6) | v;
                nbits += 6;
                if nbits >= 8 {
                    nbits -= 8;
                    bytes.push((bits >> nbits) as u8);
                    bits &= (1 << nbits) - 1;
                }
            }
            // Leftover bits must be zero padding, and whole UTF-16 units.
            if bits != 0 || bytes.len() % 2 != 0 {
                return None;
            }
            for pair in bytes.chunks(2) {
                units.push(u16::from_be_bytes([pair[0], pair[1]]));
            }
            let s = String::from_utf16(&units).ok()?;
            // An encoded run of printable ASCII is not the canonical form:
            // such a name was not written by an IMAP encoder.
            if s.chars().any(|c| (' '..='~').contains(&c)) {
                return None;
            }
            out.push_str(&s);
        }
        rest = &after[end + 1..];
    }
    if !rest.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// A folder directory's name as the user sees it: decoded from modified
/// UTF-7 when it is that, otherwise as stored.
#[must_use]
pub fn display_name(dir_name: &str) -> String {
    if dir_name.contains('&') {
        decode_mutf7(dir_name).unwrap_or_else(|| dir_name.to_string())
    } else {
        dir_name.to_string()
    }
}

/// A Maildir++ folder directory name for a Kerio folder path (components of
/// directory names, outermost first): `INBOX` is the Maildir itself (`None`),
/// `Projects/2026` becomes `.Projects.2026`. Each component is decoded with
/// [`display_name`], then encoded in modified UTF-7; a `.` or `/` inside a
/// component (the separator) becomes `_`. The second value says whether
/// such a replacement was made.
#[must_use]
pub fn maildir_folder(components: &[&str]) -> (Option<String>, bool) {
    if components.is_empty()
        || (components.len() == 1 && components[0].eq_ignore_ascii_case("INBOX"))
    {
        return (None, false);
    }
    let mut name = String::new();
    let mut replaced = false;
    for c in components {
        let shown = display_name(c);
        let safe: String = shown
            .chars()
            .map(|ch| {
                if ch == '.' || ch == '/' {
                    replaced = true;
                    '_'
                } else {
                    ch
                }
            })
            .collect();
        name.push('.');
        name.push_str(&encode_mutf7(&safe));
    }
    (Some(name), replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc3501_examples() {
        assert_eq!(encode_mutf7("Odeslaná pošta"), "Odeslan&AOE- po&AWE-ta");
        assert_eq!(
            decode_mutf7("Odeslan&AOE- po&AWE-ta").as_deref(),
            Some("Odeslaná pošta")
        );
        assert_eq!(
            encode_mutf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            decode_mutf7("~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
            Some("~peter/mail/台北/日本語")
        );
        assert_eq!(encode_mutf7("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(decode_mutf7("Tom &- Jerry").as_deref(), Some("Tom & Jerry"));
        for s in ["😀 emoji", "Ünïcödé", "a&b", "Příchozí/Archiv"] {
            assert_eq!(decode_mutf7(&encode_mutf7(s)).as_deref(), Some(s), "{s}");
        }
    }

    #[test]
    fn display_names_keep_what_is_not_mutf7() {
        assert_eq!(display_name("Odeslaná pošta"), "Odeslaná pošta");
        assert_eq!(display_name("Tom & Jerry"), "Tom & Jerry");
        assert_eq!(display_name("R&D"), "R&D");
        assert_eq!(display_name("Odeslan&AOE- po&AWE-ta"), "Odeslaná pošta");
        assert_eq!(
            decode_mutf7("&AGE-"),
            None,
            "encoded ASCII is not canonical"
        );
        assert_eq!(decode_mutf7("&AOE"), None, "unterminated");
    }

    #[test]
    fn maildir_names_nest_with_dots() {
        assert_eq!(maildir_folder(&["INBOX"]), (None, false));
        assert_eq!(
            maildir_folder(&["Projects", "2026", "Q4 Migration"]),
            (Some(".Projects.2026.Q4 Migration".into()), false)
        );
        assert_eq!(
            maildir_folder(&["Odeslaná pošta"]),
            (Some(".Odeslan&AOE- po&AWE-ta".into()), false)
        );
        assert_eq!(maildir_folder(&["v1.2"]), (Some(".v1_2".into()), true));
        assert_eq!(
            maildir_folder(&["INBOX", "Sub"]),
            (Some(".INBOX.Sub".into()), false)
        );
    }
}
