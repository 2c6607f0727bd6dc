//! Schedules from `mailvault.toml` (docs/schedules.md): which backup runs when,
//! as 5-field cron expressions in local time. Without any `[[schedule]]` the
//! default is Kerio's: a full on Sunday at 01:00 and a differential Monday to
//! Saturday at 01:00.
//!
//! `run-due` runs each schedule's most recent slot if it has not run yet and
//! is no older than `catch_up_hours`. Slots taken are recorded in
//! `<backup-dir>/.mailvault-schedule.state` *before* the backup starts, under
//! an OS lock on that file, so one slot runs once however often (or however
//! concurrently) `run-due` is called.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Local, Utc};
use croner::Cron;
use mailvault_formats::{ArchiveKind, ByteSize};
use serde::{Deserialize, Serialize};

use crate::backup::{BackupOptions, BackupSummary, Compression, run_backup};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::rotation::RotationOptions;

/// State file in the backup directory.
pub const STATE_FILE: &str = ".mailvault-schedule.state";

/// `mailvault.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Kerio install directory (default `/opt/kerio/mailserver`).
    pub install_dir: Option<PathBuf>,
    /// Backup directory (default `<install_dir>/store/backup`).
    pub backup_dir: Option<PathBuf>,
    /// Default volume split size (`2G`).
    pub split_size: Option<String>,
    /// Default number of full chains to keep.
    pub keep_full: Option<usize>,
    /// Default target URL (`s3://…`, `ftp[s]://…`, a directory); archives
    /// go there instead of the backup directory.
    pub target: Option<String>,
    /// Default key file: encrypts what goes to the target.
    pub key: Option<PathBuf>,
    /// Default for keeping a local copy besides the target.
    pub keep_local: Option<bool>,
    /// Local directory where volumes are spooled before upload.
    pub spool_dir: Option<PathBuf>,
    /// How old a missed slot may be and still run (default 12).
    pub catch_up_hours: Option<u32>,
    /// The schedules; none means Kerio's default.
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<ScheduleEntry>,
}

/// One `[[schedule]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// Name shown in `schedule list` and recorded in the state file (default: the type).
    pub name: Option<String>,
    /// `full`, `differential` or `copy`.
    #[serde(rename = "type")]
    pub kind: String,
    /// 5-field cron expression, local time (`0 1 * * 0`).
    pub cron: String,
    /// Overrides the global backup directory.
    pub backup_dir: Option<PathBuf>,
    /// Overrides the global split size.
    pub split_size: Option<String>,
    /// Overrides the global target.
    pub target: Option<String>,
    /// Overrides the global key file.
    pub key: Option<PathBuf>,
    /// Overrides the global keep_local.
    pub keep_local: Option<bool>,
    /// Overrides the global rotation.
    pub keep_full: Option<usize>,
    /// Kerio's old behaviour: keep only the newest differential per chain.
    #[serde(default)]
    pub keep_latest_differential_only: bool,
    /// `deflate` (default), `zstd` or `store`.
    pub compression: Option<String>,
    /// `false` disables the schedule.
    pub enabled: Option<bool>,
}

/// A resolved schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Name.
    pub name: String,
    /// The cron expression as written.
    pub cron_text: String,
    /// Parsed.
    pub cron: Cron,
    /// The backup it runs (its target is opened when it runs).
    pub options: BackupOptions,
    /// The target URL, if archives go to one.
    pub target: Option<String>,
    /// The key file for the target.
    pub key: Option<PathBuf>,
    /// The spool directory for uploads.
    pub spool_dir: Option<PathBuf>,
    /// Disabled schedules are listed but never run.
    pub enabled: bool,
}

/// Every schedule of a config.
#[derive(Debug, Clone)]
pub struct Schedules {
    /// The schedules, in file order.
    pub schedules: Vec<Schedule>,
    /// Hours a missed slot stays runnable.
    pub catch_up_hours: u32,
}

