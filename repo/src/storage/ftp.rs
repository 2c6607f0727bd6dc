//! The FTP/FTPS backend: an [`ObjectStore`] over one directory of an FTP
//! server ([`FtpStore`]), with `suppaftp` (synchronous) and rustls for
//! explicit FTPS (`AUTH TLS`). It owns the FTP protocol only: a small pool of
//! logged-in control connections, passive data connections (EPSV, falling
//! back to PASV), listings (MLSD, else `LIST -a` parsing, else NLST + SIZE),
//! ranged reads (REST + RETR, closed early), uploads to a temporary name that
//! resume after a dropped connection (REST + STOR, else APPE) and are
//! published by RNFR/RNTO, and the mapping of FTP replies and TLS failures to
//! [`Error`]s that name `ftp[s]://user@host:port/dir/name` and say what to do.
//! Spooling, range readers and locks are [`Remote`](super::remote)'s; the
//! password never appears in `Debug`, messages or locations.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use suppaftp::list::{File as ListFile, ListParser};
use suppaftp::rustls;
use suppaftp::rustls::pki_types::CertificateDer;
use suppaftp::rustls::pki_types::pem::PemObject;
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, RustlsConnector, RustlsFtpStream};

use super::TEMP_PREFIX;
use super::remote::{ObjectStore, OnBytes, Retry, Upload};
use crate::error::{Error, Result};

/// How long connecting (TCP) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one read or write on a control or data connection may block.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// Idle connections kept for reuse.
const POOL_MAX: usize = 8;
/// A pooled connection idle longer than this is checked with NOOP first
/// (servers close idle sessions; vsftpd after 300 s).
const STALE_AFTER: Duration = Duration::from_secs(15);
/// Upload chunk size.
const CHUNK: usize = 256 * 1024;

/// Where and how to reach an FTP server.
#[derive(Clone)]
pub struct FtpConfig {
    /// Host name or IP address.
    pub host: String,
    /// Control port (21).
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Password (never shown: not in `Debug`, messages or locations).
    pub password: String,
    /// The directory holding the objects: absolute, or relative to the login
    /// directory.
    pub dir: String,
    /// Explicit FTPS (`AUTH TLS`) for the control and data connections.
    pub tls: bool,
    /// An extra trusted root certificate (PEM), for a server with a
    /// self-signed certificate or a private CA.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for FtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("dir", &self.dir)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

type Ftp = RustlsFtpStream;

/// One logged-in control connection.
struct Conn {
    ftp: Ftp,
    last_used: Instant,
    epsv: bool,
}

/// Why an operation on a pooled connection failed.
enum Failure {
    /// No connection could be had (already mapped).
    Connect(Error),
    /// The operation failed.
    Ftp(FtpError),
}

/// The shared state of a store and its uploads.
struct Inner {
    cfg: FtpConfig,
    location: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The directory as an absolute path (found with PWD on first login
    /// when `dir` is relative).
    base: OnceLock<String>,
    /// Whether the server has MLSD (FEAT, on first login).
    mlsd: OnceLock<bool>,
    /// Cleared once the server refuses EPSV: PASV from then on.
    epsv: AtomicBool,
    pool: Mutex<Vec<Conn>>,
    retry: Retry,
}

/// An FTP or FTPS directory as an [`ObjectStore`].
///
/// `Sync`: operations from several threads each take their own control
/// connection from a small pool (a new one is logged in when none is idle);
/// a connection that failed is dropped, never reused.
pub struct FtpStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for FtpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

impl FtpStore {
    /// A store for `cfg`. Nothing is contacted yet; the TLS setup (system
    /// roots, `ca_file`) is checked now.
    ///
    /// # Errors
    /// [`Error::Target`] when `ca_file` cannot be read or holds no
    /// certificate, or the host is empty.
    pub fn new(cfg: FtpConfig) -> Result<Self> {
        let location = location_of(&cfg);
        if cfg.host.is_empty() {
            return Err(Error::Target {
                place: location,
                message: "no host given".into(),
                hint: None,
                transient: false,
            });
        }
        let tls = if cfg.tls {
            Some(tls_config(cfg.ca_file.as_deref(), &location)?)
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                location,
                tls,
                base: OnceLock::new(),
                mlsd: OnceLock::new(),
                epsv: AtomicBool::new(true),
                pool: Mutex::new(Vec::new()),
                retry: Retry::default(),
            }),
        })
    }
}

