//! Where a repository lives, as the admin writes it: a path or `file:///dir`,
//! `s3://bucket/prefix?endpoint=…&region=…&path_style=true`,
//! `ftp://user@host:port/dir` or `ftps://…`. Parsing, credentials (from the
//! environment or a 0600 credentials file, never required on the command
//! line), redaction wherever a location is printed, and the repository
//! segments of a hosting server (`_panel`, `_node_<id>`, `server`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A parsed target location (no credentials resolved yet).
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// A local directory.
    Local(PathBuf),
    /// An S3-compatible bucket and prefix.
    S3(S3Location),
    /// An FTP or FTPS server directory.
    Ftp(FtpLocation),
}

/// `s3://bucket/prefix?...`.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The prefix inside it, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `endpoint=` (a URL; none means AWS).
    pub endpoint: Option<String>,
    /// `region=` (default `us-east-1`).
    pub region: String,
    /// `path_style=true`: bucket in the path, not the host name.
    pub path_style: bool,
    /// `credentials=FILE`: a 0600 file with `aws_access_key_id` and
    /// `aws_secret_access_key`.
    pub credentials: Option<PathBuf>,
    /// `access_key:secret@` given in the URL itself (discouraged; redacted).
    pub inline: Option<(String, String)>,
}

/// `ftp://user@host:port/dir` or `ftps://...`.
#[derive(Clone, PartialEq, Eq)]
pub struct FtpLocation {
    /// Explicit TLS (`ftps://`).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (default 21).
    pub port: u16,
    /// Login name (default `anonymous`).
    pub user: String,
    /// The directory (as in the URL path, without the leading `/` meaning
    /// the login directory; `//abs` or `%2F` for an absolute one).
    pub dir: String,
    /// `credentials=FILE`: a 0600 file with `password = ...`.
    pub credentials: Option<PathBuf>,
    /// `ca=FILE`: an extra trusted root certificate (PEM), for a
    /// self-signed server.
    pub ca_file: Option<PathBuf>,
    /// A password given in the URL itself (discouraged; redacted).
    pub inline_password: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl std::fmt::Display for Target {
    /// The location with every credential removed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::S3(s) => {
                write!(f, "s3://{}", s.bucket)?;
                if !s.prefix.is_empty() {
                    write!(f, "/{}", s.prefix)?;
                }
                let mut q = Vec::new();
                if let Some(e) = &s.endpoint {
                    q.push(format!("endpoint={e}"));
                }
                if s.region != DEFAULT_REGION {
                    q.push(format!("region={}", s.region));
                }
                if s.path_style {
                    q.push("path_style=true".into());
                }
                if !q.is_empty() {
                    write!(f, "?{}", q.join("&"))?;
                }
                Ok(())
            }
            Self::Ftp(l) => {
                let scheme = if l.tls { "ftps" } else { "ftp" };
                let host = if l.host.contains(':') {
                    format!("[{}]", l.host)
                } else {
                    l.host.clone()
                };
                write!(f, "{scheme}://{}@{host}:{}/{}", l.user, l.port, l.dir)
            }
        }
    }
}

const DEFAULT_REGION: &str = "us-east-1";

fn bad(what: &str, why: impl std::fmt::Display) -> Error {
    Error::Request(format!(
        "`{}` is not a target: {why} (give a directory, s3://bucket/prefix?endpoint=URL, or ftp[s]://user@host:port/dir)",
        redact_text(what)
    ))
}

/// A location string with anything between `://` and `@` replaced, for
/// error messages about a string that did not parse.
#[must_use]
pub fn redact_text(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://***{}", &s[..a], &s[b..]),
        _ => s.to_string(),
    }
}

