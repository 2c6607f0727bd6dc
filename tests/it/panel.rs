//! `mailvault sample-panel`: the sandbox "old server" of the disaster-recovery
//! tests. Deterministic, internally consistent (accounts, sites, pools, mail
//! maps, seeds), refuses a non-empty root, and its seeds load into real
//! PostgreSQL and MariaDB servers (scripts/servers/{postgres,mariadb}.sh).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{bin, ok, stderr, tree};

/// Symbolic links under `root`: relative path -> target.
fn links(root: &Path) -> BTreeMap<String, PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.path_is_symlink())
        .map(|e| {
            (
                e.path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string(),
                std::fs::read_link(e.path()).unwrap(),
            )
        })
        .collect()
}

fn write(root: &Path) {
    ok(&["sample-panel", "--root", root.to_str().unwrap()]);
}

#[test]
fn sample_panel_is_deterministic_and_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write(&a);
    write(&b);
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta, tb, "two runs must write the same bytes");
    assert_eq!(links(&a), links(&b));
    for needed in [
        "etc/nginx/nginx.conf",
        "etc/nginx/sites-available/acme-trading.example.conf",
        "etc/php/8.1/fpm/pool.d/bluefin.conf",
        "etc/php/8.2/fpm/pool.d/acme.conf",
        "etc/postfix/main.cf",
        "etc/postfix/master.cf",
        "etc/postfix/virtual_mailbox_maps",
        "etc/dovecot/dovecot.conf",
        "etc/dovecot/conf.d/10-mail.conf",
        "etc/powerdns/pdns.conf",
        "etc/rspamd/local.d/classifier-bayes.conf",
        "etc/proftpd/proftpd.conf",
        "etc/fail2ban/jail.local",
        "etc/nftables.conf",
        "etc/unbound/unbound.conf",
        "etc/letsencrypt/renewal/cafe-lumiere.example.conf",
        "etc/crontab",
        "etc/cron.d/certbot",
        "etc/hostname",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/netplan/01-netcfg.yaml",
        "etc/gshadow",
        "var/lib/rspamd/bayes.spam.sqlite",
        ".sample/panel.sql",
        ".sample/mariadb.sql",
        ".sample/pdns.sql",
    ] {
        assert!(ta.contains_key(needed), "{needed} missing");
    }
    let pdns = String::from_utf8_lossy(&ta["etc/powerdns/pdns.conf"]).into_owned();
    assert!(pdns.contains("launch=gsqlite3"), "{pdns}");
    assert!(
        pdns.contains("gsqlite3-database=/var/lib/powerdns/pdns.sqlite3"),
        "{pdns}"
    );
    // Every enabled site and Let's Encrypt live file points at a file that exists.
    let l = links(&a);
    assert!(l.len() >= 10, "{l:?}");
    for (rel, target) in &l {
        let resolved = if target.is_absolute() {
            a.join(target.strip_prefix("/").unwrap())
        } else {
            a.join(rel).parent().unwrap().join(target)
        };
        assert!(resolved.is_file(), "{rel} -> {target:?} dangles");
    }
    // Placeholders say so.
    for (rel, content) in &ta {
        if rel.ends_with(".pem") || (rel.ends_with(".key") && rel.contains("dkim")) {
            assert!(
                String::from_utf8_lossy(content).contains("PLACEHOLDER"),
                "{rel} does not say it is a placeholder"
            );
        }
    }
    // Maildirs: cur/new/tmp per mailbox, a few messages each.
    for mbox in ["acme-trading.example/info", "bluefin-studio.example/anna"] {
        for sub in ["cur", "new", "tmp"] {
            assert!(a.join("var/vmail").join(mbox).join(sub).is_dir());
        }
        let msgs = ta
            .keys()
            .filter(|k| k.starts_with(&format!("var/vmail/{mbox}/")) && k.contains(",S="))
            .count();
        assert!(msgs >= 3, "{mbox}: {msgs} messages");
    }
    if let Ok(o) = Command::new("sqlite3")
        .arg(a.join("var/lib/powerdns/pdns.sqlite3"))
        .arg("SELECT count(DISTINCT name) FROM domains; SELECT count(*) FROM records WHERE type = 'SOA';")
        .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "4\n4\n");
    }
}

