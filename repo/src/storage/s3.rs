//! [`S3Store`]: an [`ObjectStore`] on an S3-compatible server (AWS, or any
//! endpoint such as MinIO, Ceph or s3s-fs, path-style or virtual-hosted),
//! through `rust-s3` in sync mode (no async runtime). It owns the S3 side
//! only: object names under a prefix, ranged reads, multipart uploads that
//! stay invisible until completed, and the mapping of S3's answers to
//! [`Error`] with hints. It must not know about backups, spooling or locks
//! ([`Remote`](super::remote) does that once for every network backend),
//! and it never puts a credential into a message, a location or `Debug`.
//!
//! The repository is the prefix. S3 has no directories, so a prefix exists
//! when something is under it; [`ObjectStore::create_root`] marks a new one
//! with an empty `.mailvault-root` object (never listed) and
//! [`ObjectStore::remove_root_if_empty`] removes that mark again, so a
//! repository behaves as a local directory does. An empty prefix is the
//! bucket's top level, which exists with the bucket. Buckets are the
//! admin's: a missing one is an error naming it, never created.
//!
//! An upload larger than one part is a multipart upload from
//! [`ObjectStore::begin`] on; beside it a small marker object
//! `.mailvault-tmp-<name>` holds the upload id, so an interrupted upload is
//! listed as a temporary (and aborted by removing that name) even on
//! servers without ListMultipartUploads; where the server has it, unfinished
//! uploads without a marker are listed too.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;

use s3::bucket::Bucket;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::region::Region;
use s3::serde_types::Part;

use super::TEMP_PREFIX;
use super::remote::{LOCK_PREFIX, ObjectStore, OnBytes, Retry, Upload};
use crate::error::{Error, Result};

const MIB: u64 = 1024 * 1024;
/// The smallest part this store uses (S3's own minimum is 5 MiB).
const MIN_PART: u64 = 8 * MIB;
/// S3 allows 10,000 parts; staying well below leaves room for rounding.
const MAX_PARTS: u64 = 9_000;
/// S3's minimum part size, the floor of a test override.
const S3_MIN_PART: u64 = 5 * MIB;
const CONTENT_TYPE: &str = "application/octet-stream";
/// Marks a prefix made by `create_root` (S3 has no empty directories).
const ROOT_MARKER: &str = ".mailvault-root";

/// What is at the store's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    /// The bucket does not exist.
    NoBucket,
    /// The bucket exists, nothing is under the prefix.
    Empty,
    /// Something is under the prefix (or the prefix is the bucket's top).
    Present,
}

/// Where and how to reach a bucket. `Debug` never shows the secret key.
#[derive(Clone, Default)]
pub struct S3Config {
    /// The bucket (must exist: mailvault never creates buckets).
    pub bucket: String,
    /// Objects are `<prefix>/<name>`; empty for the bucket's top level.
    /// Leading and trailing `/` are ignored.
    pub prefix: String,
    /// A custom endpoint (`http://127.0.0.1:9000`); `None` is AWS.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when empty).
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), which most
    /// self-hosted servers need; otherwise virtual-hosted (`bucket.endpoint`).
    pub path_style: bool,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// Part size of multipart uploads; `None` picks one from the size (at
    /// least 8 MiB, at most 9,000 parts). Tests set a small one; values
    /// below S3's 5 MiB minimum are raised to it.
    pub part_size: Option<u64>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// An S3 bucket (and prefix) as an [`ObjectStore`].
pub struct S3Store {
    inner: Arc<Inner>,
}

