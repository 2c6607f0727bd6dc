//! The sample hosting panel (`mailvault sample-panel --root DIR`): a small,
//! realistic "old server" for the disaster-recovery demo and tests. It owns
//! the customers, domains and mailboxes every generated file agrees on (Linux
//! accounts, nginx and PHP-FPM per customer, Postfix/Dovecot maps, DNS zones,
//! Let's Encrypt placeholders, web roots, maildirs) and the SQL seeds under
//! `DIR/.sample/` (panel PostgreSQL database, customer MariaDB databases,
//! PowerDNS gsqlite3 backend), plus loading those seeds into real servers with
//! the `psql` and `mariadb` clients. Everything is deterministic: the same
//! bytes on every run, so DR tests can compare a restored root with a fresh one.
//! Secrets are fake by construction (hashes made from a fixed seed, certificates
//! and keys marked as placeholders).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Rng, message, write_with_mtime};
use crate::error::{Error, Result};

/// 2026-10-01T06:00:00Z: the mtime of every generated file.
const T0: i64 = 1_790_834_400;
/// The same instant in days since the epoch (shadow's "last change").
const DAYS0: i64 = T0 / 86_400;

/// The server's identity.
pub const HOSTNAME: &str = "srv1.hostpanel.example";
/// Its IPv4 address (TEST-NET-3).
pub const IPV4: &str = "203.0.113.10";
const IPV6: &str = "2001:db8:10::10";
/// The panel's server id of this machine (`servers.id`, `customers.server_id`).
pub const SERVER_ID: u32 = 1;

/// A hosting customer: a Linux account, its web sites, mailboxes and database.
#[derive(Debug, Clone, Copy)]
pub struct Customer {
    /// `customers.id` in the panel database.
    pub id: u32,
    /// Linux login, group name and `/var/www/<login>`.
    pub login: &'static str,
    /// The customer's display name.
    pub name: &'static str,
    /// Linux uid (= gid of its own group).
    pub uid: u32,
    /// PHP-FPM version of its pool.
    pub php: &'static str,
    /// Its domains (web sites, DNS zones, mail domains).
    pub domains: &'static [&'static str],
    /// Mailboxes as (local part, domain).
    pub mailboxes: &'static [(&'static str, &'static str)],
    /// Its MariaDB database (also the database user's name), if any.
    pub database: Option<&'static str>,
}

/// The customers, in panel id order.
pub const CUSTOMERS: &[Customer] = &[
    Customer {
        id: 1,
        login: "acme",
        name: "Acme Trading s.r.o.",
        uid: 1001,
        php: "8.2",
        domains: &["acme-trading.example", "acme-shop.example"],
        mailboxes: &[
            ("info", "acme-trading.example"),
            ("jan.novak", "acme-trading.example"),
            ("orders", "acme-shop.example"),
        ],
        database: Some("acme_wp"),
    },
    Customer {
        id: 2,
        login: "bluefin",
        name: "Bluefin Studio Ltd",
        uid: 1002,
        php: "8.1",
        domains: &["bluefin-studio.example"],
        mailboxes: &[
            ("hello", "bluefin-studio.example"),
            ("anna", "bluefin-studio.example"),
        ],
        database: Some("bluefin_shop"),
    },
    Customer {
        id: 3,
        login: "lumiere",
        name: "Cafe Lumiere",
        uid: 1003,
        php: "8.2",
        domains: &["cafe-lumiere.example"],
        mailboxes: &[("contact", "cafe-lumiere.example")],
        database: None,
    },
];

/// The uid/gid of the virtual mail owner (a system account).
const VMAIL_ID: u32 = 996;

/// What [`write_sample_panel`] wrote.
#[derive(Debug, Clone, Default)]
pub struct PanelSummary {
    /// Regular files written (symbolic links not counted).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Symbolic links (nginx sites-enabled, Let's Encrypt live/).
    pub links: u64,
    /// Customers, domains, mailboxes, MariaDB databases.
    pub customers: usize,
    /// Domains of all customers.
    pub domains: usize,
    /// Mailboxes of all customers.
    pub mailboxes: usize,
    /// MariaDB customer databases in `.sample/mariadb.sql`.
    pub databases: usize,
    /// Whether `var/lib/powerdns/pdns.sqlite3` was built with `sqlite3`
    /// (false: the client is missing, only `.sample/pdns.sql` is there).
    pub pdns_sqlite: bool,
}

/// Writes files under the root, counting them.
struct Tree<'a> {
    root: &'a Path,
    sum: PanelSummary,
}

impl Tree<'_> {
    fn file(&mut self, rel: &str, content: impl AsRef<[u8]>) -> Result<()> {
        let path = self.root.join(rel);
        let content = content.as_ref();
        write_with_mtime(&path, content, T0).map_err(Error::io("cannot write", &path))?;
        self.sum.files += 1;
        self.sum.bytes += content.len() as u64;
        Ok(())
    }

    fn file_mode(&mut self, rel: &str, content: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        self.file(rel, content)?;
        let path = self.root.join(rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(Error::io("cannot set the mode of", &path))
    }

    fn dir(&self, rel: &str) -> Result<()> {
        let path = self.root.join(rel);
        fs::create_dir_all(&path).map_err(Error::io("cannot create", &path))
    }

    fn link(&mut self, rel: &str, target: &str) -> Result<()> {
        let path = self.root.join(rel);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).map_err(Error::io("cannot create", p))?;
        }
        std::os::unix::fs::symlink(target, &path).map_err(Error::io("cannot link", &path))?;
        self.sum.links += 1;
        Ok(())
    }
}

/// crypt(3)'s base64 alphabet.
const CRYPT64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn crypt64(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(CRYPT64[usize::try_from(rng.below(64)).unwrap_or(0)]))
        .collect()
}

/// A string shaped like a crypt(3) SHA-512 hash (`$6$salt$86 chars`). It is
/// not the hash of any password: derived from the account's name only.
#[must_use]
pub fn fake_sha512_crypt(account: &str) -> String {
    let mut rng = Rng::new(seed_of(account));
    let salt = crypt64(&mut rng, 16);
    format!("$6${salt}${}", crypt64(&mut rng, 86))
}

fn seed_of(s: &str) -> u64 {
    // FNV-1a: stable, unlike std's hasher.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hex(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789ABCDEF"[usize::try_from(rng.below(16)).unwrap_or(0)]))
        .collect()
}

/// Writes the sample panel under `root` (a new or empty directory).
///
/// # Errors
/// [`Error::Refused`] when `root` holds anything; I/O errors naming the file.
pub fn write_sample_panel(root: &Path) -> Result<PanelSummary> {
    if root.exists()
        && fs::read_dir(root)
            .map_err(Error::io("cannot list", root))?
            .next()
            .is_some()
    {
        return Err(Error::Refused {
            reason: format!("`{}` is not empty", root.display()),
            hint: "give a new or empty directory: sample-panel writes a whole server root there"
                .into(),
        });
    }
    let mut t = Tree {
        root,
        sum: PanelSummary {
            customers: CUSTOMERS.len(),
            domains: CUSTOMERS.iter().map(|c| c.domains.len()).sum(),
            mailboxes: CUSTOMERS.iter().map(|c| c.mailboxes.len()).sum(),
            databases: CUSTOMERS.iter().filter(|c| c.database.is_some()).count(),
            ..PanelSummary::default()
        },
    };
    identity(&mut t)?;
    accounts(&mut t)?;
    nginx(&mut t)?;
    php_fpm(&mut t)?;
    postfix(&mut t)?;
    dovecot(&mut t)?;
    dns(&mut t)?;
    rspamd(&mut t)?;
    small_services(&mut t)?;
    letsencrypt(&mut t)?;
    cron(&mut t)?;
    web_roots(&mut t)?;
    maildirs(&mut t)?;
    t.file(".sample/panel.sql", panel_sql())?;
    t.file(".sample/mariadb.sql", mariadb_sql())?;
    t.file(".sample/pdns.sql", pdns_sql())?;
    t.file(".sample/README", SAMPLE_README)?;
    t.dir("var/lib/powerdns")?;
    t.sum.pdns_sqlite = build_sqlite(
        &root.join(".sample/pdns.sql"),
        &root.join("var/lib/powerdns/pdns.sqlite3"),
    )?;
    if t.sum.pdns_sqlite {
        t.sum.files += 1;
        t.sum.bytes += fs::metadata(root.join("var/lib/powerdns/pdns.sqlite3"))
            .map(|m| m.len())
            .unwrap_or(0);
    }
    Ok(t.sum)
}

const SAMPLE_README: &str = "\
Seeds of the sample panel's databases (mailvault sample-panel; see docs/dr.md).
Not part of the server root: the disaster-recovery pipeline must not back them up.
  panel.sql    PostgreSQL: database `panel` (servers, customers, domains, dns_zones,
               mailboxes, databases); load with psql -v ON_ERROR_STOP=1 -f panel.sql
  mariadb.sql  MariaDB: databases acme_wp and bluefin_shop, their users and grants,
               a procedure, a function, a trigger and an event each; load with mariadb < mariadb.sql
  pdns.sql     PowerDNS gsqlite3 backend (domains, records); var/lib/powerdns/pdns.sqlite3
               is built from it when sqlite3 is installed