/// `name:x:uid:gid:...` lines as field vectors.
fn table(root: &Path, rel: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(root.join(rel))
        .unwrap()
        .lines()
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

#[test]
fn sample_panel_accounts_are_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    write(&root);
    let passwd = table(&root, "etc/passwd");
    let shadow = table(&root, "etc/shadow");
    let group = table(&root, "etc/group");
    let gshadow = table(&root, "etc/gshadow");
    assert!(passwd.iter().all(|f| f.len() == 7), "passwd fields");
    assert!(shadow.iter().all(|f| f.len() == 9), "shadow fields");
    assert!(group.iter().all(|f| f.len() == 4), "group fields");
    assert!(gshadow.iter().all(|f| f.len() == 4), "gshadow fields");
    let uids: BTreeSet<&str> = passwd.iter().map(|f| f[2].as_str()).collect();
    assert_eq!(uids.len(), passwd.len(), "duplicate uid");
    let gids: BTreeMap<&str, &str> = group
        .iter()
        .map(|f| (f[2].as_str(), f[0].as_str()))
        .collect();
    assert_eq!(gids.len(), group.len(), "duplicate gid");
    let shadow_of: BTreeMap<&str, &str> = shadow
        .iter()
        .map(|f| (f[0].as_str(), f[1].as_str()))
        .collect();
    let gshadow_names: BTreeSet<&str> = gshadow.iter().map(|f| f[0].as_str()).collect();
    let panel_sql = std::fs::read_to_string(root.join(".sample/panel.sql")).unwrap();
    let mut customers = 0;
    for f in &passwd {
        let (name, uid, gid, home) = (&f[0], f[2].parse::<u32>().unwrap(), &f[3], &f[5]);
        assert!(
            gids.contains_key(gid.as_str()),
            "{name}: primary gid {gid} has no group"
        );
        assert!(
            shadow_of.contains_key(name.as_str()),
            "{name}: no shadow line"
        );
        if uid < 1000 || uid == 65534 {
            assert!(
                !shadow_of[name.as_str()].starts_with("$6$"),
                "system account {name} with a password"
            );
            continue;
        }
        customers += 1;
        assert_eq!(
            gids.get(f[2].as_str()),
            Some(&name.as_str()),
            "{name}: no own group"
        );
        assert!(
            gshadow_names.contains(name.as_str()),
            "{name}: no gshadow line"
        );
        let hash = shadow_of[name.as_str()];
        let parts: Vec<&str> = hash.split('$').collect();
        assert!(
            parts.len() == 4
                && parts[0].is_empty()
                && parts[1] == "6"
                && parts[2].len() == 16
                && parts[3].len() == 86
                && parts[2..].iter().all(|p| p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')),
            "{name}: {hash} is not shaped like a SHA-512 crypt hash"
        );
        assert_eq!(home, &format!("/var/www/{name}"), "{name}: home");
        assert!(
            root.join(home.trim_start_matches('/')).is_dir(),
            "{name}: {home} missing"
        );
        assert!(
            panel_sql.contains(&format!("'{name}', {uid},")),
            "{name} (uid {uid}) is not a customer of panel.sql"
        );
        assert!(
            std::fs::read_dir(root.join("etc/php")).unwrap().any(|v| v
                .unwrap()
                .path()
                .join(format!("fpm/pool.d/{name}.conf"))
                .is_file()),
            "{name}: no PHP-FPM pool"
        );
    }
    assert_eq!(customers, 3);
    // Every mailbox of the Postfix map has a maildir and a Dovecot user.
    let users = std::fs::read_to_string(root.join("etc/dovecot/users")).unwrap();
    let map = std::fs::read_to_string(root.join("etc/postfix/virtual_mailbox_maps")).unwrap();
    for line in map.lines() {
        let (addr, dir) = line.split_once('\t').unwrap();
        assert!(
            root.join("var/vmail").join(dir).join("cur").is_dir(),
            "{addr}: no maildir"
        );
        assert!(
            users.contains(&format!("{addr}:{{SHA512-CRYPT}}$6$")),
            "{addr}: no Dovecot user"
        );
    }
}

#[test]
fn sample_panel_refuses_a_non_empty_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("keep.txt"), "live data").unwrap();
    let before = tree(&root);
    let out = bin()
        .args(["sample-panel", "--root", root.to_str().unwrap()])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    assert!(code == 1 || code == 2, "exit {code}");
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(tree(&root), before);
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        1,
        "something was written"
    );
}

/// The values of a server's env file, or None (skipped) when it is not
/// sourced; a failure when `MAILVAULT_TEST_SERVERS=required`.
fn server_env(vars: &[&str], script: &str) -> Option<Vec<String>> {
    let vals: Option<Vec<String>> = vars.iter().map(|v| std::env::var(v).ok()).collect();
    if vals.is_none() {
        assert!(
            std::env::var("MAILVAULT_TEST_SERVERS").as_deref() != Ok("required"),
            "MAILVAULT_TEST_SERVERS=required but {vars:?} are not set: run {script} start and source its env file"
        );
        eprintln!("skipped: {} not set ({script})", vars[0]);
    }
    vals
}

