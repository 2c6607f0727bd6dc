//! The lock of a remote target, held by lock objects (restic's scheme, as
//! targets have no OS lock that dies with its holder).
//!
//! Each holder writes its own object `.mailvault-lock-<host>-<pid>-<id>`
//! with its mode, what it runs, host, pid, start and expiry, and rewrites
//! it with a later expiry every quarter of the lifetime while it runs. A
//! taker first looks for conflicting live locks (an exclusive lock
//! conflicts with every lock, a shared one only with exclusive ones) and
//! is refused naming the holder; otherwise it writes its object and looks
//! again: seeing a conflict then means two takers raced, so it removes its
//! own object and tries again after a random pause, and is refused if the
//! other is still there. Both may back off; neither can proceed while the
//! other holds. A lock is dead when its expiry has passed, or at once when
//! it was taken on this host by a process that no longer exists, so a
//! killed run never needs a manual unlock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::{LOCK_PREFIX, ObjectStore};
use crate::error::{Error, Result};
use crate::storage::LockMode;

/// Lock objects are small; anything larger is not one of ours.
const MAX_LOCK_OBJECT: u64 = 4096;

/// One lock object's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockInfo {
    pub mode: LockMode,
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub started: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl LockInfo {
    pub(crate) fn to_text(&self) -> String {
        let mode = match self.mode {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        };
        format!(
            "mailvault-lock: 1\nmode: {mode}\nholder: {}\nhost: {}\npid: {}\nstarted: {}\nexpires: {}\n",
            one_line(&self.holder),
            one_line(&self.host),
            self.pid,
            self.started.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.expires.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        let fields: BTreeMap<&str, &str> =
            text.lines().filter_map(|l| l.split_once(": ")).collect();
        if fields.get("mailvault-lock") != Some(&"1") {
            return None;
        }
        let time = |k: &str| {
            DateTime::parse_from_rfc3339(fields.get(k)?)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        Some(Self {
            mode: match *fields.get("mode")? {
                "shared" => LockMode::Shared,
                "exclusive" => LockMode::Exclusive,
                _ => return None,
            },
            holder: (*fields.get("holder")?).to_string(),
            host: (*fields.get("host")?).to_string(),
            pid: fields.get("pid")?.parse().ok()?,
            started: time("started")?,
            expires: time("expires")?,
        })
    }

    /// Whether the holder may still be running.
    fn is_live(&self, now: DateTime<Utc>, host: &str) -> bool {
        if self.expires < now {
            return false;
        }
        if self.host == host && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists() {
            return false;
        }
        true
    }

    fn conflicts_with(&self, mode: LockMode) -> bool {
        mode == LockMode::Exclusive || self.mode == LockMode::Exclusive
    }

    /// How a refusal names this holder.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} ({}), pid {} on {}, since {}; its lock expires at {} unless renewed",
            self.holder,
            match self.mode {
                LockMode::Shared => "reading",
                LockMode::Exclusive => "writing",
            },
            self.pid,
            self.host,
            self.started.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.expires.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// This machine's name, as lock objects record it.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// A value that differs between calls and processes (object names and
/// back-off pauses; not a secret).
fn unique() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut x = (nanos as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser: spreads the bits.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The live lock objects that conflict with `mode`, other than `own`;
/// expired ones are removed on the way.
fn conflicts<O: ObjectStore>(
    store: &O,
    mode: LockMode,
    own: Option<&str>,
    host: &str,
) -> Result<Vec<LockInfo>> {
    let now = Utc::now();
    let mut found = Vec::new();
    for (name, size) in store.list()? {
        if !name.starts_with(LOCK_PREFIX) || Some(name.as_str()) == own {
            continue;
        }
        if size > MAX_LOCK_OBJECT {
            continue;
        }
        let bytes = match store.read_range(&name, 0, MAX_LOCK_OBJECT) {
            Ok(b) => b,
            // Removed meanwhile: its holder finished.
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        // An object that does not parse is being written (its writer will
        // see ours when it looks again) or is not ours: it is ignored and
        // never removed.
        let Some(info) = LockInfo::parse(&String::from_utf8_lossy(&bytes)) else {
            continue;
        };
        if !info.is_live(now, host) {
            let _ = store.remove(&name);
            continue;
        }
        if info.conflicts_with(mode) {
            found.push(info);
        }
    }
    Ok(found)
}

/// `mailvault unlock`: removes every lock object except those of live
/// processes on this host; returns how each removed one named its holder.
pub(crate) fn remove_all_but_live_local<O: ObjectStore>(store: &O) -> Result<Vec<String>> {
    let host = hostname();
    let mut removed = Vec::new();
    for (name, size) in store.list()? {
        if !name.starts_with(LOCK_PREFIX) {
            continue;
        }
        let info = if size <= MAX_LOCK_OBJECT {
            store
                .read_range(&name, 0, MAX_LOCK_OBJECT)
                .ok()
                .and_then(|b| LockInfo::parse(&String::from_utf8_lossy(&b)))
        } else {
            None
        };
        if let Some(i) = &info
            && i.host == host
            && std::path::Path::new(&format!("/proc/{}", i.pid)).exists()
        {
            continue;
        }
        match store.remove(&name) {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        removed.push(info.map_or_else(|| format!("{name} (unreadable)"), |i| i.describe()));
    }
    Ok(removed)
}

fn refused<O: ObjectStore>(store: &O, holders: &[LockInfo]) -> Error {
    let holder = holders
        .iter()
        .map(LockInfo::describe)
        .collect::<Vec<_>>()
        .join("; ");
    Error::Locked {
        place: store.location(),
        holder,
    }
}

/// Takes the lock; the guard refreshes it until dropped.
pub(crate) fn acquire<O: ObjectStore + 'static>(
    store: &Arc<O>,
    ttl: Duration,
    mode: LockMode,
    holder: &str,
) -> Result<LockGuard<O>> {
    let host = hostname();
    let ttl_chrono = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(3));
    let started = Utc::now();
    let name = format!(
        "{LOCK_PREFIX}{}-{}-{:016x}",
        host.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            })
            .collect::<String>(),
        std::process::id(),
        unique()
    );
    const ATTEMPTS: u32 = 3;
    for attempt in 0..ATTEMPTS {
        let before = conflicts(store.as_ref(), mode, None, &host)?;
        if !before.is_empty() {
            return Err(refused(store.as_ref(), &before));
        }
        let info = LockInfo {
            mode,
            holder: holder.to_string(),
            host: host.clone(),
            pid: std::process::id(),
            started,
            expires: Utc::now() + ttl_chrono,
        };
        store.put_small(&name, info.to_text().as_bytes())?;
        let after = conflicts(store.as_ref(), mode, Some(&name), &host)?;
        if after.is_empty() {
            return Ok(LockGuard::start(Arc::clone(store), name, info, ttl));
        }
        let _ = store.remove(&name);
        if attempt + 1 == ATTEMPTS {
            return Err(refused(store.as_ref(), &after));
        }
        std::thread::sleep(Duration::from_millis(100 + unique() % 400));
    }
    Err(Error::Locked {
        place: store.location(),
        holder: "another run".into(),
    })
}

/// A held lock: a thread rewrites the lock object with a later expiry
/// every quarter of the lifetime; dropping stops it and removes the object.
pub(crate) struct LockGuard<O: ObjectStore + 'static> {
    store: Arc<O>,
    name: String,
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    lost: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<O: ObjectStore + 'static> LockGuard<O> {
    fn start(store: Arc<O>, name: String, info: LockInfo, ttl: Duration) -> Self {
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let lost = Arc::new(AtomicBool::new(false));
        let thread = {
            let (store, name, stop, lost) = (
                Arc::clone(&store),
                name.clone(),
                Arc::clone(&stop),
                Arc::clone(&lost),
            );
            std::thread::Builder::new()
                .name("mailvault-lock".into())
                .spawn(move || refresh(&*store, &name, info, ttl, &stop, &lost))
                .ok()
        };
        Self {
            store,
            name,
            stop,
            lost,
            thread,
        }
    }
}

fn refresh<O: ObjectStore>(
    store: &O,
    name: &str,
    mut info: LockInfo,
    ttl: Duration,
    stop: &(Mutex<bool>, std::sync::Condvar),
    lost: &AtomicBool,
) {
    let every = ttl / 4;
    let ttl_chrono = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(3));
    let (flag, wake) = stop;
    let Ok(mut stopped) = flag.lock() else { return };
    loop {
        if *stopped {
            return;
        }
        match wake.wait_timeout(stopped, every) {
            Ok((s, _)) => stopped = s,
            Err(_) => return,
        }
        if *stopped {
            return;
        }
        let expires = Utc::now() + ttl_chrono;
        let previous = info.expires;
        info.expires = expires;
        if store.put_small(name, info.to_text().as_bytes()).is_err() {
            // Kept for the next tick; past the old expiry others may take
            // the lock, which the holder cannot undo: it is recorded.
            info.expires = previous;
            if previous < Utc::now() {
                lost.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl<O: ObjectStore + 'static> Drop for LockGuard<O> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.stop.0.lock() {
            *s = true;
            self.stop.1.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.store.remove(&self.name);
        if self.lost.load(Ordering::Relaxed) {
            eprintln!(
                "warning: the lock on {} could not be renewed before it expired",
                self.store.location()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_objects_round_trip_and_die() {
        let now = Utc::now();
        let info = LockInfo {
            mode: LockMode::Exclusive,
            holder: "backup full\nx".into(),
            host: "h1".into(),
            pid: 4_000_000,
            started: now,
            expires: now + chrono::Duration::seconds(60),
        };
        let back = LockInfo::parse(&info.to_text()).unwrap();
        assert_eq!(back.holder, "backup full x");
        assert_eq!(back.mode, LockMode::Exclusive);
        assert!(back.is_live(now, "other-host"), "another host's live lock");
        assert!(
            !back.is_live(now, "h1"),
            "a lock of this host whose process is gone is dead"
        );
        assert!(!back.is_live(now + chrono::Duration::seconds(61), "other-host"));
        assert!(LockInfo::parse("garbage").is_none());
    }
}