Every password hash in this sample is fake (derived from a fixed seed).
";

/// Builds an SQLite database from a script with the `sqlite3` client.
/// Ok(false) when the client is not installed.
fn build_sqlite(sql: &Path, db: &Path) -> Result<bool> {
    let script = fs::File::open(sql).map_err(Error::io("cannot read", sql))?;
    let out = match Command::new("sqlite3")
        .arg("-bail")
        .arg(db)
        .stdin(script)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("cannot run sqlite3 for", db)(e)),
    };
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "sqlite3 failed on `{}` building `{}`: {}",
            sql.display(),
            db.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let t = mailvault_formats::Mtime { secs: T0, nanos: 0 }.to_system();
    fs::File::options()
        .write(true)
        .open(db)
        .and_then(|f| f.set_modified(t))
        .map_err(Error::io("cannot set the mtime of", db))?;
    Ok(true)
}

fn identity(t: &mut Tree) -> Result<()> {
    let short = HOSTNAME.split('.').next().unwrap_or(HOSTNAME);
    t.file("etc/hostname", format!("{HOSTNAME}\n"))?;
    t.file(
        "etc/hosts",
        format!(
            "127.0.0.1\tlocalhost\n{IPV4}\t{HOSTNAME} {short}\n\n# The following lines are desirable for IPv6 capable hosts\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n{IPV6}\t{HOSTNAME} {short}\n"
        ),
    )?;
    t.file(
        "etc/resolv.conf",
        "# Local validating resolver (unbound), then the provider's.\nnameserver 127.0.0.1\nnameserver 198.51.100.53\nsearch hostpanel.example\noptions edns0 trust-ad\n",
    )?;
    t.file_mode(
        "etc/netplan/01-netcfg.yaml",
        format!(
            "network:\n  version: 2\n  renderer: networkd\n  ethernets:\n    ens18:\n      addresses:\n        - {IPV4}/24\n        - \"{IPV6}/64\"\n      routes:\n        - to: default\n          via: 203.0.113.1\n        - to: \"::/0\"\n          via: \"2001:db8:10::1\"\n      nameservers:\n        addresses: [127.0.0.1, 198.51.100.53]\n        search: [hostpanel.example]\n"
        ),
        0o600,
    )?;
    t.file(
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n",
    )?;
    t.file(
        "etc/hostpanel/panel.toml",
        format!(
            "# Hosting panel configuration (sample).\nserver_id = {SERVER_ID}\nhostname = \"{HOSTNAME}\"\n\n[database]\nurl = \"postgresql://panel@127.0.0.1:5432/panel\"\n\n[roles]\nweb = true\nmail_storage = true\nmail_gateway = true\ndns = true\n"
        ),
    )
}

/// System accounts: (name, uid, gid, gecos, home, shell).
const SYSTEM_USERS: &[(&str, u32, u32, &str, &str, &str)] = &[
    ("root", 0, 0, "root", "/root", "/bin/bash"),
    ("daemon", 1, 1, "daemon", "/usr/sbin", "/usr/sbin/nologin"),
    ("bin", 2, 2, "bin", "/bin", "/usr/sbin/nologin"),
    ("sys", 3, 3, "sys", "/dev", "/usr/sbin/nologin"),
    ("sync", 4, 65534, "sync", "/bin", "/bin/sync"),
    ("games", 5, 60, "games", "/usr/games", "/usr/sbin/nologin"),
    ("man", 6, 12, "man", "/var/cache/man", "/usr/sbin/nologin"),
    ("lp", 7, 7, "lp", "/var/spool/lpd", "/usr/sbin/nologin"),
    ("mail", 8, 8, "mail", "/var/mail", "/usr/sbin/nologin"),
    ("news", 9, 9, "news", "/var/spool/news", "/usr/sbin/nologin"),
    (
        "uucp",
        10,
        10,
        "uucp",
        "/var/spool/uucp",
        "/usr/sbin/nologin",
    ),
    ("proxy", 13, 13, "proxy", "/bin", "/usr/sbin/nologin"),
    (
        "www-data",
        33,
        33,
        "www-data",
        "/var/www",
        "/usr/sbin/nologin",
    ),
    (
        "backup",
        34,
        34,
        "backup",
        "/var/backups",
        "/usr/sbin/nologin",
    ),
    (
        "list",
        38,
        38,
        "Mailing List Manager",
        "/var/list",
        "/usr/sbin/nologin",
    ),
    ("irc", 39, 39, "ircd", "/run/ircd", "/usr/sbin/nologin"),
    ("_apt", 42, 65534, "", "/nonexistent", "/usr/sbin/nologin"),
    (
        "nobody",
        65534,
        65534,
        "nobody",
        "/nonexistent",
        "/usr/sbin/nologin",
    ),
    (
        "systemd-network",
        998,
        998,
        "systemd Network Management",
        "/",
        "/usr/sbin/nologin",
    ),
    (
        "messagebus",
        100,
        101,
        "",
        "/nonexistent",
        "/usr/sbin/nologin",
    ),
    ("sshd", 101, 65534, "", "/run/sshd", "/usr/sbin/nologin"),
    (
        "postfix",
        102,
        103,
        "",
        "/var/spool/postfix",
        "/usr/sbin/nologin",
    ),
    (
        "dovecot",
        103,
        105,
        "Dovecot mail server",
        "/usr/lib/dovecot",
        "/usr/sbin/nologin",
    ),
    (
        "dovenull",
        104,
        106,
        "Dovecot login user",
        "/nonexistent",
        "/usr/sbin/nologin",
    ),
    (
        "pdns",
        105,
        107,
        "PowerDNS",
        "/var/spool/powerdns",
        "/usr/sbin/nologin",
    ),
    (
        "unbound",
        106,
        108,
        "",
        "/var/lib/unbound",
        "/usr/sbin/nologin",
    ),
    (
        "_rspamd",
        107,
        109,
        "rspamd spam filtering system",
        "/var/lib/rspamd",
        "/bin/false",
    ),
    (
        "proftpd",
        108,
        65534,
        "",
        "/run/proftpd",
        "/usr/sbin/nologin",
    ),
    ("ftp", 109, 65534, "", "/srv/ftp", "/usr/sbin/nologin"),
    (
        "postgres",
        110,
        110,
        "PostgreSQL administrator",
        "/var/lib/postgresql",
        "/bin/bash",
    ),
    (
        "mysql",
        111,
        111,
        "MariaDB Server",
        "/nonexistent",
        "/bin/false",
    ),
    (
        "vmail",
        VMAIL_ID,
        VMAIL_ID,
        "Virtual mail",
        "/var/vmail",
        "/usr/sbin/nologin",
    ),
];

/// System groups: (name, gid, members).
const SYSTEM_GROUPS: &[(&str, u32, &str)] = &[
    ("root", 0, ""),
    ("daemon", 1, ""),
    ("bin", 2, ""),
    ("sys", 3, ""),
    ("adm", 4, ""),
    ("tty", 5, ""),
    ("disk", 6, ""),
    ("lp", 7, ""),
    ("mail", 8, ""),
    ("news", 9, ""),
    ("uucp", 10, ""),
    ("man", 12, ""),
    ("proxy", 13, ""),
    ("kmem", 15, ""),
    ("dialout", 20, ""),
    ("cdrom", 24, ""),
    ("sudo", 27, ""),
    ("www-data", 33, ""),
    ("backup", 34, ""),
    ("list", 38, ""),
    ("irc", 39, ""),
    ("shadow", 42, ""),
    ("utmp", 43, ""),
    ("staff", 50, ""),
    ("games", 60, ""),
    ("users", 100, ""),
    ("nogroup", 65534, ""),
    ("systemd-journal", 999, ""),
    ("systemd-network", 998, ""),
    ("messagebus", 101, ""),
    ("ssl-cert", 102, "postfix,dovecot,proftpd"),
    ("postfix", 103, ""),
    ("postdrop", 104, ""),
    ("dovecot", 105, ""),
    ("dovenull", 106, ""),
    ("pdns", 107, ""),
    ("unbound", 108, ""),
    ("_rspamd", 109, ""),
    ("postgres", 110, ""),
    ("mysql", 111, ""),
    ("vmail", VMAIL_ID, ""),
];

