//! One function per subcommand: fill the options, call the library, print.

use std::process::ExitCode;

use anyhow::Context as _;
use mailvault::backup::{self, BackupOptions};
use mailvault::rotation::{self, RotationOptions};
use mailvault::sample;
use mailvault::schedule::{self, Schedules};
use mailvault_formats::{ArchiveKind, ArchiveName, ByteSize};
use mailvault_repo::crypt::{self, Key};
use mailvault_repo::storage::{LockMode, Storage};
use mailvault_repo::target::{OpenOptions, Target, open_location};
use mailvault_repo::{Repository, check};

use super::UsageError;
use super::args::{
    BackupArgs, Cli, Command, CompressionArg, CryptArgs, KeyArg, KeyCommand, Kind, RotationArgs,
    ScheduleCommand,
};
use super::printer;
use super::progress::Drawer;

/// Exit code: some items were skipped for a problem.
pub const EXIT_PARTIAL: u8 = 3;
/// Exit code: verify found damage.
pub const EXIT_DAMAGED: u8 = 5;

fn rotation_opts(r: &RotationArgs) -> RotationOptions {
    RotationOptions {
        keep_full: r.keep_full.map(|n| n as usize),
        keep_latest_differential_only: r.keep_latest_differential_only,
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Backup(a) => backup(a, quiet),
        Command::List { dir, key, json } => {
            let repo = Repository::from_arc(open_target(&dir, &key, None, None)?);
            // Readers share the lock; a writer's temporaries are its work in
            // progress, not leftovers: the listing says who is writing.
            let (lock, busy) = match repo.lock(LockMode::Shared, "list") {
                Ok(l) => (Some(l), None),
                Err(mailvault_repo::Error::Locked { holder, .. }) => (None, Some(holder)),
                Err(mailvault_repo::Error::NotFound(_)) => (None, None),
                Err(e) => return Err(e.into()),
            };
            let listing = repo.listing()?;
            drop(lock);
            printer::list(&listing, busy.as_deref(), json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { target, key, json } => verify(&target, &key, json, quiet),
        Command::Rotate {
            dir,
            key,
            rotation: r,
            dry_run,
            json,
        } => {
            let opts = rotation_opts(&r);
            if !opts.is_active() {
                return Err(UsageError(
                    "give --keep-full N and/or --keep-latest-differential-only".into(),
                )
                .into());
            }
            let repo = Repository::from_arc(open_target(&dir, &key, None, None)?);
            let lock = if dry_run {
                None
            } else {
                Some(repo.lock(LockMode::Exclusive, "rotate")?)
            };
            // Whoever holds the lock cleans up after interrupted runs.
            let removed = match &lock {
                Some(l) => repo.remove_leftovers(l)?,
                None => Vec::new(),
            };
            let plan = rotation::plan(repo.listing()?.sets, opts, None);
            if let Some(lock) = &lock {
                rotation::apply(&repo, lock, &plan)?;
            }
            printer::rotation(&plan, &removed, dry_run, json, quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Unlock { target, json } => {
            let storage = open_location(&target, None, &OpenOptions::default())
                .or_else(|_| Target::parse(&target)?.open(&OpenOptions::default()))?;
            let removed = storage.unlock()?;
            if json {
                printer::json(&removed)?;
            } else if !quiet {
                if removed.is_empty() {
                    println!("no lock to remove on {}", storage.location());
                }
                for r in &removed {
                    println!("removed the lock of {r}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule(sc) => schedule_cmd(sc, quiet),
        Command::MergeEml(a) => super::mail::merge::run(a, quiet),
        Command::Search(a) => super::mail::search::run(a, quiet),
        Command::Reindex(a) => super::mail::reindex::run(a, quiet),
        Command::Export(a) => super::mail::export::run(a, quiet),
        Command::Migrate(a) => super::mail::migrate::run(a, quiet),
        Command::Key(KeyCommand::Generate { out, json }) => {
            let info = crypt::generate_key_file(&out)?;
            printer::key_info(&info, true, json, quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Key(KeyCommand::Show { file, json }) => {
            let info = crypt::show_key_file(&file)?;
            printer::key_info(&info, false, json, quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Encrypt(a) => {
            let key = load_key(&a)?;
            let summary = crypt::encrypt_file(&a.input, &a.out, &key)?;
            printer::crypt_summary(&summary, "encrypted", a.json, quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Decrypt(a) => {
            let key = load_key(&a)?;
            let summary = crypt::decrypt_file(&a.input, &a.out, &key)?;
            printer::crypt_summary(&summary, "decrypted", a.json, quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon { config } => daemon(&config, quiet),
        Command::SampleInstall { out, corpus } => {
            let corpus = match corpus {
                Some(c) => c,
                None => sample::install::find_cpython_corpus()
                    .context("CPython's test_email corpus was not found: pass --corpus DIR (python3's test/test_email/data)")?,
            };
            sample::install::write_sample_install(&out, &corpus)?;
            if !quiet {
                println!("sample install written to {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::SamplePanel(a) => sample_panel(&a, quiet),
        Command::SampleStore {
            domains,
            users,
            messages,
            seed,
            out,
        } => {
            let stats = sample::store::write_sample_store(
                &out,
                sample::store::StoreSpec {
                    domains,
                    users,
                    messages,
                    seed,
                },
            )?;
            if !quiet {
                println!(
                    "{} messages, {} files, {} written to {}",
                    stats.messages,
                    stats.files,
                    ByteSize(stats.bytes),
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `mailvault sample-panel`: the tree, then the databases asked for.
fn sample_panel(a: &super::args::SamplePanelArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    use sample::panel;
    let sum = panel::write_sample_panel(&a.root)?;
    let mut loaded = Vec::new();
    if let Some(host) = &a.pg_host {
        let server = panel::DbServer {
            host: host.clone(),
            port: a.pg_port,
            user: a.pg_user.clone(),
        };
        panel::load_postgres(&a.root, &server).with_context(|| {
            format!(
                "the tree is written under {}; the databases were not all loaded",
                a.root.display()
            )
        })?;
        loaded.push(format!("postgresql {host}:{}", a.pg_port));
    }
    if let Some(host) = &a.mariadb_host {
        let server = panel::DbServer {
            host: host.clone(),
            port: a.mariadb_port,
            user: a.mariadb_user.clone(),
        };
        panel::load_mariadb(&a.root, &server).with_context(|| {
            format!(
                "the tree is written under {}; the databases were not all loaded",
                a.root.display()
            )
        })?;
        loaded.push(format!("mariadb {host}:{}", a.mariadb_port));
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "root": a.root,
                "files": sum.files,
                "links": sum.links,
                "bytes": sum.bytes,
                "customers": sum.customers,
                "domains": sum.domains,
                "mailboxes": sum.mailboxes,
                "mariadb_databases": sum.databases,
                "pdns_sqlite": sum.pdns_sqlite,
                "loaded": loaded,
            })
        );
    } else if !quiet {
        println!(
            "sample panel written to {}: {} files, {} links, {}; {} customers, {} domains, {} mailboxes, {} MariaDB databases",
            a.root.display(),
            sum.files,
            sum.links,
            ByteSize(sum.bytes),
            sum.customers,
            sum.domains,
            sum.mailboxes,
            sum.databases
        );
        if sum.pdns_sqlite {
            println!("PowerDNS backend: var/lib/powerdns/pdns.sqlite3 (built with sqlite3)");
        } else {
            println!(
                "PowerDNS backend: sqlite3 is not installed, only .sample/pdns.sql was written (var/lib/powerdns/pdns.sqlite3 missing)"
            );
        }
        for l in &loaded {
            println!("loaded into {l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The key of `--key FILE`, or of the file `MAILVAULT_KEY_FILE` names.
fn load_key(a: &CryptArgs) -> anyhow::Result<Key> {
    Ok(match &a.key {
        Some(p) => Key::load(p)?,
        None => Key::from_env()?,
    })
}

/// The storage of a location given on the command line (a directory or a
/// target URL), encrypted when a key is given.
pub fn open_target(
    location: &str,
    key: &KeyArg,
    spool: Option<&std::path::Path>,
    on_upload: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>>,
) -> anyhow::Result<std::sync::Arc<dyn Storage>> {
    let opts = OpenOptions {
        spool: spool.map(std::path::Path::to_path_buf),
        on_upload,
    };
    Ok(open_location(location, key.key.as_deref(), &opts)?)
}

fn verify(location: &str, key: &KeyArg, json: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let target = Target::parse(location)?;
    let (storage, only) = match target.local_dir() {
        None => (open_target(location, key, None, None)?, None),
        Some(path) => {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot open `{}`", path.display()))?;
            if meta.is_dir() {
                (open_target(location, key, None, None)?, None)
            } else {
                let (dir, name) = split_archive_path(path)?;
                (
                    open_target(&dir.to_string_lossy(), key, None, None)?,
                    Some(name),
                )
            }
        }
    };
    let drawer = Drawer::new(quiet || json);
    let repo = Repository::from_arc(storage);
    // A rotation meanwhile would make deleted volumes look like damage.
    let _lock = repo.lock(LockMode::Shared, "verify")?;
    let report = check::verify(&repo, only, &drawer)?;
    printer::verify(&report, json, quiet)?;
    match report.problems().next() {
        None => Ok(ExitCode::SUCCESS),
        Some(first) => {
            if !json {
                eprintln!("error: {first}");
                eprintln!("hint: {}", printer::verify_hint(&report));
            }
            Ok(ExitCode::from(EXIT_DAMAGED))
        }
    }
}

/// An archive file's directory and name.
fn split_archive_path(
    target: &std::path::Path,
) -> anyhow::Result<(std::path::PathBuf, ArchiveName)> {
    {
        let file = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let name: ArchiveName = file.parse()?;
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(
                || std::path::PathBuf::from("."),
                std::path::Path::to_path_buf,
            );
        Ok((dir, name))
    }
}

fn backup(a: BackupArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let kind = match a.kind {
        Kind::Full => ArchiveKind::Full,
        Kind::Differential => ArchiveKind::Differential,
        Kind::Copy => ArchiveKind::Copy,
    };
    let mut opts = BackupOptions::new(kind, &a.install_dir);
    if let Some(d) = a.backup_dir {
        opts.backup_dir = d;
    }
    if let Some(t) = &a.target {
        let meter = super::progress::upload_meter(quiet || a.json);
        opts.target = Some(open_target(t, &a.key, a.spool_dir.as_deref(), meter)?);
        opts.keep_local = a.keep_local;
    } else if a.key.key.is_some() {
        return Err(UsageError(
            "--key needs --target (give --target DIR for a local encrypted backup)".into(),
        )
        .into());
    }
    opts.split_size = a.split_size.0;
    opts.compression = match a.compression {
        CompressionArg::Deflate => backup::Compression::Deflate,
        CompressionArg::Zstd => backup::Compression::Zstd,
        CompressionArg::Store => backup::Compression::Store,
    };
    opts.level = a.level;
    opts.verify_content = a.verify_content;
    opts.skip_unreadable = a.skip_unreadable;
    opts.rotation = rotation_opts(&a.rotation);
    opts.threads = a.threads;
    if a.dry_run {
        let plan = backup::plan_backup(&opts, chrono::Utc::now())?;
        if !quiet || a.json {
            printer::plan(&plan, a.json)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let drawer = Drawer::new(quiet || a.json);
    let summary = backup::run_backup(&opts, &drawer)?;
    if a.json {
        printer::json(&summary)?;
    } else if !quiet {
        printer::backup_summary(&summary);
    }
    Ok(if summary.problems > 0 {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

fn schedule_cmd(sc: ScheduleCommand, quiet: bool) -> anyhow::Result<ExitCode> {
    match sc {
        ScheduleCommand::List { config, json } => {
            let s = Schedules::load(&config)?;
            printer::schedules(&schedule::status(&s, chrono::Local::now()), json)?;
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::RunDue { config, json } => {
            let s = Schedules::load(&config)?;
            let drawer = Drawer::new(quiet || json);
            let runs = schedule::run_due(&s, chrono::Local::now(), &drawer)?;
            if json {
                printer::json(&runs)?;
            } else if !quiet {
                printer::due_runs(&runs, false)?;
            }
            let failed = runs.iter().any(|r| r.error.is_some());
            let partial = runs
                .iter()
                .any(|r| r.summary.as_ref().is_some_and(|s| s.problems > 0));
            Ok(if failed {
                ExitCode::FAILURE
            } else if partial {
                ExitCode::from(EXIT_PARTIAL)
            } else {
                ExitCode::SUCCESS
            })
        }
        ScheduleCommand::Systemd { config } => {
            let exe = std::env::current_exe().unwrap_or_else(|_| "/usr/local/bin/mailvault".into());
            // systemd runs units from `/`: a relative config path would name another file.
            let config = std::path::absolute(&config).unwrap_or(config);
            let (service, timer) = schedule::systemd_units(&exe, &config);
            println!("{service}\n{timer}");
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Example => {
            print!("{}", schedule::DEFAULT_TOML);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn daemon(config: &std::path::Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let s = Schedules::load(config)?;
    let drawer = Drawer::new(quiet);
    loop {
        let runs = schedule::run_due(&s, chrono::Local::now(), &drawer)?;
        if !quiet && !runs.is_empty() {
            printer::due_runs(&runs, false)?;
        }
        let now = chrono::Local::now();
        let Some(next) = schedule::next_slot(&s, now) else {
            anyhow::bail!("no enabled schedule in `{}`", config.display());
        };
        if !quiet {
            eprintln!("next run at {}", next.to_rfc3339());
        }
        // Sleep in short steps so a clock change or suspend does not make us miss a slot.
        while chrono::Local::now() < next {
            std::thread::sleep(std::time::Duration::from_secs(20));
        }
    }
}