impl Target {
    /// Parses a location: anything without a scheme is a local path.
    ///
    /// # Errors
    /// [`Error::Request`] naming what is wrong (credentials redacted).
    pub fn parse(s: &str) -> Result<Self> {
        let Some((scheme, _)) = s.split_once("://") else {
            return Ok(Self::Local(PathBuf::from(s)));
        };
        let url = url::Url::parse(s).map_err(|e| bad(s, e))?;
        // Percent-decoding only (RFC 3986), not form data: a `+` in a file
        // name or endpoint stays a `+`.
        let pct = |v: &str| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        let query: Vec<(String, String)> = url
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (pct(k), pct(v))
            })
            .collect();
        let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
        let known = |allowed: &[&str]| -> Result<()> {
            match query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
                Some((k, _)) => Err(bad(s, format!("unknown option `{k}`"))),
                None => Ok(()),
            }
        };
        // Percent-decoding (RFC 3986): a `+` in a password or path is a
        // plus, not a space as in form data.
        let decode = |v: &str| -> String {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        match scheme {
            "file" => {
                known(&[])?;
                let path = url
                    .to_file_path()
                    .map_err(|()| bad(s, "not a local path"))?;
                Ok(Self::Local(path))
            }
            "s3" => {
                known(&["endpoint", "region", "path_style", "credentials"])?;
                let bucket = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad(s, "no bucket"))?
                    .to_string();
                let inline = (!url.username().is_empty()).then(|| {
                    (
                        decode(url.username()),
                        decode(url.password().unwrap_or_default()),
                    )
                });
                let path_style = match get("path_style").as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(v) => return Err(bad(s, format!("path_style={v}: use true or false"))),
                };
                Ok(Self::S3(S3Location {
                    bucket,
                    prefix: decode(url.path()).trim_matches('/').to_string(),
                    endpoint: get("endpoint"),
                    region: get("region").unwrap_or_else(|| DEFAULT_REGION.into()),
                    path_style,
                    credentials: get("credentials").map(PathBuf::from),
                    inline,
                }))
            }
            "ftp" | "ftps" => {
                known(&["credentials", "ca"])?;
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad(s, "no host"))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let user = if url.username().is_empty() {
                    "anonymous".to_string()
                } else {
                    decode(url.username())
                };
                let path = decode(url.path());
                let dir = path
                    .strip_prefix('/')
                    .unwrap_or(&path)
                    .trim_end_matches('/');
                Ok(Self::Ftp(FtpLocation {
                    tls: scheme == "ftps",
                    host,
                    port: url.port().unwrap_or(21),
                    user,
                    dir: dir.to_string(),
                    credentials: get("credentials").map(PathBuf::from),
                    ca_file: get("ca").map(PathBuf::from),
                    inline_password: url.password().map(decode),
                }))
            }
            other => Err(bad(s, format!("unknown scheme `{other}`"))),
        }
    }

    /// Whether the repository is on this machine.
    #[must_use]
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local(_))
    }

    /// The local directory, for a local target.
    #[must_use]
    pub fn local_dir(&self) -> Option<&Path> {
        match self {
            Self::Local(p) => Some(p),
            _ => None,
        }
    }

    /// The same target one level down: `<prefix>/<name>` (segments of a
    /// hosting server's repository: `_panel`, `_node_<id>`, `server`).
    ///
    /// # Errors
    /// `name` is not a single path component.
    pub fn segment(&self, name: &str) -> Result<Self> {
        if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
            return Err(Error::Request(format!("`{name}` is not a segment name")));
        }
        let join = |p: &str| {
            if p.is_empty() {
                name.to_string()
            } else {
                format!("{}/{name}", p.trim_end_matches('/'))
            }
        };
        let mut t = self.clone();
        match &mut t {
            Self::Local(p) => p.push(name),
            Self::S3(s) => s.prefix = join(&s.prefix),
            Self::Ftp(f) => f.dir = join(&f.dir),
        }
        Ok(t)
    }
}

/// Segment of a panel backup.
pub const PANEL_SEGMENT: &str = "_panel";
/// Segment of customer data.
pub const SERVER_SEGMENT: &str = "server";

/// Segment of node `id`'s backup.
#[must_use]
pub fn node_segment(id: u32) -> String {
    format!("_node_{id}")
}