fn accounts(t: &mut Tree) -> Result<()> {
    let (mut passwd, mut shadow, mut group, mut gshadow) =
        (String::new(), String::new(), String::new(), String::new());
    for (name, uid, gid, gecos, home, shell) in SYSTEM_USERS {
        let _ = writeln!(passwd, "{name}:x:{uid}:{gid}:{gecos}:{home}:{shell}");
        let pw = if *name == "root" { "!" } else { "*" };
        let _ = writeln!(shadow, "{name}:{pw}:{}:0:99999:7:::", DAYS0 - 400);
    }
    for (name, gid, members) in SYSTEM_GROUPS {
        let _ = writeln!(group, "{name}:x:{gid}:{members}");
        let _ = writeln!(gshadow, "{name}:*::{members}");
    }
    for c in CUSTOMERS {
        let _ = writeln!(
            passwd,
            "{}:x:{}:{}:{},,,:/var/www/{}:/bin/bash",
            c.login, c.uid, c.uid, c.name, c.login
        );
        let _ = writeln!(
            shadow,
            "{}:{}:{}:0:99999:7:::",
            c.login,
            fake_sha512_crypt(c.login),
            DAYS0 - 120 + i64::from(c.id) * 17
        );
        // www-data reads the customer's files (group r-x), nginx serves them.
        let _ = writeln!(group, "{}:x:{}:www-data", c.login, c.uid);
        let _ = writeln!(gshadow, "{}:!::www-data", c.login);
    }
    t.file_mode("etc/passwd", passwd, 0o644)?;
    t.file_mode("etc/shadow", shadow, 0o640)?;
    t.file_mode("etc/group", group, 0o644)?;
    t.file_mode("etc/gshadow", gshadow, 0o640)
}

fn nginx(t: &mut Tree) -> Result<()> {
    t.file(
        "etc/nginx/nginx.conf",
        "user www-data;\nworker_processes auto;\npid /run/nginx.pid;\nerror_log /var/log/nginx/error.log;\ninclude /etc/nginx/modules-enabled/*.conf;\n\nevents {\n\tworker_connections 768;\n}\n\nhttp {\n\tsendfile on;\n\ttcp_nopush on;\n\ttypes_hash_max_size 2048;\n\tserver_tokens off;\n\tinclude /etc/nginx/mime.types;\n\tdefault_type application/octet-stream;\n\tssl_protocols TLSv1.2 TLSv1.3;\n\tssl_prefer_server_ciphers off;\n\taccess_log /var/log/nginx/access.log;\n\tgzip on;\n\tmodsecurity on;\n\tmodsecurity_rules_file /etc/nginx/modsec/main.conf;\n\tinclude /etc/nginx/conf.d/*.conf;\n\tinclude /etc/nginx/sites-enabled/*;\n}\n",
    )?;
    t.file(
        "etc/nginx/modules-enabled/50-mod-http-modsecurity.conf",
        "load_module modules/ngx_http_modsecurity_module.so;\n",
    )?;
    t.file(
        "etc/nginx/modsec/main.conf",
        "Include /etc/modsecurity/modsecurity.conf\nInclude /usr/share/modsecurity-crs/owasp-crs.load\n",
    )?;
    t.file(
        "etc/modsecurity/modsecurity.conf",
        "SecRuleEngine On\nSecRequestBodyAccess On\nSecRequestBodyLimit 13107200\nSecResponseBodyAccess Off\nSecTmpDir /tmp/\nSecDataDir /tmp/\nSecAuditEngine RelevantOnly\nSecAuditLog /var/log/modsec_audit.log\nSecRule REQUEST_HEADERS:Content-Type \"(?:application(?:/soap\\+|/)|text/)xml\" \"id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML\"\n",
    )?;
    t.file(
        "etc/nginx/snippets/ssl-params.conf",
        "ssl_session_timeout 1d;\nssl_session_cache shared:SSL:10m;\nssl_session_tickets off;\nadd_header Strict-Transport-Security \"max-age=63072000\" always;\nssl_stapling on;\nssl_stapling_verify on;\n",
    )?;
    t.file(
        "etc/nginx/sites-available/default",
        "server {\n\tlisten 80 default_server;\n\tlisten [::]:80 default_server;\n\troot /var/www/html;\n\tserver_name _;\n\tlocation /.well-known/acme-challenge/ { root /var/www/letsencrypt; }\n\tlocation / { return 444; }\n}\n",
    )?;
    t.link(
        "etc/nginx/sites-enabled/default",
        "/etc/nginx/sites-available/default",
    )?;
    t.file(
        "var/www/html/index.html",
        "<!doctype html><title>srv1</title>\n",
    )?;
    for c in CUSTOMERS {
        for d in c.domains {
            let php = c.php;
            let login = c.login;
            t.file(
                &format!("etc/nginx/sites-available/{d}.conf"),
                format!(
                    "# Managed by hostpanel: customer {id} ({login}). Local changes are overwritten.\nserver {{\n\tlisten 80;\n\tlisten [::]:80;\n\tserver_name {d} www.{d};\n\tlocation /.well-known/acme-challenge/ {{ root /var/www/letsencrypt; }}\n\tlocation / {{ return 301 https://{d}$request_uri; }}\n}}\n\nserver {{\n\tlisten 443 ssl http2;\n\tlisten [::]:443 ssl http2;\n\tserver_name {d} www.{d};\n\troot /var/www/{login}/{d}/public_html;\n\tindex index.php index.html;\n\n\tssl_certificate /etc/letsencrypt/live/{d}/fullchain.pem;\n\tssl_certificate_key /etc/letsencrypt/live/{d}/privkey.pem;\n\tinclude snippets/ssl-params.conf;\n\n\taccess_log /var/log/nginx/{d}.access.log;\n\terror_log /var/log/nginx/{d}.error.log;\n\tclient_max_body_size 64m;\n\n\tlocation / {{\n\t\ttry_files $uri $uri/ /index.php?$args;\n\t}}\n\n\tlocation ~ \\.php$ {{\n\t\tinclude snippets/fastcgi-php.conf;\n\t\tfastcgi_pass unix:/run/php/php{php}-fpm-{login}.sock;\n\t}}\n\n\tlocation ~ /\\.(?!well-known) {{ deny all; }}\n}}\n",
                    id = c.id
                ),
            )?;
            t.link(
                &format!("etc/nginx/sites-enabled/{d}.conf"),
                &format!("/etc/nginx/sites-available/{d}.conf"),
            )?;
        }
    }
    Ok(())
}

fn php_fpm(t: &mut Tree) -> Result<()> {
    for v in ["8.1", "8.2"] {
        t.file(
            &format!("etc/php/{v}/fpm/php-fpm.conf"),
            format!(
                "[global]\npid = /run/php/php{v}-fpm.pid\nerror_log = /var/log/php{v}-fpm.log\nemergency_restart_threshold = 10\nemergency_restart_interval = 1m\ninclude=/etc/php/{v}/fpm/pool.d/*.conf\n"
            ),
        )?;
        t.file(
            &format!("etc/php/{v}/fpm/php.ini"),
            "[PHP]\nengine = On\nexpose_php = Off\nmax_execution_time = 60\nmemory_limit = 256M\npost_max_size = 64M\nupload_max_filesize = 64M\ndate.timezone = Europe/Prague\n[opcache]\nopcache.enable = 1\nopcache.memory_consumption = 128\n",
        )?;
        t.file(
            &format!("etc/php/{v}/fpm/pool.d/www.conf"),
            format!(
                "[www]\nuser = www-data\ngroup = www-data\nlisten = /run/php/php{v}-fpm.sock\nlisten.owner = www-data\nlisten.group = www-data\npm = ondemand\npm.max_children = 5\n"
            ),
        )?;
        for c in CUSTOMERS.iter().filter(|c| c.php == v) {
            let l = c.login;
            t.file(
                &format!("etc/php/{v}/fpm/pool.d/{l}.conf"),
                format!(
                    "; Managed by hostpanel: customer {id}.\n[{l}]\nuser = {l}\ngroup = {l}\nlisten = /run/php/php{v}-fpm-{l}.sock\nlisten.owner = www-data\nlisten.group = www-data\nlisten.mode = 0660\npm = ondemand\npm.max_children = 8\npm.process_idle_timeout = 30s\npm.max_requests = 500\nchdir = /var/www/{l}\nphp_admin_value[open_basedir] = /var/www/{l}:/tmp\nphp_admin_value[upload_tmp_dir] = /var/www/{l}/tmp\nphp_admin_value[session.save_path] = /var/www/{l}/tmp\nphp_admin_value[sendmail_path] = /usr/sbin/sendmail -t -i -f webmaster@{d}\nphp_admin_flag[log_errors] = on\n",
                    id = c.id,
                    d = c.domains[0]
                ),
            )?;
        }
    }
    Ok(())
}

