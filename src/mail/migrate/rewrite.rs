//! `--hostname` and `--rewrite-path`: which values of mailserver.cfg they
//! change (a hostname where a value is exactly the old name; a path where
//! a value is OLD or lies below `OLD/`), and the new text, made through
//! `mailvault_formats::config::edit` so every other byte stays. Only
//! mailserver.cfg is rewritten; users.cfg is migrated as it is.

use mailvault_formats::config::edit;
use serde::Serialize;

use super::{MigrateRequest, refused};
use crate::error::Result;

/// `--hostname [OLD=]NEW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostnameChange {
    /// The old name; `None`: read from mailserver.cfg's `…Hostname` variable.
    pub old: Option<String>,
    /// The new name.
    pub new: String,
}

impl std::str::FromStr for HostnameChange {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let check = |h: &str| {
            if h.is_empty()
                || h.len() > 253
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                Err(format!(
                    "`{h}` is not a hostname (letters, digits, `.` and `-`)"
                ))
            } else {
                Ok(h.to_string())
            }
        };
        Ok(match s.split_once('=') {
            Some((old, new)) => Self {
                old: Some(check(old)?),
                new: check(new)?,
            },
            None => Self {
                old: None,
                new: check(s)?,
            },
        })
    }
}

/// `--rewrite-path OLD=NEW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRewrite {
    /// The old prefix (no trailing `/`).
    pub old: String,
    /// What replaces it.
    pub new: String,
}

impl std::str::FromStr for PathRewrite {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (old, new) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: give OLD=NEW, e.g. /opt/kerio/mailserver=/srv/kerio"))?;
        let trim = |p: &str| {
            if p.len() > 1 {
                p.trim_end_matches('/').to_string()
            } else {
                p.to_string()
            }
        };
        let (old, new) = (trim(old), trim(new));
        if old.is_empty() || new.is_empty() || old == "/" {
            return Err(format!(
                "`{s}`: OLD and NEW must be paths, and OLD not `/` (it would rewrite every path)"
            ));
        }
        if old.chars().any(char::is_control) || new.chars().any(char::is_control) {
            return Err(format!("`{s}`: control characters in a path"));
        }
        Ok(Self { old, new })
    }
}