/// `ftp[s]://user@host:port/dir`, without the password.
fn location_of(cfg: &FtpConfig) -> String {
    let scheme = if cfg.tls { "ftps" } else { "ftp" };
    let host = if cfg.host.contains(':') {
        format!("[{}]", cfg.host)
    } else {
        cfg.host.clone()
    };
    let mut user = String::new();
    for c in cfg.user.chars() {
        match c {
            '@' | ':' | '/' | '%' => user.push_str(&format!("%{:02X}", u32::from(c))),
            c => user.push(c),
        }
    }
    // As `target.rs` parses them: `/dir` relative to the login directory,
    // `//dir` absolute.
    let dir = cfg.dir.trim_end_matches('/');
    let sep = if dir.is_empty() { "" } else { "/" };
    format!("{scheme}://{user}@{host}:{}{sep}{dir}", cfg.port)
}

/// System roots (the usual CA bundle files) plus `ca_file`.
fn tls_config(ca_file: Option<&Path>, location: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let bundle = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates = bundle.into_iter().chain(
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/ca-bundle.pem",
            "/etc/ssl/cert.pem",
        ]
        .into_iter()
        .map(PathBuf::from),
    );
    for path in candidates {
        if let Ok(pem) = std::fs::read(&path) {
            let certs = CertificateDer::pem_slice_iter(&pem).filter_map(std::result::Result::ok);
            let (added, _) = roots.add_parsable_certificates(certs);
            if added > 0 {
                break;
            }
        }
    }
    let mut pinned = Vec::new();
    if let Some(ca) = ca_file {
        let bad = |message: String| {
            Error::Target {
            place: location.to_string(),
            message,
            hint: Some(
                "give with `ca=` a PEM file holding the server's certificate or the CA that signed it"
                    .into(),
            ),
            transient: false,
        }
        };
        let pem = std::fs::read(ca)
            .map_err(|e| bad(format!("cannot read CA file `{}`: {e}", ca.display())))?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| bad(format!("CA file `{}` is not PEM: {e}", ca.display())))?;
            pinned.push(cert.clone());
            roots.add(cert).map_err(|e| {
                bad(format!(
                    "CA file `{}` holds an unusable certificate: {e}",
                    ca.display()
                ))
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(bad(format!(
                "CA file `{}` holds no certificate",
                ca.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let setup = |e: String| Error::Target {
        place: location.to_string(),
        message: format!("TLS setup failed: {e}"),
        hint: None,
        transient: false,
    };
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| setup(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier { webpki, pinned }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The usual web PKI checks, except that a certificate given whole in
/// `ca_file` is trusted as itself even when it says it is a CA: that is
/// how `openssl req -x509` makes self-signed server certificates, which
/// webpki refuses as an end entity. Expiry is still checked (it comes
/// first).
#[derive(Debug)]
struct Verifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(_)))
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The reply code of a server answer, if the failure was one.
fn code(e: &FtpError) -> Option<u32> {
    match e {
        FtpError::UnexpectedResponse(r) => Some(r.status.code()),
        _ => None,
    }
}

/// Whether the control connection is still in step after `e` (the server
/// answered; nothing is half-read).
fn keeps_connection(e: &FtpError) -> bool {
    matches!(e, FtpError::UnexpectedResponse(r)
        if r.status.code() != 421 && !reply_text(r).contains("OOPS"))
}

fn reply_text(r: &suppaftp::types::Response) -> String {
    let text = String::from_utf8_lossy(&r.body);
    text.trim_end().replace("\r\n", " ").replace('\n', " ")
}

/// The rustls error inside an I/O error (a failed handshake), if any.
fn tls_error(e: &FtpError) -> Option<&rustls::Error> {
    match e {
        FtpError::ConnectionError(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

impl Inner {
    fn place(&self, name: &str) -> String {
        if name.is_empty() {
            self.location.clone()
        } else {
            format!("{}/{name}", self.location)
        }
    }

    fn target(&self, name: &str, message: String, hint: Option<String>, transient: bool) -> Error {
        Error::Target {
            place: self.place(name),
            message,
            hint,
            transient,
        }
    }

    /// Maps a failure of `what` on `name` ("" for the directory).
    fn map(&self, name: &str, what: &str, e: &FtpError) -> Error {
        let host = &self.cfg.host;
        if let Some(tls) = tls_error(e) {
            return self.tls_failure(name, tls);
        }
        match e {
            FtpError::ConnectionError(io) => {
                self.target(name, format!("{what}: connection failed: {io}"), None, true)
            }
            FtpError::SecureError(s) => self.target(
                name,
                format!("{what}: TLS with {host} failed: {s}"),
                None,
                false,
            ),
            FtpError::UnexpectedResponse(r) => {
                let c = r.status.code();
                let text = reply_text(r);
                match c {
                    421 | 425 | 426 | 450 | 451 => {
                        self.target(name, format!("{what}: the server answered `{text}`"), None, true)
                    }
                    // vsftpd's "500 OOPS: …": its session process failed
                    // (killed, out of resources); a new session may work.
                    500 if text.contains("OOPS") => {
                        self.target(name, format!("{what}: the server answered `{text}`"), None, true)
                    }
                    530 => self.target(
                        name,
                        format!("{what}: login refused: `{text}`"),
                        Some(format!(
                            "check the user name `{}` and the password in MAILVAULT_FTP_PASSWORD",
                            self.cfg.user
                        )),
                        false,
                    ),
                    452 | 552 => self.target(
                        name,
                        format!("{what}: the FTP server's disk is full (`{text}`)"),
                        Some(
                            "free space on the FTP server or raise the account's quota, then run again; nothing was left under a final name"
                                .into(),
                        ),
                        false,
                    ),
                    550 | 553 => self.target(
                        name,
                        format!("{what}: the server refused: `{text}`"),
                        Some(format!(
                            "check that the directory exists and that the FTP user `{}` may read and write in it",
                            self.cfg.user
                        )),
                        false,
                    ),
                    _ => self.target(name, format!("{what}: the server answered `{text}`"), None, false),
                }
            }
            FtpError::BadResponse => self.target(
                name,
                format!("{what}: the server sent a malformed reply"),
                None,
                true,
            ),
            other => self.target(name, format!("{what}: {other}"), None, false),
        }
    }

    fn tls_failure(&self, name: &str, e: &rustls::Error) -> Error {
        use rustls::CertificateError as C;
        let host = &self.cfg.host;
        let self_signed = |host: &str| {
            (
                format!(
                    "the TLS certificate of the FTP server {host} is not signed by a trusted authority (self-signed?)"
                ),
                "for a self-signed certificate or a private CA, give its PEM file with `ca=FILE`"
                    .to_string(),
            )
        };
        let (message, hint) = match e {
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => (
                format!("the TLS certificate of the FTP server {host} has expired ({e})"),
                "renew the server's certificate (or check this machine's clock)".to_string(),
            ),
            rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => (
                format!("the TLS certificate of the FTP server {host} is not valid yet ({e})"),
                "check the clocks of this machine and of the server".to_string(),
            ),
            // A self-signed certificate made by `openssl req -x509` says
            // CA:TRUE: webpki refuses it as "CA used as end entity".
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => self_signed(host),
            rustls::Error::InvalidCertificate(C::Other(o))
                if format!("{o:?}").contains("CaUsedAsEndEntity") =>
            {
                self_signed(host)
            }
            rustls::Error::InvalidCertificate(C::BadSignature) => (
                format!("the TLS certificate of the FTP server {host} has a bad signature ({e})"),
                "check the server's certificate chain; give its CA with `ca=FILE`".to_string(),
            ),
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => (
                format!("the TLS certificate of the FTP server is not valid for the name {host} ({e})"),
                "connect with a host name the certificate names".to_string(),
            ),
            other => (
                format!("TLS with the FTP server {host} failed: {other}"),
                "check the server's TLS setup; give its certificate with `ca=FILE` if it is self-signed"
                    .to_string(),
            ),
        };
        self.target(name, message, Some(hint), false)
    }

    /// The absolute path of object `name` (or of the directory for "").
    fn path(&self, name: &str) -> String {
        let base = self
            .base
            .get()
            .map_or(self.cfg.dir.as_str(), String::as_str);
        if name.is_empty() {
            base.to_string()
        } else if base.ends_with('/') {
            format!("{base}{name}")
        } else if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}/{name}")
        }
    }

    fn stream(addr: SocketAddr) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Logs a new control connection in.
    fn connect(&self) -> Result<Conn> {
        let fail = |e: &FtpError| self.map("", "connect", e);
        let addrs: Vec<SocketAddr> = (self.cfg.host.as_str(), self.cfg.port)
            .to_socket_addrs()
            .map_err(|e| fail(&FtpError::ConnectionError(e)))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            match Self::stream(a) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            fail(&FtpError::ConnectionError(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host")
            })))
        })?;
        let mut ftp = Ftp::connect_with_stream(tcp)
            .map_err(|e| fail(&e))?
            .passive_stream_builder(|addr| Self::stream(addr).map_err(FtpError::ConnectionError));
        // The address in a PASV reply is often a private one behind NAT: the
        // data connection goes to the control connection's peer instead.
        ftp.set_passive_nat_workaround(true);
        if let Some(tls) = &self.tls {
            ftp = ftp
                .into_secure(RustlsConnector::from(Arc::clone(tls)), &self.cfg.host)
                .map_err(|e| match code(&e) {
                    Some(c) if c != 421 => self.target(
                        "",
                        format!(
                            "the FTP server does not offer TLS (its answer to AUTH TLS: {})",
                            match &e {
                                FtpError::UnexpectedResponse(r) => reply_text(r),
                                _ => String::new(),
                            }
                        ),
                        Some("use ftp:// or enable explicit TLS on the server".into()),
                        false,
                    ),
                    _ => fail(&e),
                })?;
        }
        ftp.login(self.cfg.user.as_str(), self.cfg.password.as_str())
            .map_err(|e| self.map("", "login", &e))?;
        ftp.transfer_type(FileType::Binary)
            .map_err(|e| self.map("", "TYPE I", &e))?;
        if self.base.get().is_none() {
            let dir = self.cfg.dir.trim_end_matches('/');
            let base = if self.cfg.dir.starts_with('/') {
                if dir.is_empty() {
                    "/".into()
                } else {
                    dir.into()
                }
            } else {
                let pwd = ftp.pwd().map_err(|e| self.map("", "PWD", &e))?;
                let pwd = pwd.trim_end_matches('/');
                match dir {
                    "" | "." => {
                        if pwd.is_empty() {
                            "/".into()
                        } else {
                            pwd.into()
                        }
                    }
                    d => format!("{pwd}/{}", d.trim_start_matches("./")),
                }
            };
            let _ = self.base.set(base);
        }
        if self.mlsd.get().is_none() {
            let has = ftp
                .feat()
                .map(|f| f.keys().any(|k| k.eq_ignore_ascii_case("MLST")))
                .unwrap_or(false);
            let _ = self.mlsd.set(has);
        }
        let epsv = self.epsv.load(Ordering::Relaxed);
        ftp.set_mode(if epsv {
            Mode::ExtendedPassive
        } else {
            Mode::Passive
        });
        Ok(Conn {
            ftp,
            last_used: Instant::now(),
            epsv,
        })
    }

    /// A logged-in connection: an idle one (checked with NOOP when it has
    /// been idle a while) or a new one.
    fn take(&self) -> Result<Conn> {
        loop {
            let idle = self.pool.lock().map_or(None, |mut p| p.pop());
            let Some(mut c) = idle else {
                return self.connect();
            };
            if c.last_used.elapsed() < STALE_AFTER || c.ftp.noop().is_ok() {
                return Ok(c);
            }
        }
    }

    /// Forgets the idle connections: after one broke, the others are
    /// likely broken too (server restarted, network gone).
    fn drop_idle(&self) {
        if let Ok(mut p) = self.pool.lock() {
            p.clear();
        }
    }

    fn give_back(&self, mut c: Conn) {
        c.last_used = Instant::now();
        if let Ok(mut p) = self.pool.lock()
            && p.len() < POOL_MAX
        {
            p.push(c);
        }
    }

    /// Runs `op` on a pooled connection; the connection goes back to the
    /// pool unless the failure left it out of step. A data command refused
    /// as unknown in EPSV mode is tried once more with PASV, for good.
    fn with<T>(
        &self,
        mut op: impl FnMut(&mut Ftp, &Self) -> Result<T, FtpError>,
    ) -> Result<T, Failure> {
        let mut c = self.take().map_err(Failure::Connect)?;
        let mut r = op(&mut c.ftp, self);
        if c.epsv && matches!(r.as_ref().err().and_then(code), Some(500 | 502)) {
            self.epsv.store(false, Ordering::Relaxed);
            c.epsv = false;
            c.ftp.set_mode(Mode::Passive);
            r = op(&mut c.ftp, self);
        }
        match r {
            Ok(v) => {
                self.give_back(c);
                Ok(v)
            }
            Err(e) => {
                if keeps_connection(&e) {
                    self.give_back(c);
                } else {
                    self.drop_idle();
                }
                Err(Failure::Ftp(e))
            }
        }
    }

    /// [`Self::with`], mapping failures as `what` on `name`; a 550 is
    /// [`Error::NotFound`] when `missing` says so.
    fn run<T>(
        &self,
        name: &str,
        what: &str,
        missing: bool,
        op: impl FnMut(&mut Ftp, &Self) -> Result<T, FtpError>,
    ) -> Result<T> {
        self.with(op).map_err(|f| match f {
            Failure::Connect(e) => e,
            Failure::Ftp(e) if missing && code(&e) == Some(550) => {
                Error::NotFound(self.place(name))
            }
            Failure::Ftp(e) => self.map(name, what, &e),
        })
    }

    /// [`Self::run`] retried on transient failures.
    fn retried<T>(
        &self,
        name: &str,
        what: &str,
        missing: bool,
        mut op: impl FnMut(&mut Ftp, &Self) -> Result<T, FtpError>,
    ) -> Result<T> {
        self.retry.run(|_| self.run(name, what, missing, &mut op))
    }

    fn size(&self, name: &str) -> Result<u64> {
        let path = self.path_checked(name)?;
        self.retried(name, "SIZE", true, |f, _| f.size(&path).map(|n| n as u64))
    }

    /// The path of a valid object name.
    fn path_checked(&self, name: &str) -> Result<String> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.chars().any(char::is_control)
        {
            return Err(self.target(name, "not a valid object name".into(), None, false));
        }
        if self.base.get().is_none() {
            // The first login sets the base directory.
            let c = self.take()?;
            self.give_back(c);
        }
        Ok(self.path(name))
    }

    fn base(&self) -> Result<String> {
        if self.base.get().is_none() {
            let c = self.take()?;
            self.give_back(c);
        }
        Ok(self.path(""))
    }

    fn dir_exists(&self, dir: &str) -> Result<bool> {
        let dir = dir.to_string();
        self.retried("", "CWD", false, |f, _| match f.cwd(&dir) {
            Ok(()) => Ok(true),
            Err(e) if code(&e) == Some(550) => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path_checked(name)?;
        match self.retried(name, "DELE", false, |f, _| f.rm(&path)) {
            Err(e @ Error::Target { .. }) => {
                // vsftpd answers 550 both for a missing file and a refusal.
                match self.size(name) {
                    Err(nf @ Error::NotFound(_)) => Err(nf),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    fn list(&self) -> Result<Vec<(String, u64)>> {
        let base = self.base()?;
        if !self.dir_exists(&base)? {
            return Err(Error::NotFound(self.location.clone()));
        }
        if self.mlsd.get() == Some(&true) {
            let lines = self.retried("", "MLSD", true, |f, _| f.mlsd(Some(&base)))?;
            let mut out = Vec::new();
            for line in &lines {
                if let Ok(file) = ListParser::parse_mlsd(line)
                    && file.is_file()
                    && valid_listed(file.name())
                {
                    out.push((file.name().to_string(), file.size() as u64));
                }
            }
            return Ok(out);
        }
        // LIST -a in the directory (dot files are hidden without -a, and
        // temporaries start with a dot); any line that does not parse means
        // a format we do not know: names from NLST and sizes from SIZE.
        let lines = self.retried("", "LIST", true, |f, _| {
            f.cwd(&base)?;
            match f.list(Some("-a")) {
                Err(e) if matches!(code(&e), Some(500 | 501 | 550)) => f.list(None),
                other => other,
            }
        })?;
        let mut out = Vec::new();
        let mut unknown = false;
        for line in &lines {
            if line.starts_with("total ") {
                continue;
            }
            match parse_list_line(line) {
                Some(file) => {
                    if file.is_file() && valid_listed(file.name()) {
                        out.push((file.name().to_string(), file.size() as u64));
                    }
                }
                None => unknown = true,
            }
        }
        if !unknown {
            return Ok(out);
        }
        let names = self.retried("", "NLST", true, |f, _| {
            f.cwd(&base)?;
            match f.nlst(Some("-a")) {
                Err(e) if matches!(code(&e), Some(500 | 501 | 550)) => f.nlst(None),
                other => other,
            }
        })?;
        let mut out = Vec::new();
        for n in names {
            let n = n.rsplit('/').next().unwrap_or(&n).to_string();
            if !valid_listed(&n) {
                continue;
            }
            match self.size(&n) {
                Ok(s) => out.push((n, s)),
                // Directories (and what vanished meanwhile) have no size.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

fn valid_listed(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

fn parse_list_line(line: &str) -> Option<ListFile> {
    ListParser::parse_posix(line)
        .or_else(|_| ListParser::parse_dos(line))
        .ok()
}

impl ObjectStore for FtpStore {
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn exists(&self) -> Result<bool> {
        let base = self.inner.base()?;
        self.inner.dir_exists(&base)
    }

    fn create_root(&self) -> Result<bool> {
        let inner = &self.inner;
        let base = inner.base()?;
        if inner.dir_exists(&base)? {
            return Ok(false);
        }
        let mut prefix = String::new();
        for part in base.split('/').filter(|p| !p.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            if inner.dir_exists(&prefix)? {
                continue;
            }
            let p = prefix.clone();
            match inner.retried("", "MKD", false, |f, _| f.mkdir(&p)) {
                Ok(()) => {}
                // Made by someone else meanwhile?
                Err(e) if !inner.dir_exists(&prefix)? => return Err(e),
                Err(_) => {}
            }
        }
        Ok(true)
    }

    fn remove_root_if_empty(&self) -> Result<()> {
        let inner = &self.inner;
        match inner.list() {
            Ok(l) if l.is_empty() => {}
            Ok(_) | Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        let base = inner.base()?;
        match inner.retried("", "RMD", false, |f, _| {
            // Out of the directory first: some servers refuse to remove
            // the working directory.
            let _ = f.cwd("/");
            f.rmdir(&base)
        }) {
            Ok(()) => Ok(()),
            // Not empty after all (a directory in it, or a new object), or
            // gone already.
            Err(_) if !inner.dir_exists(&base)? || !inner.list()?.is_empty() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> Result<Vec<(String, u64)>> {
        self.inner.list()
    }

    fn size(&self, name: &str) -> Result<u64> {
        self.inner.size(name)
    }

    fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let inner = &self.inner;
        let path = inner.path_checked(name)?;
        if len == 0 {
            inner.size(name)?;
            return Ok(Vec::new());
        }
        let start = usize::try_from(offset)
            .map_err(|_| inner.target(name, format!("offset {offset} too large"), None, false))?;
        inner.retried(name, "RETR", true, |f, _| {
            f.resume_transfer(start)?;
            let mut stream = f.retr_as_stream(&path)?;
            let cap = usize::try_from(len.min(8 << 20)).unwrap_or(8 << 20);
            let mut buf = Vec::with_capacity(cap);
            let read = (&mut stream).take(len).read_to_end(&mut buf);
            // Closing the data connection before the end makes the server
            // answer 426 or 451 (or 226 when it had sent everything): the
            // control connection stays in step either way.
            let finished = stream.finish();
            read.map_err(FtpError::ConnectionError)?;
            match finished {
                Ok(()) => Ok(buf),
                Err(e) if buf.len() as u64 == len && matches!(code(&e), Some(426 | 451)) => Ok(buf),
                Err(e) => Err(e),
            }
        })
    }

    fn put_small(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let inner = &self.inner;
        let path = inner.path_checked(name)?;
        // Written beside and renamed over the old one (rename(2) on the
        // server replaces in one step): a lock object rewritten in place
        // would be empty for a moment, and another run reading it then
        // would not see the lock.
        let part = format!("{name}.new");
        let part_path = inner.path_checked(&part)?;
        inner.retried(name, "STOR", false, |f, _| {
            let mut s = f.put_with_stream(&part_path)?;
            s.write_all(bytes).map_err(FtpError::ConnectionError)?;
            s.finish()
        })?;
        inner.retried(name, "RNFR/RNTO", false, |f, _| f.rename(&part_path, &path))
    }

    fn begin(&self, name: &str, len: u64) -> Result<Box<dyn Upload>> {
        let temp = format!("{TEMP_PREFIX}{name}");
        self.inner.path_checked(name)?;
        self.inner.path_checked(&temp)?;
        Ok(Box::new(FtpUpload {
            inner: Arc::clone(&self.inner),
            name: name.to_string(),
            temp,
            len,
            done: false,
        }))
    }

    fn remove(&self, name: &str) -> Result<()> {
        self.inner.delete(name)
    }
}

/// An upload to `.mailvault-tmp-<name>`, renamed to `<name>` by
/// [`Upload::publish`].
struct FtpUpload {
    inner: Arc<Inner>,
    name: String,
    temp: String,
    len: u64,
    /// Published or aborted: nothing left to clean up.
    done: bool,
}

impl FtpUpload {
    /// One STOR (or REST + STOR / APPE from `offset`) of the rest of `file`.
    fn send_from(
        &self,
        file: &mut File,
        offset: u64,
        append: bool,
        sent: &mut u64,
        reported: &mut u64,
        progress: OnBytes<'_>,
    ) -> Result<(), FtpError> {
        let inner = &self.inner;
        let path = inner.path(&self.temp);
        let mut c = inner.take().map_err(|_| {
            FtpError::ConnectionError(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "cannot connect",
            ))
        })?;
        let r = (|| {
            file.seek(SeekFrom::Start(offset))
                .map_err(FtpError::ConnectionError)?;
            let mut stream = if offset > 0 && append {
                c.ftp.append_with_stream(&path)?
            } else {
                let start = usize::try_from(offset).map_err(|_| FtpError::BadResponse)?;
                c.ftp.resume_transfer(start)?;
                c.ftp.put_with_stream(&path)?
            };
            let mut buf = vec![0u8; CHUNK];
            let mut left = self.len - offset;
            *sent = offset;
            while left > 0 {
                let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                let n = file
                    .read(&mut buf[..want])
                    .map_err(FtpError::ConnectionError)?;
                if n == 0 {
                    return Err(FtpError::ConnectionError(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the local file is shorter than the upload",
                    )));
                }
                stream
                    .write_all(&buf[..n])
                    .map_err(FtpError::ConnectionError)?;
                left -= n as u64;
                *sent += n as u64;
                if *sent > *reported {
                    progress(*sent - *reported);
                    *reported = *sent;
                }
            }
            stream.finish()
        })();
        match &r {
            Ok(()) => inner.give_back(c),
            Err(e) if keeps_connection(e) => inner.give_back(c),
            Err(_) => inner.drop_idle(),
        }
        r
    }

    fn remove_temp(&self) {
        let path = self.inner.path(&self.temp);
        let _ = self
            .inner
            .run(&self.temp, "DELE", false, |f, _| f.rm(&path));
    }
}

impl Upload for FtpUpload {
    fn send(&mut self, file: &mut File, len: u64, progress: OnBytes<'_>) -> Result<()> {
        if len != self.len {
            return Err(self.inner.target(
                &self.name,
                format!("upload announced as {} bytes, sent with {len}", self.len),
                None,
                false,
            ));
        }
        let inner = Arc::clone(&self.inner);
        let retry = inner.retry;
        let mut offset = 0u64;
        let mut append = false;
        let mut failures = 0u32;
        let mut reported = 0u64;
        loop {
            let mut sent = offset;
            let r = self.send_from(file, offset, append, &mut sent, &mut reported, progress);
            let e = match r {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            // REST before STOR refused: append instead.
            if offset > 0 && !append && matches!(code(&e), Some(500 | 501 | 502 | 504)) {
                append = true;
                continue;
            }
            let err = inner.map(&self.temp, "STOR", &e);
            if !super::remote::is_transient(&err) {
                return Err(err);
            }
            // Consecutive failures without progress count against the
            // attempts: a long upload over a flaky link goes on while it
            // moves forward.
            let before = offset;
            std::thread::sleep(retry.base * 2u32.saturating_pow(failures.min(6)));
            let path = inner.path(&self.temp);
            offset = match inner.run(&self.temp, "SIZE", true, |f, _| f.size(&path)) {
                Ok(n) => (n as u64).min(len),
                Err(Error::NotFound(_)) => 0,
                Err(e2) if super::remote::is_transient(&e2) => before,
                Err(e2) => return Err(e2),
            };
            if offset > before {
                failures = 0;
            } else {
                failures += 1;
            }
            if failures + 1 >= retry.attempts {
                return Err(err);
            }
        }
    }

    fn publish(mut self: Box<Self>) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let have = inner.size(&self.temp)?;
        if have != self.len {
            return Err(inner.target(
                &self.temp,
                format!(
                    "the uploaded temporary holds {have} bytes, {} were sent",
                    self.len
                ),
                Some("run again: the upload is redone".into()),
                false,
            ));
        }
        // FTP has no rename that refuses to replace (vsftpd's RNTO
        // replaces): look first. Runs hold the repository's exclusive lock,
        // so nobody else writes meanwhile.
        match inner.size(&self.name) {
            Ok(_) => return Err(Error::AlreadyExists(inner.place(&self.name))),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let from = inner.path(&self.temp);
        let to = inner.path(&self.name);
        inner.retried(&self.name, "RNFR/RNTO", false, |f, _| f.rename(&from, &to))?;
        self.done = true;
        Ok(())
    }

    fn abort(mut self: Box<Self>) {
        self.remove_temp();
        self.done = true;
    }
}

impl Drop for FtpUpload {
    fn drop(&mut self) {
        if !self.done {
            self.remove_temp();
        }
    }
}