/// Reads `key = value` (or `key: value`) lines of a credentials file that
/// only its owner may read; `[section]` lines and `#` comments are skipped,
/// so an AWS shared credentials file with one profile works as it is.
///
/// # Errors
/// [`Error::Key`]-like refusals as [`Error::Request`]: missing, unreadable,
/// readable by group or others.
pub fn read_credentials(path: &Path) -> Result<Vec<(String, String)>> {
    use std::os::unix::fs::MetadataExt as _;
    let place = format!("credentials file `{}`", path.display());
    let meta = std::fs::metadata(path).map_err(Error::io("cannot read", place.clone()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(Error::Request(format!(
            "{place} is readable by others (mode {:o}): run `chmod 600 {}`",
            meta.mode() & 0o777,
            path.display()
        )));
    }
    if meta.len() > 64 * 1024 {
        return Err(Error::Request(format!("{place} is larger than 64 KiB")));
    }
    let text = std::fs::read_to_string(path).map_err(Error::io("cannot read", place))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| {
            let (k, v) = l.split_once('=').or_else(|| l.split_once(':'))?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect())
}

fn credential(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Environment variable naming a credentials file for any target.
pub const CREDENTIALS_ENV: &str = "MAILVAULT_CREDENTIALS";

/// `key = value` pairs of a credentials file.
type Credentials = Vec<(String, String)>;

/// The credentials file a location names (`credentials=FILE`), else the one
/// `MAILVAULT_CREDENTIALS` names, read; `None` when there is neither.
fn file_credentials(given: Option<&Path>) -> Result<Option<(PathBuf, Credentials)>> {
    let Some(file) = given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CREDENTIALS_ENV).map(PathBuf::from))
    else {
        return Ok(None);
    };
    let pairs = read_credentials(&file)?;
    Ok(Some((file, pairs)))
}

impl S3Location {
    /// The access key and secret: from the URL, else `credentials=FILE` or
    /// `MAILVAULT_CREDENTIALS`, else `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY`.
    ///
    /// # Errors
    /// None found, or an unusable credentials file.
    pub fn keys(&self) -> Result<(String, String)> {
        if let Some(k) = &self.inline {
            return Ok(k.clone());
        }
        if let Some((file, pairs)) = file_credentials(self.credentials.as_deref())? {
            if let (Some(a), Some(s)) = (
                credential(&pairs, "aws_access_key_id"),
                credential(&pairs, "aws_secret_access_key"),
            ) {
                return Ok((a, s));
            }
            return Err(Error::Request(format!(
                "credentials file `{}` has no aws_access_key_id and aws_secret_access_key",
                file.display()
            )));
        }
        match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(a), Ok(s)) if !a.is_empty() => Ok((a, s)),
            _ => Err(Error::Request(format!(
                "no credentials for s3://{}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give a 0600 credentials file (credentials=FILE in the URL or {CREDENTIALS_ENV})",
                self.bucket
            ))),
        }
    }

    /// The S3 configuration this location names, with its keys (from the
    /// URL, a credentials file or the environment).
    ///
    /// # Errors
    /// No credentials found, or an unusable credentials file.
    pub fn config(&self) -> Result<crate::storage::s3::S3Config> {
        let (access_key, secret_key) = self.keys()?;
        Ok(crate::storage::s3::S3Config {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            access_key,
            secret_key,
            part_size: None,
        })
    }
}