fn postfix(t: &mut Tree) -> Result<()> {
    t.file(
        "etc/postfix/main.cf",
        format!(
            "# See /usr/share/postfix/main.cf.dist for a commented, more complete version\nsmtpd_banner = $myhostname ESMTP $mail_name\nbiff = no\nappend_dot_mydomain = no\nreadme_directory = no\ncompatibility_level = 3.6\n\nmyhostname = {HOSTNAME}\nmyorigin = /etc/mailname\nmydestination = $myhostname, localhost.localdomain, localhost\nmynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128\ninet_interfaces = all\ninet_protocols = all\nrecipient_delimiter = +\nmailbox_size_limit = 0\nmessage_size_limit = 52428800\n\nsmtpd_tls_cert_file = /etc/letsencrypt/live/{d}/fullchain.pem\nsmtpd_tls_key_file = /etc/letsencrypt/live/{d}/privkey.pem\nsmtpd_tls_security_level = may\nsmtp_tls_security_level = may\nsmtpd_tls_auth_only = yes\n\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_path = private/auth\nsmtpd_sasl_auth_enable = yes\nsmtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination\nsmtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, reject_unknown_recipient_domain\n\nvirtual_mailbox_domains = hash:/etc/postfix/virtual_mailbox_domains\nvirtual_mailbox_maps = hash:/etc/postfix/virtual_mailbox_maps\nvirtual_alias_maps = hash:/etc/postfix/virtual_alias_maps\nvirtual_transport = lmtp:unix:private/dovecot-lmtp\nvirtual_uid_maps = static:{VMAIL_ID}\nvirtual_gid_maps = static:{VMAIL_ID}\n\nsmtpd_milters = inet:127.0.0.1:11332\nnon_smtpd_milters = $smtpd_milters\nmilter_default_action = accept\nmilter_protocol = 6\n",
            d = CUSTOMERS[0].domains[0]
        ),
    )?;
    t.file("etc/mailname", format!("{HOSTNAME}\n"))?;
    t.file(
        "etc/postfix/master.cf",
        "# service type  private unpriv  chroot  wakeup  maxproc command + args\nsmtp      inet  n       -       y       -       -       smtpd\nsubmission inet n       -       y       -       -       smtpd\n  -o syslog_name=postfix/submission\n  -o smtpd_tls_security_level=encrypt\n  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\nsmtps     inet  n       -       y       -       -       smtpd\n  -o syslog_name=postfix/smtps\n  -o smtpd_tls_wrappermode=yes\n  -o smtpd_sasl_auth_enable=yes\npickup    unix  n       -       y       60      1       pickup\ncleanup   unix  n       -       y       -       0       cleanup\nqmgr      unix  n       -       n       300     1       qmgr\ntlsmgr    unix  -       -       y       1000?   1       tlsmgr\nrewrite   unix  -       -       y       -       -       trivial-rewrite\nbounce    unix  -       -       y       -       0       bounce\ndefer     unix  -       -       y       -       0       bounce\ntrace     unix  -       -       y       -       0       bounce\nverify    unix  -       -       y       -       1       verify\nflush     unix  n       -       y       1000?   0       flush\nproxymap  unix  -       -       n       -       -       proxymap\nsmtp      unix  -       -       y       -       -       smtp\nrelay     unix  -       -       y       -       -       smtp\nshowq     unix  n       -       y       -       -       showq\nerror     unix  -       -       y       -       -       error\nretry     unix  -       -       y       -       -       error\ndiscard   unix  -       -       y       -       -       discard\nlocal     unix  -       n       n       -       -       local\nvirtual   unix  -       n       n       -       -       virtual\nlmtp      unix  -       -       y       -       -       lmtp\nanvil     unix  -       -       y       -       1       anvil\nscache    unix  -       -       y       -       1       scache\npostlog   unix-dgram n  -       n       -       1       postlogd\n",
    )?;
    let (mut domains, mut boxes, mut aliases) = (String::new(), String::new(), String::new());
    for c in CUSTOMERS {
        for d in c.domains {
            let _ = writeln!(domains, "{d}\tOK");
            let _ = writeln!(aliases, "postmaster@{d}\t{}", mailbox_of(c, d));
            let _ = writeln!(aliases, "abuse@{d}\t{}", mailbox_of(c, d));
        }
        for (l, d) in c.mailboxes {
            let _ = writeln!(boxes, "{l}@{d}\t{d}/{l}/");
        }
    }
    let _ = writeln!(
        aliases,
        "sales@acme-trading.example\tinfo@acme-trading.example, jan.novak@acme-trading.example"
    );
    t.file("etc/postfix/virtual_mailbox_domains", domains)?;
    t.file("etc/postfix/virtual_mailbox_maps", boxes)?;
    t.file("etc/postfix/virtual_alias_maps", aliases)
}

/// The first mailbox of a customer on a domain, else its first mailbox.
fn mailbox_of(c: &Customer, domain: &str) -> String {
    let (l, d) = c
        .mailboxes
        .iter()
        .find(|(_, d)| *d == domain)
        .unwrap_or(&c.mailboxes[0]);
    format!("{l}@{d}")
}

fn dovecot(t: &mut Tree) -> Result<()> {
    t.file(
        "etc/dovecot/dovecot.conf",
        "# Dovecot configuration (hostpanel)\nprotocols = imap pop3 lmtp sieve\nlisten = *, ::\ndict {\n}\n!include conf.d/*.conf\n!include_try local.conf\n",
    )?;
    t.file(
        "etc/dovecot/conf.d/10-auth.conf",
        "disable_plaintext_auth = yes\nauth_mechanisms = plain login\n!include auth-passwdfile.conf.ext\n",
    )?;
    t.file(
        "etc/dovecot/conf.d/auth-passwdfile.conf.ext",
        "passdb {\n  driver = passwd-file\n  args = scheme=SHA512-CRYPT username_format=%u /etc/dovecot/users\n}\nuserdb {\n  driver = passwd-file\n  args = username_format=%u /etc/dovecot/users\n}\n",
    )?;
    t.file(
        "etc/dovecot/conf.d/10-mail.conf",
        format!(
            "mail_location = maildir:/var/vmail/%d/%n\nmail_uid = {VMAIL_ID}\nmail_gid = {VMAIL_ID}\nfirst_valid_uid = {VMAIL_ID}\nlast_valid_uid = {VMAIL_ID}\nmail_privileged_group = mail\nnamespace inbox {{\n  inbox = yes\n  separator = .\n}}\n"
        ),
    )?;
    t.file(
        "etc/dovecot/conf.d/10-master.conf",
        "service lmtp {\n  unix_listener /var/spool/postfix/private/dovecot-lmtp {\n    mode = 0600\n    user = postfix\n    group = postfix\n  }\n}\nservice auth {\n  unix_listener /var/spool/postfix/private/auth {\n    mode = 0660\n    user = postfix\n    group = postfix\n  }\n}\n",
    )?;
    t.file(
        "etc/dovecot/conf.d/10-ssl.conf",
        format!(
            "ssl = required\nssl_cert = </etc/letsencrypt/live/{d}/fullchain.pem\nssl_key = </etc/letsencrypt/live/{d}/privkey.pem\nssl_min_protocol = TLSv1.2\n",
            d = CUSTOMERS[0].domains[0]
        ),
    )?;
    t.file(
        "etc/dovecot/conf.d/15-mailboxes.conf",
        "namespace inbox {\n  mailbox Drafts {\n    special_use = \\Drafts\n  }\n  mailbox Junk {\n    special_use = \\Junk\n    auto = subscribe\n  }\n  mailbox Sent {\n    special_use = \\Sent\n    auto = subscribe\n  }\n  mailbox Trash {\n    special_use = \\Trash\n  }\n}\n",
    )?;
    t.file(
        "etc/dovecot/conf.d/90-sieve.conf",
        "plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n  sieve_before = /etc/dovecot/sieve/spam-to-junk.sieve\n}\n",
    )?;
    t.file(
        "etc/dovecot/sieve/spam-to-junk.sieve",
        "require [\"fileinto\"];\nif header :is \"X-Spam\" \"Yes\" {\n  fileinto \"Junk\";\n  stop;\n}\n",
    )?;
    let mut users = String::new();
    for c in CUSTOMERS {
        for (l, d) in c.mailboxes {
            let _ = writeln!(
                users,
                "{l}@{d}:{{SHA512-CRYPT}}{}:{VMAIL_ID}:{VMAIL_ID}::/var/vmail/{d}/{l}::userdb_quota_rule=*:storage=2G",
                fake_sha512_crypt(&format!("{l}@{d}"))
            );
        }
    }
    t.file_mode("etc/dovecot/users", users, 0o640)
}