fn psql(env: &[String], db: &str, sql: &str) -> String {
    let o = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &env[0],
            "-p",
            &env[1],
            "-U",
            &env[2],
            "-d",
            db,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", &env[3])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn mariadb(env: &[String], sql: &str) -> String {
    let o = Command::new("mariadb")
        .args([
            "--batch",
            "-N",
            "--protocol=TCP",
            "-h",
            &env[0],
            "-P",
            &env[1],
            "-u",
            &env[2],
            "-e",
            sql,
        ])
        .env("MYSQL_PWD", &env[3])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mariadb {sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn sample_panel_loads_into_postgres_and_mariadb() {
    let Some(pg) = server_env(
        &[
            "MAILVAULT_TEST_PG_HOST",
            "MAILVAULT_TEST_PG_PORT",
            "MAILVAULT_TEST_PG_USER",
            "MAILVAULT_TEST_PG_PASSWORD",
        ],
        "scripts/servers/postgres.sh",
    ) else {
        return;
    };
    let Some(my) = server_env(
        &[
            "MAILVAULT_TEST_MARIADB_HOST",
            "MAILVAULT_TEST_MARIADB_PORT",
            "MAILVAULT_TEST_MARIADB_USER",
            "MAILVAULT_TEST_MARIADB_PASSWORD",
        ],
        "scripts/servers/mariadb.sh",
    ) else {
        return;
    };
    // A previous run's databases (the seeds refuse to load over them).
    psql(
        &pg,
        "postgres",
        "DROP DATABASE IF EXISTS panel WITH (FORCE)",
    );
    mariadb(
        &my,
        "DROP DATABASE IF EXISTS acme_wp; DROP DATABASE IF EXISTS bluefin_shop; DROP USER IF EXISTS 'acme_wp'@'localhost', 'bluefin_shop'@'localhost'",
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    let load = |root: &Path| {
        bin()
            .args(["sample-panel", "--root", root.to_str().unwrap()])
            .args([
                "--pg-host",
                &pg[0],
                "--pg-port",
                &pg[1],
                "--pg-user",
                &pg[2],
            ])
            .args([
                "--mariadb-host",
                &my[0],
                "--mariadb-port",
                &my[1],
                "--mariadb-user",
                &my[2],
            ])
            .env("PGPASSWORD", &pg[3])
            .env("MYSQL_PWD", &my[3])
            .output()
            .unwrap()
    };
    let out = load(&root);
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(
        psql(
            &pg,
            "panel",
            "SELECT concat_ws(',', (SELECT count(*) FROM servers), (SELECT count(*) FROM customers), (SELECT count(*) FROM domains), \
             (SELECT count(*) FROM dns_zones), (SELECT count(*) FROM mailboxes), (SELECT count(*) FROM databases), \
             (SELECT string_agg(login || '/' || uid || '/' || server_id, ' ' ORDER BY id) FROM customers))"
        ),
        "1,3,4,4,6,2,acme/1001/1 bluefin/1002/1 lumiere/1003/1"
    );
    // The identity sequences continue after the seeded rows.
    assert_eq!(
        psql(
            &pg,
            "panel",
            "INSERT INTO customers (name, login, uid, php_version, server_id, created_at) VALUES ('x', 'x', 1100, '8.2', 1, now()) RETURNING id"
        ),
        "4"
    );

    let q = |sql: &str| mariadb(&my, sql);
    assert_eq!(
        q(
            "SELECT concat_ws(',', (SELECT count(*) FROM acme_wp.wp_posts), (SELECT count(*) FROM acme_wp.wp_comments), (SELECT count(*) FROM bluefin_shop.products), (SELECT count(*) FROM bluefin_shop.order_items))"
        ),
        "3,2,4,3"
    );
    for db in ["acme_wp", "bluefin_shop"] {
        assert_eq!(
            q(&format!(
                "SELECT group_concat(routine_type ORDER BY routine_type) FROM information_schema.routines WHERE routine_schema = '{db}' AND definer = '{db}@localhost'"
            )),
            "FUNCTION,PROCEDURE",
            "{db} routines"
        );
        assert_eq!(
            q(&format!(
                "SELECT count(*) FROM information_schema.triggers WHERE trigger_schema = '{db}'"
            )),
            "1",
            "{db} trigger"
        );
        assert_eq!(
            q(&format!(
                "SELECT count(*) FROM information_schema.events WHERE event_schema = '{db}' AND status = 'ENABLED'"
            )),
            "1",
            "{db} event"
        );
        let grants = q(&format!("SHOW GRANTS FOR '{db}'@'localhost'"));
        assert!(
            grants.contains(&format!("ON `{db}`.* TO `{db}`@`localhost`")),
            "{grants}"
        );
        assert!(grants.contains("IDENTIFIED BY PASSWORD '*"), "{grants}");
    }
    // The triggers ran on the seeded rows.
    assert_eq!(
        q("SELECT total FROM bluefin_shop.orders WHERE id = 1"),
        "62.30"
    );
    assert_eq!(q("SELECT acme_wp.wp_post_count(2)"), "2");

    // A second load stops at the existing database, naming server and file.
    let again = load(&tmp.path().join("again"));
    assert_eq!(again.status.code(), Some(1));
    let err = stderr(&again);
    assert!(
        err.contains("PostgreSQL at")
            && err.contains("panel.sql")
            && err.contains("already exists"),
        "{err}"
    );
}