/// The example printed by `schedule --help` and shipped in docs/.
pub const DEFAULT_TOML: &str = r#"# mailvault.toml: Kerio's default schedule
install_dir = "/opt/kerio/mailserver"
backup_dir = "/opt/kerio/mailserver/store/backup"
split_size = "2G"
keep_full = 4
# Off-site and encrypted (credentials from the environment or a 0600 file):
# target = "s3://backups/kerio?endpoint=https://s3.example.net"
# key = "/root/mailvault.key"
# keep_local = true        # also keep the archives in backup_dir

[[schedule]]
name = "weekly-full"
type = "full"
cron = "0 1 * * 0"          # Sunday 01:00

[[schedule]]
name = "daily-differential"
type = "differential"
cron = "0 1 * * 1-6"        # Monday to Saturday 01:00
"#;

impl Schedules {
    /// Reads `path`; a missing file gives Kerio's default schedule.
    ///
    /// # Errors
    /// Unreadable or malformed file, bad cron expression, bad type or size.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("cannot read", path)(e)),
        };
        Self::parse(path, &text)
    }

    /// Parses config text (`path` only names it in errors).
    ///
    /// # Errors
    /// See [`Schedules::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let cfg_err = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let mut file: ConfigFile = toml::from_str(text).map_err(|e| cfg_err(e.to_string()))?;
        if file.schedules.is_empty() {
            let defaults: ConfigFile =
                toml::from_str(DEFAULT_TOML).map_err(|e| cfg_err(e.to_string()))?;
            file.schedules = defaults.schedules;
        }
        let install = file
            .install_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/opt/kerio/mailserver"));
        let mut schedules = Vec::new();
        for (i, s) in file.schedules.iter().enumerate() {
            let name = s.name.clone().unwrap_or_else(|| s.kind.clone());
            let at = |what: &str| format!("schedule {} (`{name}`): {what}", i + 1);
            let kind = ArchiveKind::from_word(&s.kind)
                .map_err(|_| cfg_err(at("type must be full, differential or copy")))?;
            let cron = Cron::from_str(&s.cron)
                .map_err(|e| cfg_err(at(&format!("bad cron `{}`: {e}", s.cron))))?;
            let mut options = BackupOptions::new(kind, &install);
            if let Some(d) = s.backup_dir.as_ref().or(file.backup_dir.as_ref()) {
                options.backup_dir.clone_from(d);
            }
            if let Some(sz) = s.split_size.as_ref().or(file.split_size.as_ref()) {
                options.split_size = sz
                    .parse::<ByteSize>()
                    .map_err(|e| cfg_err(at(&e.to_string())))?
                    .0;
            }
            options.rotation = RotationOptions {
                keep_full: s.keep_full.or(file.keep_full),
                keep_latest_differential_only: s.keep_latest_differential_only,
            };
            options.compression = match s.compression.as_deref() {
                None | Some("deflate") => Compression::Deflate,
                Some("zstd") => Compression::Zstd,
                Some("store") => Compression::Store,
                Some(other) => {
                    return Err(cfg_err(at(&format!(
                        "compression `{other}`: use deflate, zstd or store"
                    ))));
                }
            };
            let target = s.target.clone().or_else(|| file.target.clone());
            if let Some(t) = &target {
                mailvault_repo::target::Target::parse(t)
                    .map_err(|e| cfg_err(at(&e.to_string())))?;
            }
            options.keep_local = s.keep_local.or(file.keep_local).unwrap_or(false);
            if schedules.iter().any(|x: &Schedule| x.name == name) {
                return Err(cfg_err(at("two schedules have this name")));
            }
            schedules.push(Schedule {
                name,
                cron_text: s.cron.clone(),
                cron,
                options,
                target,
                key: s.key.clone().or_else(|| file.key.clone()),
                spool_dir: file.spool_dir.clone(),
                enabled: s.enabled.unwrap_or(true),
            });
        }
        Ok(Self {
            schedules,
            catch_up_hours: file.catch_up_hours.unwrap_or(12),
        })
    }
}