fn dns(t: &mut Tree) -> Result<()> {
    t.file_mode(
        "etc/powerdns/pdns.conf",
        "# PowerDNS Authoritative Server (hostpanel)\nlaunch=gsqlite3\ngsqlite3-database=/var/lib/powerdns/pdns.sqlite3\ngsqlite3-dnssec=yes\nlocal-address=203.0.113.10\nlocal-port=53\nsetgid=pdns\nsetuid=pdns\napi=yes\napi-key=PLACEHOLDER-not-a-real-api-key\nwebserver=yes\nwebserver-address=127.0.0.1\nwebserver-port=8081\ndefault-soa-content=ns1.hostpanel.example hostmaster.@ 0 10800 3600 604800 3600\ninclude-dir=/etc/powerdns/pdns.d\n",
        0o640,
    )?;
    t.file(
        "etc/powerdns/pdns.d/allow-axfr.conf",
        "allow-axfr-ips=198.51.100.54/32\nprimary=yes\n",
    )?;
    t.file(
        "etc/unbound/unbound.conf",
        "# Unbound configuration file for Debian.\ninclude-toplevel: \"/etc/unbound/unbound.conf.d/*.conf\"\n",
    )?;
    t.file(
        "etc/unbound/unbound.conf.d/resolver.conf",
        "server:\n    interface: 127.0.0.1\n    interface: ::1\n    access-control: 127.0.0.0/8 allow\n    do-not-query-localhost: no\n    auto-trust-anchor-file: \"/var/lib/unbound/root.key\"\n    qname-minimisation: yes\n    harden-dnssec-stripped: yes\n    prefetch: yes\n    # The customers' zones are answered by the local PowerDNS.\n    domain-insecure: \"example\"\nforward-zone:\n    name: \".\"\n    forward-addr: 198.51.100.53\n",
    )?;
    // The root zone's KSK-2017 trust anchor is public data (IANA).
    t.file(
        "var/lib/unbound/root.key",
        "; autotrust trust anchor file\n;;id: . 1\n. 172800 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D ;{id = 20326 (ksk), size = 2048b}\n",
    )
}

fn rspamd(t: &mut Tree) -> Result<()> {
    t.file(
        "etc/rspamd/local.d/classifier-bayes.conf",
        "backend = \"sqlite3\";\nautolearn = true;\nstatfile {\n  symbol = \"BAYES_SPAM\";\n  spam = true;\n  path = \"/var/lib/rspamd/bayes.spam.sqlite\";\n}\nstatfile {\n  symbol = \"BAYES_HAM\";\n  spam = false;\n  path = \"/var/lib/rspamd/bayes.ham.sqlite\";\n}\n",
    )?;
    t.file(
        "etc/rspamd/local.d/actions.conf",
        "reject = 15;\nadd_header = 6;\ngreylist = 4;\n",
    )?;
    t.file(
        "etc/rspamd/local.d/milter_headers.conf",
        "use = [\"x-spamd-bar\", \"x-spam-level\", \"authentication-results\", \"x-spam-status\"];\nextended_spam_headers = true;\n",
    )?;
    t.file(
        "etc/rspamd/local.d/worker-controller.inc",
        format!(
            "# fake hash (not of any password)\npassword = \"{}\";\n",
            fake_sha512_crypt("rspamd-controller")
        ),
    )?;
    let mut dkim = String::from(
        "selector = \"mail\";\npath = \"/var/lib/rspamd/dkim/$domain.$selector.key\";\nallow_username_mismatch = true;\n",
    );
    for c in CUSTOMERS {
        for d in c.domains {
            let _ = writeln!(dkim, "# {d}: customer {}", c.id);
        }
    }
    t.file("etc/rspamd/local.d/dkim_signing.conf", dkim)?;
    t.file(
        "var/lib/rspamd/PLACEHOLDER.txt",
        "Placeholder Bayes data of the mailvault sample panel: bayes.spam.sqlite and\nbayes.ham.sqlite here are not real rspamd statistics files (rspamd would\nreject them); a backup must carry them byte for byte all the same.\n",
    )?;
    let mut rng = Rng::new(seed_of("rspamd-bayes"));
    for kind in ["spam", "ham"] {
        let mut data =
            format!("PLACEHOLDER rspamd bayes {kind} statistics (mailvault sample)\n").into_bytes();
        let mut noise = vec![0u8; 2048];
        rng.fill(&mut noise);
        data.extend_from_slice(&noise);
        t.file(&format!("var/lib/rspamd/bayes.{kind}.sqlite"), data)?;
    }
    for c in CUSTOMERS {
        for d in c.domains {
            t.file_mode(
                &format!("var/lib/rspamd/dkim/{d}.mail.key"),
                placeholder_key(&format!("dkim {d}")),
                0o600,
            )?;
        }
    }
    Ok(())
}

/// A PEM-looking block that says it is not a real key.
fn placeholder_key(what: &str) -> String {
    let mut rng = Rng::new(seed_of(what));
    let body = super::base64_block(&mut rng, 192).replace("\r\n", "\n");
    format!(
        "# PLACEHOLDER ({what}): not a real key, generated by mailvault sample-panel\n-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n"
    )
}

fn placeholder_cert(what: &str) -> String {
    let mut rng = Rng::new(seed_of(what));
    let body = super::base64_block(&mut rng, 384).replace("\r\n", "\n");
    format!(
        "# PLACEHOLDER ({what}): not a real certificate, generated by mailvault sample-panel\n-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"
    )
}

fn small_services(t: &mut Tree) -> Result<()> {
    t.file(
        "etc/proftpd/proftpd.conf",
        "Include /etc/proftpd/modules.conf\nServerName \"srv1 FTP\"\nServerType standalone\nDefaultServer on\nUseIPv6 on\nPort 21\nPassivePorts 49152 49407\nUser proftpd\nGroup nogroup\nUmask 022 022\nDefaultRoot ~\nRequireValidShell off\nMaxInstances 30\nAllowOverwrite on\nInclude /etc/proftpd/tls.conf\nInclude /etc/proftpd/conf.d/\n",
    )?;
    t.file(
        "etc/proftpd/modules.conf",
        "ModulePath /usr/lib/proftpd\nModuleControlsACLs insmod,rmmod allow user root\nLoadModule mod_tls.c\n",
    )?;
    t.file(
        "etc/proftpd/tls.conf",
        format!(
            "<IfModule mod_tls.c>\nTLSEngine on\nTLSLog /var/log/proftpd/tls.log\nTLSProtocol TLSv1.2 TLSv1.3\nTLSRSACertificateFile /etc/letsencrypt/live/{d}/fullchain.pem\nTLSRSACertificateKeyFile /etc/letsencrypt/live/{d}/privkey.pem\nTLSRequired on\n</IfModule>\n",
            d = CUSTOMERS[0].domains[0]
        ),
    )?;
    let logins: Vec<&str> = CUSTOMERS.iter().map(|c| c.login).collect();
    t.file(
        "etc/proftpd/conf.d/customers.conf",
        format!(
            "# Managed by hostpanel: customers allowed to log in over FTP.\n<Limit LOGIN>\n  AllowUser {}\n  DenyAll\n</Limit>\n",
            logins.join(",")
        ),
    )?;
    t.file(
        "etc/fail2ban/jail.local",
        format!(
            "[DEFAULT]\nbantime = 1h\nfindtime = 10m\nmaxretry = 5\nignoreip = 127.0.0.1/8 ::1 {IPV4}\nbanaction = nftables-multiport\nbackend = systemd\n\n[sshd]\nenabled = true\n\n[postfix-sasl]\nenabled = true\nport = smtp,submission,smtps\n\n[dovecot]\nenabled = true\nport = imap,imaps,pop3,pop3s\n\n[proftpd]\nenabled = true\n\n[nginx-http-auth]\nenabled = true\n\n[recidive]\nenabled = true\nbantime = 1w\n"
        ),
    )?;
    t.file(
        "etc/nftables.conf",
        "#!/usr/sbin/nft -f\nflush ruleset\n\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established,related accept\n\t\tct state invalid drop\n\t\tiif lo accept\n\t\tip protocol icmp accept\n\t\tip6 nexthdr ipv6-icmp accept\n\t\ttcp dport { 22, 25, 53, 80, 110, 143, 443, 465, 587, 993, 995, 21, 49152-49407 } accept\n\t\tudp dport 53 accept\n\t\ttcp dport 11334 ip saddr 198.51.100.0/24 accept\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t}\n}\n",
    )
}