impl FtpLocation {
    /// The password: from the URL, else `credentials=FILE` or
    /// `MAILVAULT_CREDENTIALS` (`password = ...`), else
    /// `MAILVAULT_FTP_PASSWORD`; anonymous logins need none.
    ///
    /// # Errors
    /// None found for a named user, or an unusable credentials file.
    pub fn password(&self) -> Result<String> {
        if let Some(p) = &self.inline_password {
            return Ok(p.clone());
        }
        if let Some((file, pairs)) = file_credentials(self.credentials.as_deref())? {
            return credential(&pairs, "password").ok_or_else(|| {
                Error::Request(format!(
                    "credentials file `{}` has no `password = ...` line",
                    file.display()
                ))
            });
        }
        if let Ok(p) = std::env::var("MAILVAULT_FTP_PASSWORD") {
            return Ok(p);
        }
        if self.user == "anonymous" {
            return Ok("mailvault@".into());
        }
        Err(Error::Request(format!(
            "no password for {}@{}: set MAILVAULT_FTP_PASSWORD or give a 0600 credentials file (credentials=FILE in the URL or {CREDENTIALS_ENV})",
            self.user, self.host
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_print_without_credentials() {
        let t = Target::parse("s3://AKIA:sec%2Fret@bkt/a/b/?endpoint=http://127.0.0.1:9000&region=eu-1&path_style=true").unwrap();
        let Target::S3(s) = &t else { panic!() };
        assert_eq!(s.bucket, "bkt");
        assert_eq!(s.prefix, "a/b");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.path_style);
        assert_eq!(s.keys().unwrap(), ("AKIA".into(), "sec/ret".into()));
        let shown = t.to_string();
        assert_eq!(
            shown,
            "s3://bkt/a/b?endpoint=http://127.0.0.1:9000&region=eu-1&path_style=true"
        );
        assert!(!format!("{t:?}").contains("sec"));

        let Target::S3(sp) =
            Target::parse("s3://b/my%20backups/a+b?credentials=/tmp/c+d.cred").unwrap()
        else {
            panic!()
        };
        assert_eq!(sp.prefix, "my backups/a+b");
        assert_eq!(sp.credentials.as_deref(), Some(Path::new("/tmp/c+d.cred")));
        let plus = Target::parse("ftp://u:Rev7+pass%2Fword@h/a+b").unwrap();
        let Target::Ftp(p) = &plus else { panic!() };
        assert_eq!(p.password().unwrap(), "Rev7+pass/word", "+ is a plus");
        assert_eq!(p.dir, "a+b");
        let f = Target::parse("ftps://bob:pw@[::1]:2121/backups/kerio/?ca=/etc/ca.pem").unwrap();
        let Target::Ftp(l) = &f else { panic!() };
        assert!(l.tls);
        assert_eq!(
            (l.host.as_str(), l.port, l.user.as_str()),
            ("::1", 2121, "bob")
        );
        assert_eq!(l.dir, "backups/kerio");
        assert_eq!(l.password().unwrap(), "pw");
        assert_eq!(f.to_string(), "ftps://bob@[::1]:2121/backups/kerio");
        assert_eq!(
            redact_text("ftp://bob:pw@host/x"),
            "ftp://***@host/x",
            "unparsed strings are redacted too"
        );

        assert_eq!(
            Target::parse("/mnt/backup").unwrap(),
            Target::Local("/mnt/backup".into())
        );
        assert_eq!(
            Target::parse("file:///mnt/backup").unwrap(),
            Target::Local("/mnt/backup".into())
        );
        for badly in [
            "s3:///prefix",
            "s3://b/p?path_style=maybe",
            "s3://b/p?endpiont=x",
            "gopher://x/y",
            "ftp://",
        ] {
            assert!(Target::parse(badly).is_err(), "{badly}");
        }
        let err = Target::parse("gopher://u:secret@x/")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn config_from_a_target_url() {
        let Target::S3(loc) = Target::parse(
            "s3://AK:sec%2Fret@bkt/a/b/?endpoint=http://127.0.0.1:9000&region=eu-1&path_style=true",
        )
        .unwrap() else {
            panic!("not an s3 target")
        };
        let cfg = loc.config().unwrap();
        assert_eq!(
            (
                cfg.bucket.as_str(),
                cfg.prefix.as_str(),
                cfg.region.as_str()
            ),
            ("bkt", "a/b", "eu-1")
        );
        assert!(cfg.path_style);
        assert_eq!(
            (cfg.access_key.as_str(), cfg.secret_key.as_str()),
            ("AK", "sec/ret")
        );
        let store = crate::storage::s3::S3Store::new(cfg).unwrap();
        use crate::storage::remote::ObjectStore as _;
        assert_eq!(
            store.location(),
            "s3://bkt/a/b?endpoint=http://127.0.0.1:9000&region=eu-1&path_style=true"
        );
    }

    #[test]
    fn segments_go_one_level_down() {
        let t = Target::parse("s3://b?endpoint=http://h").unwrap();
        assert_eq!(
            t.segment(PANEL_SEGMENT).unwrap().to_string(),
            "s3://b/_panel?endpoint=http://h"
        );
        let f = Target::parse("ftp://u@h/d").unwrap();
        assert_eq!(
            f.segment(&node_segment(3)).unwrap().to_string(),
            "ftp://u@h:21/d/_node_3"
        );
        assert!(f.segment("../x").is_err());
        assert_eq!(
            Target::parse("/m")
                .unwrap()
                .segment(SERVER_SEGMENT)
                .unwrap(),
            Target::Local("/m/server".into())
        );
    }

    #[test]
    fn credentials_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("creds");
        std::fs::write(
            &p,
            "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\npassword: pw\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_credentials(&p).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let url = format!("s3://b/p?credentials={}", p.display());
        let Target::S3(s) = Target::parse(&url).unwrap() else {
            panic!()
        };
        assert_eq!(s.keys().unwrap(), ("AK".into(), "SK".into()));
        let url = format!("ftp://u@h/d?credentials={}", p.display());
        let Target::Ftp(f) = Target::parse(&url).unwrap() else {
            panic!()
        };
        assert_eq!(f.password().unwrap(), "pw");
    }
}

/// How [`Target::open`] makes the storage.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Local directory where volumes are spooled before upload (default:
    /// `MAILVAULT_SPOOL_DIR` or the system's temporary directory).
    pub spool: Option<PathBuf>,
    /// Called with bytes sent as uploads go out.
    pub on_upload: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The storage of this target (credentials resolved now). Nothing is
    /// contacted yet.
    ///
    /// # Errors
    /// Missing credentials; a backend that cannot be set up.
    pub fn open(&self, opts: &OpenOptions) -> Result<std::sync::Arc<dyn crate::storage::Storage>> {
        use crate::storage::remote::{ObjectStore, Remote};
        fn remote<O: ObjectStore + 'static>(
            store: O,
            opts: &OpenOptions,
        ) -> std::sync::Arc<dyn crate::storage::Storage> {
            let mut r = Remote::new(store);
            if let Some(s) = &opts.spool {
                r = r.with_spool(s);
            }
            if let Some(p) = &opts.on_upload {
                r = r.with_progress(std::sync::Arc::clone(p));
            }
            std::sync::Arc::new(r)
        }
        match self {
            Self::Local(p) => Ok(std::sync::Arc::new(crate::storage::LocalDir::new(p))),
            Self::Ftp(l) => {
                let store = crate::storage::ftp::FtpStore::new(crate::storage::ftp::FtpConfig {
                    host: l.host.clone(),
                    port: l.port,
                    user: l.user.clone(),
                    password: l.password()?,
                    dir: l.dir.clone(),
                    tls: l.tls,
                    ca_file: l.ca_file.clone(),
                })?;
                Ok(remote(store, opts))
            }
            Self::S3(l) => {
                let store = crate::storage::s3::S3Store::new(l.config()?)?;
                Ok(remote(store, opts))
            }
        }
    }
}

/// Opens a location given by the admin (a directory or a target URL);
/// with a key file, everything written there is encrypted and everything
/// read is authenticated. Without one, a repository that holds encrypted
/// backups is refused (its archives would look like foreign files).
///
/// # Errors
/// An unparsable location, missing credentials, an unusable key file, or
/// encrypted backups and no key.
pub fn open_location(
    location: &str,
    key_file: Option<&Path>,
    opts: &OpenOptions,
) -> Result<std::sync::Arc<dyn crate::storage::Storage>> {
    let target = Target::parse(location)?;
    let storage = target.open(opts)?;
    if let Some(k) = key_file {
        let key = crate::crypt::Key::load(k)?;
        let spool = opts
            .spool
            .clone()
            .unwrap_or_else(crate::storage::remote::default_spool);
        let encrypted = crate::crypt::Encrypted::new(storage, key, spool);
        encrypted.check_key()?;
        return Ok(std::sync::Arc::new(encrypted));
    }
    // A missing repository holds nothing; an unreachable one fails later
    // with its own error.
    if let Ok(names) = storage.list()
        && let Some(enc) = names
            .iter()
            .find(|n| n.ends_with(crate::crypt::storage::SUFFIX) && !n.starts_with('.'))
    {
        return Err(Error::Request(format!(
            "{target} holds encrypted backups ({enc}): give their key with --key FILE or MAILVAULT_KEY_FILE"
        )));
    }
    Ok(storage)
}