/// What uploads share with their store.
struct Inner {
    bucket: Box<Bucket>,
    bucket_name: String,
    /// Normalised: no leading or trailing `/`.
    prefix: String,
    /// `?endpoint=…&path_style=true` as locations print it.
    query: String,
    part_size: Option<u64>,
    retry: Retry,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// A store for `cfg`. Nothing is sent yet.
    ///
    /// # Errors
    /// [`Error::Target`] for a configuration `rust-s3` refuses (no bucket,
    /// a malformed region or endpoint).
    pub fn new(cfg: S3Config) -> Result<Self> {
        // Transient failures are retried here, with `Retry`'s schedule, part
        // by part; the library's own retry (sleeping 1 s, 4 s, ...) on top
        // would multiply the waits.
        s3::set_retries(0);
        let prefix = cfg.prefix.trim_matches('/').to_owned();
        let endpoint = cfg
            .endpoint
            .as_deref()
            .map(|e| e.trim_end_matches('/').to_owned())
            .filter(|e| !e.is_empty());
        let query = location_query(endpoint.as_deref(), &cfg.region, cfg.path_style);
        let place = root_location(&cfg.bucket, &prefix, &query);
        let refused = |message: String| {
            Error::Target {
            place: place.clone(),
            message,
            hint: Some("give a bucket name and, for a server other than AWS, its endpoint URL (http://host:port)".into()),
            transient: false,
        }
        };
        if cfg.bucket.is_empty() || cfg.bucket.contains('/') {
            return Err(refused(format!("`{}` is not a bucket name", cfg.bucket)));
        }
        let region_name = if cfg.region.is_empty() {
            "us-east-1".to_owned()
        } else {
            cfg.region.clone()
        };
        let region = match &endpoint {
            Some(endpoint) => Region::Custom {
                region: region_name,
                endpoint: endpoint.clone(),
            },
            None => region_name
                .parse()
                .map_err(|e| refused(format!("region `{}`: {e}", cfg.region)))?,
        };
        let credentials = Credentials::new(
            Some(&cfg.access_key),
            Some(&cfg.secret_key),
            None,
            None,
            None,
        )
        .map_err(|e| refused(format!("credentials: {e}")))?;
        let mut bucket = Bucket::new(&cfg.bucket, region, credentials)
            .map_err(|e| refused(format!("bucket `{}`: {}", cfg.bucket, describe(&e))))?;
        if cfg.path_style {
            bucket.set_path_style();
        }
        Ok(Self {
            inner: Arc::new(Inner {
                bucket,
                bucket_name: cfg.bucket,
                prefix,
                query,
                part_size: cfg.part_size,
                retry: Retry::default(),
            }),
        })
    }

    /// Starts a multipart upload of `name` and writes its marker (the
    /// temporary that `list` shows and the next run removes).
    fn initiate(&self, name: &str) -> Result<Mode> {
        let i = &self.inner;
        let key = i.key(name);
        let upload_id = i.retry.run(|_| {
            i.bucket
                .initiate_multipart_upload(&key, CONTENT_TYPE)
                .map(|r| r.upload_id)
                .map_err(|e| i.error(i.place(name), "cannot start the upload", e))
        })?;
        let marker = format!("{TEMP_PREFIX}{name}");
        if let Err(e) = i.put(&marker, upload_id.as_bytes()) {
            let _ = i.abort_upload(name, &upload_id);
            return Err(e);
        }
        Ok(Mode::Multi {
            upload_id,
            parts: Vec::new(),
            md5s: Vec::new(),
        })
    }

    /// The part size used for an upload of `len` bytes: at least 8 MiB, and
    /// large enough that `len` needs at most 9,000 parts, rounded up to a MiB.
    #[must_use]
    pub fn part_size_for(len: u64) -> u64 {
        let needed = len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        needed.max(MIN_PART)
    }
}

fn root_location(bucket: &str, prefix: &str, query: &str) -> String {
    let mut s = format!("s3://{bucket}");
    if !prefix.is_empty() {
        s.push('/');
        s.push_str(prefix);
    }
    s.push_str(query);
    s
}