fn letsencrypt(t: &mut Tree) -> Result<()> {
    t.file(
        "etc/letsencrypt/cli.ini",
        "max-log-backups = 0\npreconfigured-renewal = True\n",
    )?;
    t.file(
        "etc/letsencrypt/accounts/acme-v02.api.letsencrypt.org/directory/PLACEHOLDER.txt",
        "The ACME account key is not part of the mailvault sample panel.\n",
    )?;
    for c in CUSTOMERS {
        for d in c.domains {
            for (name, content) in [
                ("cert", placeholder_cert(&format!("{d} leaf"))),
                ("chain", placeholder_cert("R11 intermediate")),
                (
                    "fullchain",
                    placeholder_cert(&format!("{d} leaf")) + &placeholder_cert("R11 intermediate"),
                ),
            ] {
                t.file(&format!("etc/letsencrypt/archive/{d}/{name}1.pem"), content)?;
                t.link(
                    &format!("etc/letsencrypt/live/{d}/{name}.pem"),
                    &format!("../../archive/{d}/{name}1.pem"),
                )?;
            }
            t.file_mode(
                &format!("etc/letsencrypt/archive/{d}/privkey1.pem"),
                placeholder_key(&format!("tls {d}")),
                0o600,
            )?;
            t.link(
                &format!("etc/letsencrypt/live/{d}/privkey.pem"),
                &format!("../../archive/{d}/privkey1.pem"),
            )?;
            t.file(
                &format!("etc/letsencrypt/live/{d}/README"),
                "This directory contains your keys and certificates.\n\n`privkey.pem`  : the private key for your certificate.\n`fullchain.pem`: the certificate file used in most server software.\n`chain.pem`    : used for OCSP stapling in Nginx >=1.3.7.\n`cert.pem`     : will break many server configurations, and should not be used\n                 without reading further documentation (see link below).\n\n(mailvault sample panel: every PEM file here is a placeholder, not a real certificate or key.)\n",
            )?;
            t.file(
                &format!("etc/letsencrypt/renewal/{d}.conf"),
                format!(
                    "# renew_before_expiry = 30 days\nversion = 2.1.0\narchive_dir = /etc/letsencrypt/archive/{d}\ncert = /etc/letsencrypt/live/{d}/cert.pem\nprivkey = /etc/letsencrypt/live/{d}/privkey.pem\nchain = /etc/letsencrypt/live/{d}/chain.pem\nfullchain = /etc/letsencrypt/live/{d}/fullchain.pem\n\n[renewalparams]\naccount = 0123456789abcdef0123456789abcdef\nauthenticator = webroot\nwebroot_path = /var/www/letsencrypt,\nserver = https://acme-v02.api.letsencrypt.org/directory\nkey_type = ecdsa\n[[webroot_map]]\n{d} = /var/www/letsencrypt\nwww.{d} = /var/www/letsencrypt\n"
                ),
            )?;
        }
    }
    t.dir("var/www/letsencrypt/.well-known/acme-challenge")
}

fn cron(t: &mut Tree) -> Result<()> {
    t.file(
        "etc/crontab",
        "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n\n# m h dom mon dow user\tcommand\n17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }\n47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }\n52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }\n",
    )?;
    t.file(
        "etc/cron.d/certbot",
        "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n0 */12 * * * root test -x /usr/bin/certbot && perl -e 'sleep int(rand(43200))' && certbot -q renew --deploy-hook 'systemctl reload nginx postfix dovecot'\n",
    )?;
    t.file(
        "etc/cron.d/hostpanel",
        "# hostpanel agent jobs\n*/5 * * * * root /usr/local/bin/hostpanel-agent sync --quiet\n30 2 * * * root /usr/local/bin/mailvault panel backup --target s3://backups/srv1 --key /etc/mailvault/key --quiet\n",
    )?;
    for c in CUSTOMERS {
        let d = c.domains[0];
        let job = if c.database.is_some() {
            format!(
                "*/15 * * * * /usr/bin/php{} /var/www/{}/{d}/public_html/wp-cron.php >/dev/null 2>&1\n",
                c.php, c.login
            )
        } else {
            format!(
                "0 3 * * 0 find /var/www/{}/tmp -type f -mtime +7 -delete\n",
                c.login
            )
        };
        t.file_mode(
            &format!("var/spool/cron/crontabs/{}", c.login),
            format!("# DO NOT EDIT THIS FILE - edit the master and reinstall.\n# (crontab of {} installed by hostpanel)\nMAILTO=webmaster@{d}\n{job}", c.login),
            0o600,
        )?;
    }
    Ok(())
}

fn web_roots(t: &mut Tree) -> Result<()> {
    for c in CUSTOMERS {
        let l = c.login;
        t.dir(&format!("var/www/{l}/tmp"))?;
        t.file(
            &format!("var/www/{l}/.bash_logout"),
            "# ~/.bash_logout: executed by bash(1) when login shell exits.\n",
        )?;
        for d in c.domains {
            let base = format!("var/www/{l}/{d}/public_html");
            t.dir(&format!("var/www/{l}/{d}/logs"))?;
            match (c.database, d == &c.domains[0]) {
                (Some(db), true) => {
                    t.file(
                        &format!("{base}/index.php"),
                        "<?php\n/** Front to the WordPress application. */\ndefine( 'WP_USE_THEMES', true );\nrequire __DIR__ . '/wp-blog-header.php';\n",
                    )?;
                    t.file_mode(
                        &format!("{base}/wp-config.php"),
                        format!(
                            "<?php\ndefine( 'DB_NAME', '{db}' );\ndefine( 'DB_USER', '{db}' );\ndefine( 'DB_PASSWORD', 'PLACEHOLDER-not-the-real-password' );\ndefine( 'DB_HOST', 'localhost' );\ndefine( 'DB_CHARSET', 'utf8mb4' );\n$table_prefix = 'wp_';\ndefine( 'WP_DEBUG', false );\nif ( ! defined( 'ABSPATH' ) ) {{\n\tdefine( 'ABSPATH', __DIR__ . '/' );\n}}\nrequire_once ABSPATH . 'wp-settings.php';\n"
                        ),
                        0o640,
                    )?;
                    t.file(
                        &format!("{base}/wp-content/uploads/2026/09/storefront.svg"),
                        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"120\" height=\"40\"><text x=\"4\" y=\"26\">{}</text></svg>\n", c.name),
                    )?;
                }
                _ => {
                    t.file(
                        &format!("{base}/index.html"),
                        format!("<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{}</title><link rel=\"stylesheet\" href=\"/css/site.css\"></head>\n<body><h1>{}</h1><p>Welcome to {d}.</p></body>\n</html>\n", c.name, c.name),
                    )?;
                    t.file(
                        &format!("{base}/css/site.css"),
                        "body { font-family: sans-serif; margin: 2em auto; max-width: 40em; }\n",
                    )?;
                }
            }
            t.file(
                &format!("{base}/robots.txt"),
                "User-agent: *\nDisallow: /wp-admin/\n",
            )?;
            t.file(
                &format!("{base}/.htaccess"),
                "# kept from the Apache days; nginx ignores it\nOptions -Indexes\n",
            )?;
        }
    }
    Ok(())
}

