//! `users.cfg`: the `User` list. mailvault needs the accounts and whether
//! each is enabled, because temporarily disabled users are not backed up.

use super::list_items;
use crate::Result;

/// A user account record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name without domain; also the mailbox directory name.
    pub name: String,
    /// Domain the user belongs to.
    pub domain: String,
    /// `Account_enabled` (absent means enabled).
    pub enabled: bool,
}

/// Reads the `User` list of `users.cfg`.
///
/// # Errors
/// Malformed XML.
pub fn users(xml: &[u8]) -> Result<Vec<User>> {
    Ok(list_items("users.cfg", xml, "User")?
        .into_iter()
        .map(|item| User {
            name: item.get("Name").unwrap_or_default().to_string(),
            domain: item.get("Domain").unwrap_or_default().to_string(),
            enabled: item.get("Account_enabled").map(str::trim) != Some("0"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::write_config;

    #[test]
    fn reads_enabled_flag() {
        let xml = write_config(&[(
            "User",
            vec![
                vec![
                    ("Name", "jan".into()),
                    ("Domain", "a.cz".into()),
                    ("Account_enabled", "1".into()),
                ],
                vec![
                    ("Name", "old".into()),
                    ("Domain", "a.cz".into()),
                    ("Account_enabled", "0".into()),
                ],
            ],
        )]);
        let u = users(xml.as_bytes()).unwrap();
        assert!(u[0].enabled);
        assert!(!u[1].enabled);
        assert_eq!(u[1].name, "old");
    }
}