/// One line of `schedule list`.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    /// Name.
    pub name: String,
    /// full / differential / copy.
    #[serde(rename = "type")]
    pub kind: String,
    /// Cron expression.
    pub cron: String,
    /// Backup directory.
    pub backup_dir: PathBuf,
    /// Target (credentials removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Next slot (local time, RFC 3339).
    pub next_run: Option<String>,
    /// Last slot taken, from the state file.
    pub last_run: Option<String>,
    /// Whether it runs at all.
    pub enabled: bool,
}

/// Next and last runs of every schedule at `now`.
#[must_use]
pub fn status(s: &Schedules, now: DateTime<Local>) -> Vec<ScheduleStatus> {
    s.schedules
        .iter()
        .map(|sc| {
            let state = read_state(&sc.options.backup_dir.join(STATE_FILE));
            ScheduleStatus {
                name: sc.name.clone(),
                kind: sc.options.kind.to_string(),
                cron: sc.cron_text.clone(),
                backup_dir: sc.options.backup_dir.clone(),
                target: sc.target.as_deref().map(|t| {
                    mailvault_repo::target::Target::parse(t).map_or_else(
                        |_| mailvault_repo::target::redact_text(t),
                        |t| t.to_string(),
                    )
                }),
                next_run: sc
                    .cron
                    .find_next_occurrence(&now, false)
                    .ok()
                    .map(|t| t.to_rfc3339()),
                last_run: state
                    .get(&sc.name)
                    .map(|t| t.with_timezone(&Local).to_rfc3339()),
                enabled: sc.enabled,
            }
        })
        .collect()
}

/// What `run-due` did for one schedule.
#[derive(Debug, Serialize)]
pub struct DueRun {
    /// Schedule name.
    pub name: String,
    /// The slot that ran.
    pub slot: String,
    /// The backup's summary.
    pub summary: Option<BackupSummary>,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// Runs every due slot at `now`. Full and copy schedules run before
/// differentials when several are due, so a differential builds on a new full.
///
/// # Errors
/// The state file cannot be read or written. Backup failures are reported per run.
pub fn run_due(
    s: &Schedules,
    now: DateTime<Local>,
    progress: &dyn Progress,
) -> Result<Vec<DueRun>> {
    let mut order: Vec<&Schedule> = s.schedules.iter().filter(|x| x.enabled).collect();
    order.sort_by_key(|x| x.options.kind == ArchiveKind::Differential);
    let mut runs = Vec::new();
    for sc in order {
        let Ok(slot) = sc.cron.find_previous_occurrence(&now, true) else {
            continue;
        };
        if now.signed_duration_since(slot) > chrono::Duration::hours(i64::from(s.catch_up_hours)) {
            continue;
        }
        let dir = &sc.options.backup_dir;
        fs::create_dir_all(dir).map_err(Error::io("cannot create backup directory", dir))?;
        let state_path = dir.join(STATE_FILE);
        let Some(mut state_file) = lock_state(&state_path)? else {
            continue;
        };
        let mut text = String::new();
        state_file
            .read_to_string(&mut text)
            .map_err(Error::io("cannot read", &state_path))?;
        let mut state = parse_state(&text);
        let slot_utc = slot.with_timezone(&Utc);
        if state.get(&sc.name).is_some_and(|last| *last >= slot_utc) {
            continue;
        }
        state.insert(sc.name.clone(), slot_utc);
        let body: String = state
            .iter()
            .map(|(k, v)| format!("{k}\t{}\n", v.to_rfc3339()))
            .collect();
        state_file
            .set_len(0)
            .and_then(|()| state_file.rewind())
            .and_then(|()| state_file.write_all(body.as_bytes()))
            .and_then(|()| state_file.sync_all())
            .map_err(Error::io("cannot write", &state_path))?;
        let result = with_target(sc).and_then(|options| run_backup(&options, progress));
        drop(state_file);
        runs.push(match result {
            Ok(summary) => DueRun {
                name: sc.name.clone(),
                slot: slot.to_rfc3339(),
                summary: Some(summary),
                error: None,
            },
            Err(e) => DueRun {
                name: sc.name.clone(),
                slot: slot.to_rfc3339(),
                summary: None,
                error: Some(e.to_string()),
            },
        });
    }
    Ok(runs)
}

/// The schedule's options with its target opened (credentials and the key
/// are read when the backup runs, not when the config is parsed).
fn with_target(sc: &Schedule) -> Result<BackupOptions> {
    let mut options = sc.options.clone();
    if let Some(t) = &sc.target {
        let opts = mailvault_repo::target::OpenOptions {
            spool: sc.spool_dir.clone(),
            on_upload: None,
        };
        options.target = Some(mailvault_repo::target::open_location(
            t,
            sc.key.as_deref(),
            &opts,
        )?);
    } else if sc.key.is_some() {
        return Err(Error::Invalid(format!(
            "schedule `{}`: key is set but no target; set target (a directory works too)",
            sc.name
        )));
    }
    Ok(options)
}

/// The earliest next slot of any enabled schedule.
#[must_use]
pub fn next_slot(s: &Schedules, now: DateTime<Local>) -> Option<DateTime<Local>> {
    s.schedules
        .iter()
        .filter(|x| x.enabled)
        .filter_map(|x| x.cron.find_next_occurrence(&now, false).ok())
        .min()
}

fn lock_state(path: &Path) -> Result<Option<fs::File>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(Error::io("cannot open", path))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", path)(e)),
    }
}