fn maildirs(t: &mut Tree) -> Result<()> {
    let mut rng = Rng::new(seed_of("maildirs"));
    let mut n = 0u32;
    for c in CUSTOMERS {
        for (l, d) in c.mailboxes {
            let base = format!("var/vmail/{d}/{l}");
            for sub in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
                t.dir(&format!("{base}/{sub}"))?;
            }
            let me = format!("{l}@{d}");
            for (folder, flags, from, to) in [
                ("cur", ":2,S", "orders@supplier.example", me.as_str()),
                ("cur", ":2,RS", "newsletter@news.example", me.as_str()),
                ("new", "", "client@customer.example", me.as_str()),
                (".Sent/cur", ":2,S", me.as_str(), "client@customer.example"),
            ] {
                n += 1;
                let time = T0 - 86_400 * 3 + i64::from(n) * 3_607;
                let size = usize::try_from(rng.log_uniform(600, 6_000)).unwrap_or(600);
                let m = String::from_utf8_lossy(&message(&mut rng, from, to, time, size, 0))
                    .replace("\r\n", "\n");
                let name = format!(
                    "{time}.M{}P{}.srv1,S={},W={}{flags}",
                    rng.below(1_000_000),
                    1000 + rng.below(30_000),
                    m.len(),
                    m.len() + m.matches('\n').count()
                );
                t.file(&format!("{base}/{folder}/{name}"), m)?;
            }
            t.file(&format!("{base}/subscriptions"), "Sent\n")?;
        }
    }
    Ok(())
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `.sample/panel.sql`: the panel's PostgreSQL database, created by the script.
#[must_use]
pub fn panel_sql() -> String {
    let mut s = String::from(
        "-- mailvault sample panel: the hosting panel's PostgreSQL database.\n-- psql -v ON_ERROR_STOP=1 -f panel.sql (as a superuser; fails if database panel exists)\n\
         DO $$ BEGIN\n  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'panel') THEN CREATE ROLE panel LOGIN; END IF;\nEND $$;\n\
         CREATE DATABASE panel OWNER panel ENCODING 'UTF8' TEMPLATE template0;\n\\connect panel\nSET ROLE panel;\nBEGIN;\n\n",
    );
    s.push_str(
        "CREATE TABLE servers (\n  id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n  hostname text NOT NULL UNIQUE,\n  ipv4 inet NOT NULL,\n  roles text[] NOT NULL\n);\n\n\
         CREATE TABLE customers (\n  id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n  name text NOT NULL,\n  login text NOT NULL UNIQUE,\n  uid integer NOT NULL UNIQUE CHECK (uid >= 1000),\n  php_version text NOT NULL,\n  server_id integer NOT NULL REFERENCES servers(id),\n  created_at timestamptz NOT NULL\n);\n\n\
         CREATE TABLE domains (\n  id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n  customer_id integer NOT NULL REFERENCES customers(id) ON DELETE CASCADE,\n  name text NOT NULL UNIQUE,\n  document_root text NOT NULL,\n  ssl boolean NOT NULL DEFAULT true\n);\n\n\
         CREATE TABLE dns_zones (\n  id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n  domain_id integer NOT NULL UNIQUE REFERENCES domains(id) ON DELETE CASCADE,\n  pdns_domain_id integer NOT NULL,\n  serial bigint NOT NULL,\n  dnssec boolean NOT NULL DEFAULT false\n);\n\n\
         CREATE TABLE mailboxes (\n  id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n  domain_id integer NOT NULL REFERENCES domains(id) ON DELETE CASCADE,\n  local_part text NOT NULL,\n  password_hash text NOT NULL,\n  quota_mb integer NOT NULL DEFAULT 2048,\n  UNIQUE (domain_id, local_part)\n);\n\n\
         CREATE TABLE databases (\n  id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n  customer_id integer NOT NULL REFERENCES customers(id) ON DELETE CASCADE,\n  engine text NOT NULL CHECK (engine IN ('mariadb', 'postgresql')),\n  name text NOT NULL,\n  db_user text NOT NULL,\n  UNIQUE (engine, name)\n);\n\n\
         CREATE VIEW customer_overview AS\n  SELECT c.id, c.login, c.server_id,\n         (SELECT count(*) FROM domains d WHERE d.customer_id = c.id) AS domains,\n         (SELECT count(*) FROM databases b WHERE b.customer_id = c.id) AS databases\n  FROM customers c;\n\n",
    );
    let _ = writeln!(
        s,
        "INSERT INTO servers (id, hostname, ipv4, roles) VALUES ({SERVER_ID}, {}, '{IPV4}', '{{web,mail_storage,mail_gateway,dns}}');",
        sql_str(HOSTNAME)
    );
    let (mut dom_id, mut box_id, mut db_id) = (0, 0, 0);
    let mut domains = String::new();
    let mut zones = String::new();
    let mut boxes = String::new();
    let mut dbs = String::new();
    for c in CUSTOMERS {
        let _ = writeln!(
            s,
            "INSERT INTO customers (id, name, login, uid, php_version, server_id, created_at) VALUES ({}, {}, '{}', {}, '{}', {SERVER_ID}, '2024-0{}-15 09:30:00+00');",
            c.id,
            sql_str(c.name),
            c.login,
            c.uid,
            c.php,
            c.id + 1
        );
        for d in c.domains {
            dom_id += 1;
            let _ = writeln!(
                domains,
                "INSERT INTO domains (id, customer_id, name, document_root) VALUES ({dom_id}, {}, '{d}', '/var/www/{}/{d}/public_html');",
                c.id, c.login
            );
            let _ = writeln!(
                zones,
                "INSERT INTO dns_zones (id, domain_id, pdns_domain_id, serial) VALUES ({dom_id}, {dom_id}, {dom_id}, {});",
                zone_serial(dom_id)
            );
            for (l, _) in c.mailboxes.iter().filter(|(_, md)| md == d) {
                box_id += 1;
                let _ = writeln!(
                    boxes,
                    "INSERT INTO mailboxes (id, domain_id, local_part, password_hash) VALUES ({box_id}, {dom_id}, '{l}', '{{SHA512-CRYPT}}{}');",
                    fake_sha512_crypt(&format!("{l}@{d}"))
                );
            }
        }
        if let Some(db) = c.database {
            db_id += 1;
            let _ = writeln!(
                dbs,
                "INSERT INTO databases (id, customer_id, engine, name, db_user) VALUES ({db_id}, {}, 'mariadb', '{db}', '{db}');",
                c.id
            );
        }
    }
    for part in [domains, zones, boxes, dbs] {
        s.push_str(&part);
    }
    s.push('\n');
    for table in [
        "servers",
        "customers",
        "domains",
        "dns_zones",
        "mailboxes",
        "databases",
    ] {
        let _ = writeln!(
            s,
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}));"
        );
    }
    s.push_str("COMMIT;\n");
    s
}

fn zone_serial(id: u32) -> u64 {
    2_026_093_000 + u64::from(id)
}

/// `.sample/mariadb.sql`: the customers' MariaDB databases, users and grants.
#[must_use]
pub fn mariadb_sql() -> String {
    let mut s = String::from(
        "-- mailvault sample panel: the customers' MariaDB databases.\n-- mariadb < mariadb.sql (as an account with all privileges; fails if a database or user exists)\n\n",
    );
    let mut rng = Rng::new(seed_of("mariadb"));
    for c in CUSTOMERS {
        let Some(db) = c.database else { continue };
        let d = c.domains[0];
        let _ = writeln!(
            s,
            "CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n\
             CREATE USER '{db}'@'localhost' IDENTIFIED BY PASSWORD '*{}';\n\
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER ON `{db}`.* TO '{db}'@'localhost';\n\
             USE `{db}`;\n",
            hex(&mut rng, 40)
        );
        let definer = format!("DEFINER=`{db}`@`localhost`");
        if db == "acme_wp" {
            let _ = writeln!(
                s,
                "CREATE TABLE wp_options (\n  option_id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  option_name varchar(191) NOT NULL UNIQUE,\n  option_value longtext NOT NULL,\n  autoload varchar(20) NOT NULL DEFAULT 'yes'\n) ENGINE=InnoDB;\n\
                 CREATE TABLE wp_users (\n  ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  user_login varchar(60) NOT NULL,\n  user_pass varchar(255) NOT NULL,\n  user_email varchar(100) NOT NULL,\n  user_registered datetime NOT NULL\n) ENGINE=InnoDB;\n\
                 CREATE TABLE wp_posts (\n  ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  post_author bigint unsigned NOT NULL,\n  post_date datetime NOT NULL,\n  post_title text NOT NULL,\n  post_content longtext NOT NULL,\n  post_status varchar(20) NOT NULL DEFAULT 'publish',\n  comment_count bigint NOT NULL DEFAULT 0,\n  KEY post_author (post_author)\n) ENGINE=InnoDB;\n\
                 CREATE TABLE wp_comments (\n  comment_ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  comment_post_ID bigint unsigned NOT NULL,\n  comment_author tinytext NOT NULL,\n  comment_date datetime NOT NULL,\n  comment_content text NOT NULL\n) ENGINE=InnoDB;\n\
                 INSERT INTO wp_options (option_name, option_value) VALUES ('siteurl', 'https://{d}'), ('home', 'https://{d}'), ('blogname', {}), ('admin_email', 'info@{d}');\n\
                 INSERT INTO wp_users (user_login, user_pass, user_email, user_registered) VALUES ('admin', '$P$B{}', 'info@{d}', '2024-02-15 09:31:00'), ('jan', '$P$B{}', 'jan.novak@{d}', '2024-03-01 10:00:00');\n\
                 INSERT INTO wp_posts (post_author, post_date, post_title, post_content) VALUES (1, '2024-02-16 08:00:00', 'Hello world', 'Welcome to our new site.'), (2, '2025-05-20 14:12:00', 'Spring catalogue', 'Our new products are in.'), (2, '2026-09-01 07:45:00', 'Autumn opening hours', 'Mon-Fri 8-17.');\n\n\
                 DELIMITER ;;\n\
                 CREATE {definer} TRIGGER wp_comments_count AFTER INSERT ON wp_comments FOR EACH ROW\n  UPDATE wp_posts SET comment_count = comment_count + 1 WHERE ID = NEW.comment_post_ID;;\n\
                 CREATE {definer} PROCEDURE wp_publish_scheduled(IN upto datetime)\nBEGIN\n  UPDATE wp_posts SET post_status = 'publish' WHERE post_status = 'future' AND post_date <= upto;\nEND;;\n\
                 CREATE {definer} FUNCTION wp_post_count(author bigint unsigned) RETURNS int READS SQL DATA\nBEGIN\n  RETURN (SELECT count(*) FROM wp_posts WHERE post_author = author AND post_status = 'publish');\nEND;;\n\
                 CREATE {definer} EVENT wp_publish_every_minute ON SCHEDULE EVERY 1 MINUTE STARTS '2026-01-01 00:00:00' ON COMPLETION PRESERVE ENABLE DO CALL wp_publish_scheduled(NOW());;\n\
                 DELIMITER ;\n\
                 INSERT INTO wp_comments (comment_post_ID, comment_author, comment_date, comment_content) VALUES (1, 'A WordPress Commenter', '2024-02-16 09:00:00', 'Hi, this is a comment.'), (2, 'Petra', '2025-05-21 10:30:00', 'Do you ship to Slovakia?');\n",
                sql_str(c.name),
                crypt64(&mut rng, 30),
                crypt64(&mut rng, 30)
            );
        } else {
            let _ = writeln!(
                s,
                "CREATE TABLE products (\n  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  sku varchar(32) NOT NULL UNIQUE,\n  title varchar(200) NOT NULL,\n  price decimal(10,2) NOT NULL,\n  stock int NOT NULL DEFAULT 0\n) ENGINE=InnoDB;\n\
                 CREATE TABLE orders (\n  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  email varchar(190) NOT NULL,\n  created datetime NOT NULL,\n  status enum('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',\n  total decimal(10,2) NOT NULL DEFAULT 0\n) ENGINE=InnoDB;\n\
                 CREATE TABLE order_items (\n  order_id int unsigned NOT NULL,\n  product_id int unsigned NOT NULL,\n  qty int unsigned NOT NULL,\n  unit_price decimal(10,2) NOT NULL,\n  PRIMARY KEY (order_id, product_id),\n  CONSTRAINT fk_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,\n  CONSTRAINT fk_product FOREIGN KEY (product_id) REFERENCES products (id)\n) ENGINE=InnoDB;\n\
                 INSERT INTO products (sku, title, price, stock) VALUES ('BF-POSTER-A2', 'Poster A2, matte', 24.90, 40), ('BF-MUG', 'Studio mug', 12.50, 120), ('BF-TOTE', 'Canvas tote bag', 18.00, 65), ('BF-ZINE-07', 'Zine #7', 8.00, 15);\n\
                 INSERT INTO orders (email, created, status) VALUES ('kim@customer.example', '2026-09-12 18:02:11', 'paid'), ('lee@customer.example', '2026-09-20 07:40:00', 'shipped');\n\n\
                 DELIMITER ;;\n\
                 CREATE {definer} TRIGGER order_items_stock AFTER INSERT ON order_items FOR EACH ROW\nBEGIN\n  UPDATE products SET stock = stock - NEW.qty WHERE id = NEW.product_id;\n  UPDATE orders SET total = total + NEW.qty * NEW.unit_price WHERE id = NEW.order_id;\nEND;;\n\
                 CREATE {definer} FUNCTION order_total(oid int unsigned) RETURNS decimal(10,2) READS SQL DATA\nBEGIN\n  RETURN (SELECT COALESCE(SUM(qty * unit_price), 0) FROM order_items WHERE order_id = oid);\nEND;;\n\
                 CREATE {definer} PROCEDURE cancel_stale_orders(IN days int)\nBEGIN\n  UPDATE orders SET status = 'cancelled' WHERE status = 'new' AND created < NOW() - INTERVAL days DAY;\nEND;;\n\
                 CREATE {definer} EVENT nightly_cancel_stale ON SCHEDULE EVERY 1 DAY STARTS '2026-01-01 03:00:00' ON COMPLETION PRESERVE ENABLE DO CALL cancel_stale_orders(14);;\n\
                 DELIMITER ;\n\
                 INSERT INTO order_items (order_id, product_id, qty, unit_price) VALUES (1, 1, 2, 24.90), (1, 2, 1, 12.50), (2, 3, 1, 18.00);\n"
            );
        }
    }
    s.push_str("FLUSH PRIVILEGES;\n");
    s
}