/// The query a location is printed with, as a target URL takes it (so a
/// printed location can be pasted back): endpoint, region, path style.
fn location_query(endpoint: Option<&str>, region: &str, path_style: bool) -> String {
    let mut q = Vec::new();
    if let Some(e) = endpoint {
        q.push(format!("endpoint={e}"));
    }
    if !region.is_empty() && region != "us-east-1" {
        q.push(format!("region={region}"));
    }
    if path_style {
        q.push("path_style=true".into());
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

impl Inner {
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The prefix objects are listed under (`prefix/`, or empty).
    fn list_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// An object as named in messages: `s3://bucket/prefix/name`.
    fn place(&self, name: &str) -> String {
        format!("s3://{}/{}{}", self.bucket_name, self.key(name), self.query)
    }

    fn root_place(&self) -> String {
        root_location(&self.bucket_name, &self.prefix, &self.query)
    }

    /// Maps a `rust-s3` failure on `place` to the crate's error.
    fn error(&self, place: String, what: &str, e: S3Error) -> Error {
        let target = |message: String, hint: Option<String>, transient: bool| Error::Target {
            place: place.clone(),
            message,
            hint,
            transient,
        };
        match &e {
            S3Error::HttpFailWithBody(status, body) => {
                let code = xml_field(body, "Code").unwrap_or_default();
                let text = xml_field(body, "Message").unwrap_or_default();
                let answer = match (code.is_empty(), text.is_empty()) {
                    (true, _) => format!("HTTP {status}"),
                    (false, true) => format!("HTTP {status} {code}"),
                    (false, false) => format!("HTTP {status} {code}: {text}"),
                };
                match (*status, code.as_str()) {
                    (404, "NoSuchBucket") => target(
                        format!("{what}: bucket `{}` does not exist ({answer})", self.bucket_name),
                        Some(self.missing_bucket_hint()),
                        false,
                    ),
                    (404, _) => Error::NotFound(place.clone()),
                    (403 | 400, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken") => target(
                        format!("{what}: the server refused the credentials ({answer})"),
                        Some(CREDENTIALS_HINT.into()),
                        false,
                    ),
                    (403, "AccessDenied") => target(
                        format!("{what}: access denied ({answer})"),
                        Some(format!(
                            "the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) are valid but may not use bucket `{}`: grant s3:ListBucket, s3:ListBucketMultipartUploads, s3:GetObject, s3:PutObject, s3:DeleteObject and s3:AbortMultipartUpload on it",
                            self.bucket_name
                        )),
                        false,
                    ),
                    (403, _) => target(
                        format!("{what}: {answer}"),
                        Some(format!(
                            "the server refused the request: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and that they may use bucket `{}`",
                            self.bucket_name
                        )),
                        false,
                    ),
                    (301 | 307, _) | (400, "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException") => target(
                        format!("{what}: {answer}"),
                        Some("the bucket is in another region: give its region".into()),
                        false,
                    ),
                    (408 | 429 | 500 | 502 | 503 | 504, _) => target(format!("{what}: {answer}"), None, true),
                    _ => target(format!("{what}: {answer}"), None, false),
                }
            }
            S3Error::Atto(err) => match err.kind() {
                attohttpc::ErrorKind::Io(io) => {
                    target(format!("{what}: {io}"), None, transient_io(io.kind()))
                }
                attohttpc::ErrorKind::InvalidResponse(_) => {
                    target(format!("{what}: {err}"), None, true)
                }
                attohttpc::ErrorKind::Tls(_) | attohttpc::ErrorKind::InvalidDNSName(_) => target(
                    format!("{what}: TLS: {err}"),
                    Some("check the endpoint's certificate and host name (or use http:// for a server on loopback)".into()),
                    false,
                ),
                _ => target(format!("{what}: {err}"), None, false),
            },
            S3Error::Io(io) => target(format!("{what}: {io}"), None, transient_io(io.kind())),
            _ => target(format!("{what}: {}", describe(&e)), None, false),
        }
    }

    /// Uploads one part, signed with `UNSIGNED-PAYLOAD` (SigV4 header
    /// signing through rust-s3's own helpers) and carrying the part's
    /// CRC-32 in `x-amz-checksum-crc32`, which the server checks. rust-s3's
    /// `put_multipart_chunk` signs the SHA-256 of an empty payload while
    /// sending a body (a server that verifies payload hashes refuses it)
    /// and hashes every part with MD5 on the way.
    fn put_part(
        &self,
        chunk: &[u8],
        key: &str,
        number: u32,
        upload_id: &str,
    ) -> std::result::Result<Part, S3Error> {
        use base64::Engine as _;
        use hmac::Mac as _;
        use s3::signing;
        let b = &self.bucket;
        let url = url::Url::parse(&format!(
            "{}/{}?partNumber={number}&uploadId={}",
            b.url(),
            signing::uri_encode(key, false),
            signing::uri_encode(upload_id, true)
        ))?;
        let now = time::OffsetDateTime::now_utc();
        let date = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let crc =
            base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(chunk).to_be_bytes());
        let creds = b.credentials()?;
        let name = http::HeaderName::from_static;
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, b.host().parse()?);
        headers.insert(
            http::header::CONTENT_LENGTH,
            chunk.len().to_string().parse()?,
        );
        headers.insert(name("x-amz-content-sha256"), "UNSIGNED-PAYLOAD".parse()?);
        headers.insert(name("x-amz-date"), date.parse()?);
        headers.insert(name("x-amz-checksum-crc32"), crc.parse()?);
        if let Some(token) = creds
            .session_token
            .as_ref()
            .or(creds.security_token.as_ref())
        {
            headers.insert(name("x-amz-security-token"), token.parse()?);
        }
        let canonical = signing::canonical_request("PUT", &url, &headers, "UNSIGNED-PAYLOAD")?;
        let to_sign = signing::string_to_sign(&now, &b.region(), &canonical)?;
        let secret = creds.secret_key.clone().unwrap_or_default();
        let signing_key = signing::signing_key(&now, &secret, &b.region(), "s3")?;
        let mut mac = signing::HmacSha256::new_from_slice(&signing_key)?;
        mac.update(to_sign.as_bytes());
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        let authorization = signing::authorization_header(
            &creds.access_key.clone().unwrap_or_default(),
            &now,
            &b.region(),
            &signing::signed_header_string(&headers),
            &signature,
        )?;
        let mut req = attohttpc::put(url.as_str());
        for (k, v) in &headers {
            if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
                req = req.header(k.clone(), v.clone());
            }
        }
        let resp = req
            .header("authorization", authorization)
            .header("content-type", CONTENT_TYPE)
            .bytes(chunk)
            .send()?;
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !(200..300).contains(&status) {
            return Err(S3Error::HttpFailWithBody(
                status,
                resp.text().unwrap_or_default(),
            ));
        }
        Ok(Part {
            part_number: number,
            etag,
        })
    }

    /// Whether the bucket exists and anything is under the prefix.
    fn probe(&self) -> Result<Root> {
        self.retry.run(|_| {
            match self
                .bucket
                .list_page(self.list_prefix(), Some("/".into()), None, None, Some(1))
            {
                Ok(_) if self.prefix.is_empty() => Ok(Root::Present),
                Ok((page, _)) => {
                    let any = !page.contents.is_empty()
                        || page.common_prefixes.is_some_and(|p| !p.is_empty());
                    Ok(if any { Root::Present } else { Root::Empty })
                }
                Err(e) if is_no_such_bucket(&e) => Ok(Root::NoBucket),
                Err(e) => Err(self.error(self.root_place(), "cannot reach the bucket", e)),
            }
        })
    }

    fn missing_bucket_hint(&self) -> String {
        format!(
            "create bucket `{}` first (e.g. `aws s3 mb s3://{}`), or fix the bucket name; mailvault never creates buckets",
            self.bucket_name, self.bucket_name
        )
    }

    /// HEAD of one object: its size, and its ETag where that is an MD5
    /// of the content (not under SSE-KMS).
    fn head(&self, name: &str) -> Result<(u64, Option<String>)> {
        let key = self.key(name);
        self.retry.run(|_| {
            let (head, _) = self
                .bucket
                .head_object(&key)
                .map_err(|e| self.error(self.place(name), "cannot stat", e))?;
            let size = head
                .content_length
                .and_then(|l| u64::try_from(l).ok())
                .ok_or_else(|| Error::Target {
                    place: self.place(name),
                    message: "cannot stat: the server sent no Content-Length".into(),
                    hint: None,
                    transient: false,
                })?;
            let kms = head
                .server_side_encryption
                .as_deref()
                .is_some_and(|e| e.contains("kms"));
            Ok((size, head.e_tag.filter(|_| !kms)))
        })
    }

    fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name);
        self.retry.run(|_| {
            self.bucket
                .delete_object(&key)
                .map(drop)
                .map_err(|e| self.error(self.place(name), "cannot remove", e))
        })
    }

    /// PutObject (replacing); the ETag where it is the content's MD5 (not
    /// under SSE-KMS).
    fn put(&self, name: &str, bytes: &[u8]) -> Result<Option<String>> {
        let key = self.key(name);
        self.retry.run(|_| {
            self.bucket
                .put_object(&key, bytes)
                .map(|r| {
                    let headers = r.headers();
                    let header = |want: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(want))
                            .map(|(_, v)| v.clone())
                    };
                    let kms =
                        header("x-amz-server-side-encryption").is_some_and(|e| e.contains("kms"));
                    header("etag").filter(|_| !kms)
                })
                .map_err(|e| self.error(self.place(name), "cannot write", e))
        })
    }

    fn abort_upload(&self, name: &str, upload_id: &str) -> Result<()> {
        let key = self.key(name);
        let r = self.retry.run(|_| {
            self.bucket
                .abort_upload(&key, upload_id)
                .map_err(|e| self.error(self.place(name), "cannot abort the upload", e))
        });
        match r {
            // Already completed or aborted: nothing left to give up.
            Err(Error::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// Unfinished multipart uploads directly under the prefix: (name,
    /// upload id). Empty when the server cannot list them (s3s-fs): the
    /// markers still name this store's own uploads.
    fn multipart_uploads(&self) -> Result<Vec<(String, String)>> {
        let prefix = self.list_prefix();
        let mut found = Vec::new();
        let mut key_marker = None;
        let mut id_marker = None;
        loop {
            let page = self.retry.run(|_| {
                match self.bucket.list_multiparts_uploads_page(
                    Some(&prefix),
                    Some("/"),
                    key_marker.clone(),
                    id_marker.clone(),
                    None,
                ) {
                    Ok((page, _)) => Ok(Some(page)),
                    Err(S3Error::HttpFailWithBody(501, _) | S3Error::SerdeXml(_)) => Ok(None),
                    Err(e) => {
                        Err(self.error(self.root_place(), "cannot list unfinished uploads", e))
                    }
                }
            })?;
            let Some(page) = page else {
                return Ok(found);
            };
            for upload in page.uploads {
                if let Some(name) = upload.key.strip_prefix(&prefix)
                    && !name.is_empty()
                    && !name.contains('/')
                {
                    found.push((name.to_owned(), upload.id));
                }
            }
            if !page.is_truncated || page.next_marker.is_none() {
                return Ok(found);
            }
            if page.next_marker == key_marker && page.next_upload_id_marker == id_marker {
                return Ok(found);
            }
            key_marker = page.next_marker;
            id_marker = page.next_upload_id_marker;
        }
    }
}

const CREDENTIALS_HINT: &str = "check the access key and secret key (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the credentials file given by credentials=FILE or MAILVAULT_CREDENTIALS) and this machine's clock";

fn is_no_such_bucket(e: &S3Error) -> bool {
    matches!(e, S3Error::HttpFailWithBody(404, body) if body.contains("<Code>NoSuchBucket</Code>"))
}

fn transient_io(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        kind,
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::TimedOut
            | K::UnexpectedEof
            | K::BrokenPipe
            | K::NotConnected
            | K::NetworkUnreachable
            | K::HostUnreachable
            | K::AddrNotAvailable
            | K::Interrupted
            | K::WouldBlock
    )
}

/// A library error as text: never the request, so never a credential.
fn describe(e: &S3Error) -> String {
    match e {
        S3Error::HttpFailWithBody(status, body) => {
            let code = xml_field(body, "Code").unwrap_or_default();
            format!("HTTP {status} {code}")
        }
        other => other.to_string(),
    }
}

/// The text of `<tag>...</tag>` in an S3 error document.
fn xml_field(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    Some(body[start..end].trim().to_owned())
}

/// An ETag without its quotes.
fn bare_etag(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// Whether an ETag is a plain MD5 (not a multipart or encrypted one).
/// The 16 bytes of an MD5 ETag (`"9e107d9d372bb6826bd81d3542a419d6"`).
fn parse_md5(etag: &str) -> Option<[u8; 16]> {
    let hex = bare_etag(etag);
    if !is_md5_etag(hex) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn is_md5_etag(etag: &str) -> bool {
    let e = bare_etag(etag);
    e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit())
}

impl ObjectStore for S3Store {
    fn location(&self) -> String {
        let i = &self.inner;
        root_location(&i.bucket_name, &i.prefix, &i.query)
    }

    fn exists(&self) -> Result<bool> {
        Ok(self.inner.probe()? == Root::Present)
    }

    fn create_root(&self) -> Result<bool> {
        let i = &self.inner;
        match i.probe()? {
            Root::Present => Ok(false),
            Root::Empty => {
                i.put(ROOT_MARKER, b"")?;
                Ok(true)
            }
            Root::NoBucket => Err(Error::Target {
                place: i.root_place(),
                message: format!("bucket `{}` does not exist", i.bucket_name),
                hint: Some(i.missing_bucket_hint()),
                transient: false,
            }),
        }
    }

    fn remove_root_if_empty(&self) -> Result<()> {
        let i = &self.inner;
        if i.prefix.is_empty() {
            // The bucket's top level: buckets are the admin's.
            return Ok(());
        }
        let left = match self.list() {
            Ok(left) => left,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        // Lock objects go when their holders release them.
        if left.iter().all(|(n, _)| n.starts_with(LOCK_PREFIX)) {
            match i.delete(ROOT_MARKER) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<(String, u64)>> {
        let i = &self.inner;
        let prefix = i.list_prefix();
        let mut found: BTreeMap<String, u64> = BTreeMap::new();
        // Whether anything at all is under the prefix (deeper keys too).
        let mut anything = prefix.is_empty();
        let mut token: Option<String> = None;
        loop {
            let page = i.retry.run(|_| {
                match i.bucket.list_page(
                    prefix.clone(),
                    Some("/".into()),
                    token.clone(),
                    None,
                    None,
                ) {
                    Ok((page, _)) => Ok(page),
                    // The contract's "the prefix does not exist".
                    Err(e) if is_no_such_bucket(&e) => Err(Error::NotFound(i.root_place())),
                    Err(e) => Err(i.error(i.root_place(), "cannot list", e)),
                }
            })?;
            anything |= !page.contents.is_empty()
                || page.common_prefixes.as_ref().is_some_and(|p| !p.is_empty());
            for object in page.contents {
                let Some(name) = object.key.strip_prefix(&prefix) else {
                    continue;
                };
                if name.is_empty() || name.contains('/') || name == ROOT_MARKER {
                    continue;
                }
                // Markers stand for an unfinished upload: size 0, like the
                // uploads listed below.
                let size = if name.starts_with(TEMP_PREFIX) {
                    0
                } else {
                    object.size
                };
                found.insert(name.to_owned(), size);
            }
            match page.next_continuation_token {
                Some(next) if page.is_truncated && Some(&next) != token.as_ref() => {
                    token = Some(next);
                }
                _ => break,
            }
        }
        for (name, _) in i.multipart_uploads()? {
            anything = true;
            found.entry(format!("{TEMP_PREFIX}{name}")).or_insert(0);
        }
        if !anything {
            // Nothing under the prefix: no repository there (yet).
            return Err(Error::NotFound(i.root_place()));
        }
        Ok(found.into_iter().collect())
    }

    fn size(&self, name: &str) -> Result<u64> {
        self.inner.head(name).map(|(size, _)| size)
    }

    fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let i = &self.inner;
        if len == 0 {
            // Nothing to read, but a missing object is still NotFound.
            i.head(name)?;
            return Ok(Vec::new());
        }
        let key = i.key(name);
        let end = offset.saturating_add(len - 1);
        i.retry.run(|_| {
            match i.bucket.get_object_range(&key, offset, Some(end)) {
                Ok(r) => {
                    let status = r.status_code();
                    let mut bytes = r.to_vec();
                    if status == 200 && offset > 0 {
                        // A server that ignored the range sent it all.
                        bytes = bytes
                            .get(usize::try_from(offset).unwrap_or(usize::MAX)..)
                            .map(<[u8]>::to_vec)
                            .unwrap_or_default();
                    }
                    bytes.truncate(usize::try_from(len).unwrap_or(usize::MAX));
                    Ok(bytes)
                }
                // At or past the end: fewer bytes (none), as at a file's end.
                Err(S3Error::HttpFailWithBody(416, _)) => Ok(Vec::new()),
                Err(e) => Err(i.error(i.place(name), "cannot read", e)),
            }
        })
    }

    fn put_small(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.inner.put(name, bytes).map(drop)
    }

    fn begin(&self, name: &str, len: u64) -> Result<Box<dyn Upload>> {
        let i = &self.inner;
        let part_size = match i.part_size {
            Some(p) => p.max(S3_MIN_PART),
            None => S3Store::part_size_for(len),
        };
        let mode = if len <= part_size {
            Mode::Small { buf: None }
        } else {
            self.initiate(name)?
        };
        Ok(Box::new(S3Upload {
            inner: Arc::clone(i),
            name: name.to_owned(),
            len,
            part_size,
            streaming: false,
            sent: 0,
            mode,
            finished: false,
            etags_known: true,
        }))
    }

    fn begin_stream(&self, name: &str) -> Result<Option<Box<dyn Upload>>> {
        let i = &self.inner;
        let mode = self.initiate(name)?;
        Ok(Some(Box::new(S3Upload {
            inner: Arc::clone(i),
            name: name.to_owned(),
            len: 0,
            part_size: i.part_size.map_or(MIN_PART, |p| p.max(S3_MIN_PART)),
            streaming: true,
            sent: 0,
            mode,
            finished: false,
            etags_known: true,
        })))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let i = &self.inner;
        if let Some(final_name) = name.strip_prefix(TEMP_PREFIX) {
            let mut found = false;
            match i.head(name) {
                Ok(_) => {
                    found = true;
                    let id = ObjectStore::read_range(self, name, 0, 4096)?;
                    let id = String::from_utf8_lossy(&id).trim().to_owned();
                    if !id.is_empty() {
                        i.abort_upload(final_name, &id)?;
                    }
                }
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            for (upload_name, id) in i.multipart_uploads()? {
                if upload_name == final_name {
                    found = true;
                    i.abort_upload(final_name, &id)?;
                }
            }
            if !found {
                return Err(Error::NotFound(i.place(name)));
            }
            return match i.delete(name) {
                Err(Error::NotFound(_)) => Ok(()),
                other => other,
            };
        }
        // S3 deletes are idempotent: a missing object must be seen first.
        i.head(name)?;
        i.delete(name)
    }
}

enum Mode {
    /// One PutObject at publish, from the bytes read in `send`.
    Small { buf: Option<Vec<u8>> },
    /// A multipart upload, started at `begin`.
    Multi {
        upload_id: String,
        parts: Vec<Part>,
        /// Each part's MD5, for the object's expected ETag.
        md5s: Vec<[u8; 16]>,
    },
}

/// An upload to an [`S3Store`].
struct S3Upload {
    inner: Arc<Inner>,
    name: String,
    len: u64,
    part_size: u64,
    /// Started by `begin_stream`: the length is known only at `send`, parts
    /// go out while the volume is still being written, and the part size
    /// doubles every 1,000 parts so that no volume reaches S3's limit.
    streaming: bool,
    sent: u64,
    mode: Mode,
    /// Published or aborted: nothing to clean up on drop.
    finished: bool,
    /// Every part's ETag was an MD5, so the object's ETag can be checked.
    etags_known: bool,
}

impl S3Upload {
    fn place(&self) -> String {
        self.inner.place(&self.name)
    }

    fn failed(&self, message: String) -> Error {
        Error::Target {
            place: self.place(),
            message,
            hint: None,
            transient: false,
        }
    }

    fn read_at(&self, file: &File, offset: u64, n: u64) -> Result<Vec<u8>> {
        let n = usize::try_from(n).map_err(|_| self.failed("part too large".into()))?;
        let mut buf = vec![0; n];
        file.read_exact_at(&mut buf, offset)
            .map_err(Error::io("cannot read the spooled copy of", self.place()))?;
        Ok(buf)
    }

    /// Size of the next part of a streamed upload: 8 MiB, doubling every
    /// 1,000 parts (8 MiB x 1,000 x (1 + 2 + ... + 2^8) is far beyond any
    /// volume before part 9,000).
    fn next_part_size(&self) -> u64 {
        let done = match &self.mode {
            Mode::Multi { parts, .. } => parts.len() as u64,
            Mode::Small { .. } => 0,
        };
        if self.streaming && self.inner.part_size.is_none() {
            self.part_size << (done / 1000).min(20)
        } else {
            self.part_size
        }
    }

    /// Sends the `n` bytes at `self.sent` as the next part, retried on its own.
    fn upload_part(&mut self, file: &File, n: u64) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let key = inner.key(&self.name);
        let place = self.place();
        let chunk = self.read_at(file, self.sent, n)?;
        let Mode::Multi {
            upload_id,
            parts,
            md5s,
        } = &mut self.mode
        else {
            return Err(self.failed("not a multipart upload".into()));
        };
        let number = u32::try_from(parts.len() + 1).unwrap_or(u32::MAX);
        let etag = inner.retry.run(|_| {
            let part = inner
                .put_part(&chunk, &key, number, upload_id)
                .map_err(|e| inner.error(place.clone(), "cannot send a part", e))?;
            if part.etag.is_empty() {
                return Err(Error::Target {
                    place: place.clone(),
                    message: format!("part {number}: the server sent no ETag"),
                    hint: None,
                    transient: true,
                });
            }
            // Not compared with the part's MD5: rust-s3 sends Content-MD5,
            // which the server checks, and under SSE-KMS a part's ETag is
            // not its MD5.
            Ok(part.etag)
        })?;
        // The part's MD5 as the server computed it (rust-s3 sent
        // Content-MD5, which the server checked): hashing the part here as
        // well would cost a second pass over every byte. An ETag that is not
        // an MD5 (SSE-KMS) leaves the object's ETag uncompared.
        match parse_md5(&etag) {
            Some(d) => md5s.push(d),
            None => self.etags_known = false,
        }
        parts.push(Part {
            part_number: number,
            etag,
        });
        self.sent += n;
        Ok(())
    }

    /// Gives up the multipart upload and its marker (best effort).
    fn cleanup(&mut self) {
        self.finished = true;
        if let Mode::Multi { upload_id, .. } = &self.mode {
            let _ = self.inner.abort_upload(&self.name, upload_id);
            let _ = self.inner.delete(&format!("{TEMP_PREFIX}{}", self.name));
        }
    }

    /// The ETag S3 gives a multipart object made of parts with these MD5s.
    fn multipart_etag(md5s: &[[u8; 16]]) -> String {
        let mut all = Vec::with_capacity(md5s.len() * 16);
        for m in md5s {
            all.extend_from_slice(m);
        }
        format!("{:x}-{}", md5::compute(&all), md5s.len())
    }
}

impl Upload for S3Upload {
    fn send(&mut self, file: &mut File, len: u64, progress: OnBytes<'_>) -> Result<()> {
        if self.streaming {
            if len < self.sent {
                return Err(self.failed(format!(
                    "{} bytes were sent early but the object has only {len}",
                    self.sent
                )));
            }
            self.len = len;
            while self.sent < len {
                let n = self.next_part_size().min(len - self.sent);
                self.upload_part(file, n)?;
                progress(n);
            }
            return Ok(());
        }
        if len != self.len {
            return Err(self.failed(format!(
                "upload began for {} bytes but {len} were sent",
                self.len
            )));
        }
        if let Mode::Small { .. } = self.mode {
            let buf = self.read_at(file, 0, len)?;
            progress(len);
            self.sent = len;
            self.mode = Mode::Small { buf: Some(buf) };
            return Ok(());
        }
        // A second `send` starts over: its parts replace the first's.
        if let Mode::Multi { parts, md5s, .. } = &mut self.mode {
            parts.clear();
            md5s.clear();
            self.etags_known = true;
        }
        self.sent = 0;
        while self.sent < len {
            let n = self.part_size.min(len - self.sent);
            self.upload_part(file, n)?;
            progress(n);
        }
        Ok(())
    }

    fn send_early(&mut self, file: &File, upto: u64, progress: OnBytes<'_>) -> Result<()> {
        if !self.streaming {
            return Ok(());
        }
        loop {
            let n = self.next_part_size();
            if self.sent + n > upto {
                return Ok(());
            }
            self.upload_part(file, n)?;
            progress(n);
        }
    }

    fn publish(mut self: Box<Self>) -> Result<()> {
        let result = self.publish_inner();
        if result.is_err() {
            self.cleanup();
        }
        self.finished = true;
        result
    }

    fn abort(mut self: Box<Self>) {
        self.cleanup();
    }
}

impl S3Upload {
    fn publish_inner(&mut self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        if self.sent != self.len {
            return Err(self.failed(format!(
                "cannot publish: {} of {} bytes were sent",
                self.sent, self.len
            )));
        }
        match inner.head(&self.name) {
            Ok(_) => return Err(Error::AlreadyExists(self.place())),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let place = self.place();
        let failed = |message: String| Error::Target {
            place: place.clone(),
            message,
            hint: None,
            transient: false,
        };
        let expected_etag = match &mut self.mode {
            Mode::Small { buf } => {
                let bytes = buf.take().unwrap_or_default();
                let local = format!("{:x}", md5::compute(&bytes));
                let etag = inner.put(&self.name, &bytes)?.unwrap_or_default();
                if is_md5_etag(&etag) && bare_etag(&etag) != local {
                    let _ = inner.delete(&self.name);
                    return Err(failed(format!(
                        "the server's checksum {} differs from the bytes sent ({local})",
                        bare_etag(&etag)
                    )));
                }
                Some(local)
            }
            Mode::Multi {
                upload_id,
                parts,
                md5s,
            } => {
                let key = inner.key(&self.name);
                inner.retry.run(|attempt| {
                    match inner
                        .bucket
                        .complete_multipart_upload(&key, upload_id, parts.clone())
                    {
                        Ok(_) => Ok(()),
                        // A retry after a completion whose answer was lost.
                        Err(S3Error::HttpFailWithBody(404, body))
                            if attempt > 0 && body.contains("NoSuchUpload") =>
                        {
                            Ok(())
                        }
                        Err(e) => Err(inner.error(place.clone(), "cannot complete the upload", e)),
                    }
                })?;
                let _ = inner.delete(&format!("{TEMP_PREFIX}{}", self.name));
                self.etags_known.then(|| Self::multipart_etag(md5s))
            }
        };
        // The object now under the final name must be the one sent.
        let (size, etag) = inner.head(&self.name)?;
        let etag_differs = match (&expected_etag, &etag) {
            (Some(want), Some(got)) => {
                let got = bare_etag(got);
                // Only ETags of the MD5 kinds can be compared (not SSE-KMS).
                let comparable = is_md5_etag(got)
                    || got.split_once('-').is_some_and(|(h, n)| {
                        is_md5_etag(h) && n.bytes().all(|b| b.is_ascii_digit())
                    });
                comparable && got != want
            }
            _ => false,
        };
        if size != self.len || etag_differs {
            let _ = inner.delete(&self.name);
            return Err(failed(format!(
                "the published object has {size} bytes (ETag {}) but {} bytes (ETag {}) were sent; it was removed",
                etag.as_deref().map_or("none", bare_etag),
                self.len,
                expected_etag.as_deref().unwrap_or("unknown")
            )));
        }
        Ok(())
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if !self.finished {
            self.cleanup();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_is_at_least_8_mib_and_at_most_9000_parts() {
        assert_eq!(S3Store::part_size_for(0), 8 * MIB);
        assert_eq!(S3Store::part_size_for(40 * MIB), 8 * MIB);
        let tb = 5 * 1024 * 1024 * MIB;
        let p = S3Store::part_size_for(tb);
        assert_eq!(p % MIB, 0);
        assert!(tb.div_ceil(p) <= MAX_PARTS);
        assert!(p > 8 * MIB);
    }

    #[test]
    fn debug_and_location_hide_the_secret() {
        let cfg = S3Config {
            bucket: "b".into(),
            prefix: "/srv/x/".into(),
            endpoint: Some("http://127.0.0.1:9000/".into()),
            region: String::new(),
            path_style: true,
            access_key: "AK".into(),
            secret_key: "very-secret".into(),
            part_size: None,
        };
        assert!(!format!("{cfg:?}").contains("very-secret"));
        let store = S3Store::new(cfg).unwrap();
        assert!(!format!("{store:?}").contains("very-secret"));
        assert_eq!(
            store.location(),
            "s3://b/srv/x?endpoint=http://127.0.0.1:9000&path_style=true"
        );
        assert_eq!(
            store.inner.place("n"),
            "s3://b/srv/x/n?endpoint=http://127.0.0.1:9000&path_style=true"
        );
    }

    #[test]
    fn multipart_etag_matches_s3() {
        // Two parts: md5 of the concatenated part digests, then "-2".
        let a = md5::compute(b"a").0;
        let b = md5::compute(b"b").0;
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        assert_eq!(
            S3Upload::multipart_etag(&[a, b]),
            format!("{:x}-2", md5::compute(&both))
        );
    }

    #[test]
    fn xml_fields() {
        let body = "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>";
        assert_eq!(xml_field(body, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(xml_field(body, "Message").as_deref(), Some("gone"));
        assert_eq!(xml_field("", "Code"), None);
    }
}