fn read_state(path: &Path) -> BTreeMap<String, DateTime<Utc>> {
    fs::read_to_string(path)
        .map(|t| parse_state(&t))
        .unwrap_or_default()
}

fn parse_state(text: &str) -> BTreeMap<String, DateTime<Utc>> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('\t')?;
            Some((
                k.to_string(),
                DateTime::parse_from_rfc3339(v).ok()?.with_timezone(&Utc),
            ))
        })
        .collect()
}

/// systemd unit and timer that call `run-due` every minute.
#[must_use]
pub fn systemd_units(exe: &Path, config: &Path) -> (String, String) {
    let service = format!(
        "# /etc/systemd/system/mailvault-backup.service\n[Unit]\nDescription=mailvault scheduled backups (run-due)\n\
         After=local-fs.target\n\n[Service]\nType=oneshot\nExecStart={} schedule run-due --config {}\nNice=10\nIOSchedulingClass=best-effort\nIOSchedulingPriority=7\n",
        exe.display(),
        config.display()
    );
    let timer = "# /etc/systemd/system/mailvault-backup.timer\n[Unit]\nDescription=mailvault scheduled backups\n\n\
         [Timer]\nOnCalendar=*-*-* *:*:00\nPersistent=true\nAccuracySec=10s\n\n[Install]\nWantedBy=timers.target\n"
        .to_string();
    (service, timer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn default_is_kerios() {
        let s = Schedules::parse(Path::new("x.toml"), "").unwrap();
        assert_eq!(s.schedules.len(), 2);
        // 2026-11-22 is a Sunday.
        let sat = Local.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        let next = next_slot(&s, sat).unwrap();
        assert_eq!(next, Local.with_ymd_and_hms(2026, 11, 22, 1, 0, 0).unwrap());
        let full = s
            .schedules
            .iter()
            .find(|x| x.options.kind == ArchiveKind::Full)
            .unwrap();
        assert_eq!(full.cron.find_next_occurrence(&sat, false).unwrap(), next);
        let diff = s
            .schedules
            .iter()
            .find(|x| x.options.kind == ArchiveKind::Differential)
            .unwrap();
        assert_eq!(
            diff.cron.find_next_occurrence(&next, false).unwrap(),
            Local.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap()
        );
    }

    #[test]
    fn rejects_bad_config_with_its_place() {
        let e = Schedules::parse(
            Path::new("m.toml"),
            "[[schedule]]\ntype = \"full\"\ncron = \"61 * * * *\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("m.toml") && e.contains("schedule 1"), "{e}");
        let e = Schedules::parse(
            Path::new("m.toml"),
            "[[schedule]]\ntype = \"weekly\"\ncron = \"0 1 * * 0\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("type must be"), "{e}");
        assert!(Schedules::parse(Path::new("m.toml"), "bogus = 1\n").is_err());
    }
}