/// `.sample/pdns.sql`: the PowerDNS gsqlite3 schema (domains, records) with
/// the customers' zones.
#[must_use]
pub fn pdns_sql() -> String {
    let mut s = String::from(
        "-- mailvault sample panel: PowerDNS gsqlite3 backend (schema subset of pdns 4.x)\n-- sqlite3 -bail /var/lib/powerdns/pdns.sqlite3 < pdns.sql\nPRAGMA foreign_keys = 1;\nBEGIN;\n\
         CREATE TABLE domains (\n  id                    INTEGER PRIMARY KEY,\n  name                  VARCHAR(255) NOT NULL COLLATE NOCASE,\n  master                VARCHAR(128) DEFAULT NULL,\n  last_check            INTEGER DEFAULT NULL,\n  type                  VARCHAR(8) NOT NULL,\n  notified_serial       INTEGER DEFAULT NULL,\n  account               VARCHAR(40) DEFAULT NULL,\n  options               VARCHAR(65535) DEFAULT NULL,\n  catalog               VARCHAR(255) DEFAULT NULL\n);\nCREATE UNIQUE INDEX name_index ON domains(name);\n\n\
         CREATE TABLE records (\n  id                    INTEGER PRIMARY KEY,\n  domain_id             INTEGER DEFAULT NULL,\n  name                  VARCHAR(255) DEFAULT NULL,\n  type                  VARCHAR(10) DEFAULT NULL,\n  content               VARCHAR(65535) DEFAULT NULL,\n  ttl                   INTEGER DEFAULT NULL,\n  prio                  INTEGER DEFAULT NULL,\n  disabled              BOOLEAN DEFAULT 0,\n  ordername             VARCHAR(255),\n  auth                  BOOL DEFAULT 1,\n  FOREIGN KEY(domain_id) REFERENCES domains(id) ON DELETE CASCADE ON UPDATE CASCADE\n);\nCREATE INDEX records_lookup_idx ON records(name, type);\nCREATE INDEX records_lookup_id_idx ON records(domain_id, name, type);\nCREATE INDEX records_order_idx ON records(domain_id, ordername);\n\n",
    );
    let mut rng = Rng::new(seed_of("dkim-dns"));
    let mut id = 0u32;
    for c in CUSTOMERS {
        for d in c.domains {
            id += 1;
            let serial = zone_serial(id);
            let _ = writeln!(
                s,
                "INSERT INTO domains (id, name, type, notified_serial, account) VALUES ({id}, '{d}', 'NATIVE', {serial}, '{}');",
                c.login
            );
            let dkim = super::base64_block(&mut rng, 160).replace("\r\n", "");
            let recs: Vec<(String, &str, String, u32)> = vec![
                (
                    d.to_string(),
                    "SOA",
                    format!(
                        "ns1.hostpanel.example. hostmaster.{d}. {serial} 10800 3600 604800 3600"
                    ),
                    0,
                ),
                (d.to_string(), "NS", "ns1.hostpanel.example.".into(), 0),
                (d.to_string(), "NS", "ns2.hostpanel.example.".into(), 0),
                (d.to_string(), "A", IPV4.into(), 0),
                (d.to_string(), "AAAA", IPV6.into(), 0),
                (d.to_string(), "MX", format!("mail.{d}."), 10),
                (
                    d.to_string(),
                    "TXT",
                    format!("\"v=spf1 mx a ip4:{IPV4} -all\""),
                    0,
                ),
                (format!("www.{d}"), "CNAME", format!("{d}."), 0),
                (format!("mail.{d}"), "A", IPV4.into(), 0),
                (
                    format!("_dmarc.{d}"),
                    "TXT",
                    format!("\"v=DMARC1; p=quarantine; rua=mailto:postmaster@{d}\""),
                    0,
                ),
                (
                    format!("mail._domainkey.{d}"),
                    "TXT",
                    format!("\"v=DKIM1; k=rsa; p={dkim}\""),
                    0,
                ),
            ];
            for (name, ty, content, prio) in recs {
                let _ = writeln!(
                    s,
                    "INSERT INTO records (domain_id, name, type, content, ttl, prio) VALUES ({id}, '{name}', '{ty}', {}, 3600, {prio});",
                    sql_str(&content)
                );
            }
        }
    }
    s.push_str("COMMIT;\n");
    s
}

/// A database server to load a seed into; the password comes from the
/// client's own environment variable (`PGPASSWORD`, `MYSQL_PWD`).
#[derive(Debug, Clone)]
pub struct DbServer {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Account with the rights to create databases and users.
    pub user: String,
}

/// Loads `.sample/panel.sql` under `root` into PostgreSQL with `psql`
/// (stops at the first error).
///
/// # Errors
/// [`Error::Invalid`] naming the server and the file when psql is missing or fails.
pub fn load_postgres(root: &Path, server: &DbServer) -> Result<()> {
    let file = root.join(".sample/panel.sql");
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(&server.host)
        .arg("-p")
        .arg(server.port.to_string())
        .arg("-U")
        .arg(&server.user)
        .args(["-d", "postgres", "-f"])
        .arg(&file);
    run_client(cmd, "psql", "PostgreSQL", server, &file, None)
}

/// Loads `.sample/mariadb.sql` under `root` into MariaDB with the `mariadb`
/// client (batch mode: stops at the first error).
///
/// # Errors
/// [`Error::Invalid`] naming the server and the file when the client is missing or fails.
pub fn load_mariadb(root: &Path, server: &DbServer) -> Result<()> {
    let file = root.join(".sample/mariadb.sql");
    let mut cmd = Command::new("mariadb");
    cmd.arg("--batch")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", server.host))
        .arg(format!("--port={}", server.port))
        .arg(format!("--user={}", server.user));
    run_client(cmd, "mariadb", "MariaDB", server, &file, Some(&file))
}

fn run_client(
    mut cmd: Command,
    client: &str,
    engine: &str,
    server: &DbServer,
    file: &Path,
    stdin: Option<&PathBuf>,
) -> Result<()> {
    let place = format!(
        "{engine} at {}:{} as {}",
        server.host, server.port, server.user
    );
    if let Some(f) = stdin {
        cmd.stdin(fs::File::open(f).map_err(Error::io("cannot read", f))?);
    }
    let out = cmd.output().map_err(|e| {
        Error::Invalid(format!(
            "cannot run `{client}` to load `{}` into {place}: {e} (install the {client} client)",
            file.display()
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "loading `{}` into {place} failed ({client} {}): {}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