impl PathRewrite {
    /// The rewritten value, if `value` is OLD or lies below it.
    #[must_use]
    pub fn apply(&self, value: &str) -> Option<String> {
        let rest = value.strip_prefix(self.old.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", self.new))
    }
}

/// One value rewritten in a config file.
#[derive(Debug, Clone, Serialize)]
pub struct Rewrite {
    /// The file (`mailserver.cfg`).
    pub file: String,
    /// Its place (`table Server`, `list Domain #2`).
    pub section: String,
    /// The variable's name.
    pub variable: String,
    /// The value before.
    pub old: String,
    /// The value after.
    pub new: String,
    /// Which option asked for it (`--hostname`, `--rewrite-path OLD=NEW`).
    pub rule: String,
}

/// Finds the rewrites in mailserver.cfg and makes the new text.
pub(super) fn rewrite_config(
    request: &MigrateRequest,
    bytes: &[u8],
    notes: &mut Vec<String>,
) -> Result<(Vec<Rewrite>, Vec<u8>)> {
    let vars = edit::variables("mailserver.cfg", bytes).map_err(|e| {
        refused(
            format!("mailserver.cfg of the source cannot be read for rewriting: {e}"),
            "leave out --hostname/--rewrite-path (the file is migrated as it is) and fix it by hand",
        )
    })?;
    let host = match &request.hostname {
        None => None,
        Some(h) => {
            let old = match &h.old {
                Some(o) => o.clone(),
                None => {
                    let mut found: Vec<String> = Vec::new();
                    for v in &vars {
                        let n = v.name.to_ascii_lowercase();
                        let val = v.value.trim();
                        if n.ends_with("hostname")
                            && !val.is_empty()
                            && !found.iter().any(|f| f.eq_ignore_ascii_case(val))
                        {
                            found.push(val.to_string());
                        }
                    }
                    match found.len() {
                        1 => found.remove(0),
                        0 => {
                            return Err(refused(
                                "--hostname: mailserver.cfg has no …Hostname variable to take the old name from".into(),
                                "give the old name too: --hostname OLD=NEW",
                            ));
                        }
                        _ => {
                            return Err(refused(
                                format!(
                                    "--hostname: mailserver.cfg names several hostnames ({}): which one is the server's?",
                                    found.join(", ")
                                ),
                                "give the old name too: --hostname OLD=NEW",
                            ));
                        }
                    }
                }
            };
            Some((old, h.new.clone()))
        }
    };
    // The longest OLD first: `/opt/kerio/mailserver/store=…` wins over `/opt/kerio=…`.
    let mut paths: Vec<&PathRewrite> = request.rewrite_paths.iter().collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.old.len()));
    let mut used_host = false;
    let mut used_paths = vec![false; paths.len()];
    let mut rewrites = Vec::new();
    let mut edits = Vec::new();
    for v in &vars {
        let mut new = None;
        if let Some((old, newh)) = &host
            && v.value.eq_ignore_ascii_case(old)
        {
            if v.name.eq_ignore_ascii_case("domain") {
                // A mail domain named like the host: its mailboxes live in
                // a directory of that name, so renaming it would orphan them.
                notes.push(format!(
                    "--hostname: {} / {} is the mail domain `{}`, left as it is",
                    v.section, v.name, v.value
                ));
                continue;
            }
            new = Some((newh.clone(), "--hostname".to_string()));
            used_host = true;
        }
        if new.is_none() {
            for (i, p) in paths.iter().enumerate() {
                if let Some(n) = p.apply(&v.value) {
                    new = Some((n, format!("--rewrite-path {}={}", p.old, p.new)));
                    used_paths[i] = true;
                    break;
                }
            }
        }
        let Some((new, rule)) = new else { continue };
        let Some(span) = v.span.clone() else {
            return Err(refused(
                format!(
                    "mailserver.cfg {} / {} holds `{}` in a form mailvault does not edit (CDATA, a comment or markup inside)",
                    v.section, v.name, v.value
                ),
                "leave out that rewrite and edit the value by hand after the migration",
            ));
        };
        if new == v.value {
            continue;
        }
        edits.push((span, new.clone()));
        rewrites.push(Rewrite {
            file: "mailserver.cfg".into(),
            section: v.section.clone(),
            variable: v.name.clone(),
            old: v.value.clone(),
            new,
            rule,
        });
    }
    if let Some((old, _)) = &host
        && !used_host
    {
        notes.push(format!(
            "--hostname: no value in mailserver.cfg equals `{old}`: nothing rewritten for it"
        ));
    }
    for (p, used) in paths.iter().zip(used_paths) {
        if !used {
            notes.push(format!(
                "--rewrite-path {}={}: no value in mailserver.cfg is `{}` or lies below it",
                p.old, p.new, p.old
            ));
        }
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| refused("mailserver.cfg is not UTF-8".into(), "edit it by hand"))?;
    let new = edit::replace_values(text, &edits).map_err(|e| {
        refused(
            format!("mailserver.cfg: {e}"),
            "leave out --hostname/--rewrite-path and edit it by hand",
        )
    })?;
    // What the server will load must still be a config file with the same
    // variables in the same places, only the rewritten values changed.
    let again = edit::variables("mailserver.cfg", new.as_bytes()).map_err(|e| {
        refused(
            format!("rewriting would break mailserver.cfg: {e}"),
            "edit it by hand",
        )
    })?;
    if again.len() != vars.len() {
        return Err(refused(
            "rewriting would change mailserver.cfg's structure".into(),
            "edit it by hand",
        ));
    }
    Ok((rewrites, new.into_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn path_rewrites_match_whole_components() {
        let r: PathRewrite = "/opt/kerio/mailserver/=/srv/kerio".parse().unwrap();
        assert_eq!(r.old, "/opt/kerio/mailserver");
        assert_eq!(
            r.apply("/opt/kerio/mailserver").as_deref(),
            Some("/srv/kerio")
        );
        assert_eq!(
            r.apply("/opt/kerio/mailserver/store/backup").as_deref(),
            Some("/srv/kerio/store/backup")
        );
        assert_eq!(r.apply("/opt/kerio/mailserver2/store"), None);
        assert_eq!(r.apply("x/opt/kerio/mailserver"), None);
        for bad in ["/opt", "=/x", "/x=", "/=/srv"] {
            assert!(bad.parse::<PathRewrite>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_are_checked() {
        let h: HostnameChange = "mail.old.cz=mail.new.cz".parse().unwrap();
        assert_eq!(h.old.as_deref(), Some("mail.old.cz"));
        assert_eq!(h.new, "mail.new.cz");
        assert!("mail new".parse::<HostnameChange>().is_err());
        assert!("a=".parse::<HostnameChange>().is_err());
    }

    const CFG: &str = "<?xml version=\"1.0\"?>\n<config>\n  <table name=\"Server\">\n    <variable name=\"Hostname\">Mail.Old.cz</variable>\n    <variable name=\"StoreDir\">/opt/kerio/mailserver/store</variable>\n  </table>\n  <list name=\"Relay\"><listitem><variable name=\"Host\">mail.old.cz</variable><variable name=\"Path\"><![CDATA[/opt/kerio/mailserver/x]]></variable></listitem></list>\n</config>\n";

    fn request(host: Option<&str>, paths: &[&str]) -> MigrateRequest {
        let mut r = MigrateRequest::from_backups("/b", "/t");
        r.hostname = host.map(|h| h.parse().unwrap());
        r.rewrite_paths = paths.iter().map(|p| p.parse().unwrap()).collect();
        r
    }

    #[test]
    fn the_old_hostname_comes_from_the_hostname_variable_and_matches_whole_values() {
        let mut notes = Vec::new();
        let (rw, new) = rewrite_config(
            &request(Some("mail.new.cz"), &[]),
            CFG.as_bytes(),
            &mut notes,
        )
        .unwrap();
        assert_eq!(rw.len(), 2, "{rw:?}");
        assert_eq!(
            String::from_utf8(new).unwrap(),
            CFG.replace(">Mail.Old.cz<", ">mail.new.cz<")
                .replace(">mail.old.cz<", ">mail.new.cz<")
        );
        assert!(notes.is_empty(), "{notes:?}");

        // A mail domain named like the host stays (its mailboxes are named by it).
        let with_domain = CFG.replace(
            "</config>",
            "<list name=\"Domain\"><listitem><variable name=\"Domain\">mail.old.cz</variable></listitem></list>\n</config>",
        );
        let (rw, new) = rewrite_config(
            &request(Some("mail.new.cz"), &[]),
            with_domain.as_bytes(),
            &mut notes,
        )
        .unwrap();
        assert_eq!(rw.len(), 2);
        assert!(
            String::from_utf8(new)
                .unwrap()
                .contains("\"Domain\">mail.old.cz<")
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn refuses_what_it_cannot_rewrite_and_notes_what_matched_nothing() {
        let mut notes = Vec::new();
        // The path also sits in a CDATA value: not edited, so refused up front.
        let e = rewrite_config(
            &request(None, &["/opt/kerio/mailserver=/srv/kerio"]),
            CFG.as_bytes(),
            &mut notes,
        )
        .unwrap_err();
        assert!(e.to_string().contains("CDATA"), "{e}");
        // Two hostnames: which one?
        let two = CFG.replace(
            "<variable name=\"Host\">",
            "<variable name=\"SmtpHostname\">other.cz</variable><variable name=\"Host\">",
        );
        let e =
            rewrite_config(&request(Some("n.cz"), &[]), two.as_bytes(), &mut notes).unwrap_err();
        assert!(e.to_string().contains("several"), "{e}");
        // An old name given that nothing holds: a note, nothing changed.
        let (rw, new) = rewrite_config(
            &request(Some("x.cz=n.cz"), &["/var/kerio=/srv"]),
            CFG.as_bytes(),
            &mut notes,
        )
        .unwrap();
        assert!(rw.is_empty());
        assert_eq!(new, CFG.as_bytes());
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}
