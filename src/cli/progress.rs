//! Draws engine progress: an indicatif bar (files, bytes, rate, ETA) when
//! stderr is a terminal, a plain line every few seconds otherwise (cron,
//! systemd), nothing with `--quiet` or `--json`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use mailvault::Progress;
use mailvault_formats::ByteSize;

/// The CLI's progress drawer.
pub enum Drawer {
    /// Nothing.
    Silent,
    /// A bar on a terminal.
    Bar(BarState),
    /// Plain lines.
    Lines(LineState),
}

/// State of the terminal bar.
pub struct BarState {
    bar: Mutex<Option<ProgressBar>>,
    files: AtomicU64,
    total: AtomicU64,
}

/// State of the plain-line drawer.
pub struct LineState {
    phase: Mutex<(String, Instant, Instant)>,
    totals: (AtomicU64, AtomicU64),
    done: (AtomicU64, AtomicU64),
}

impl Drawer {
    /// Picks the drawer for this run.
    pub fn new(quiet: bool) -> Self {
        if quiet {
            Self::Silent
        } else if std::io::stderr().is_terminal() {
            Self::Bar(BarState {
                bar: Mutex::new(None),
                files: AtomicU64::new(0),
                total: AtomicU64::new(0),
            })
        } else {
            let now = Instant::now();
            Self::Lines(LineState {
                phase: Mutex::new((String::new(), now, now)),
                totals: (AtomicU64::new(0), AtomicU64::new(0)),
                done: (AtomicU64::new(0), AtomicU64::new(0)),
            })
        }
    }
}

const EVERY: Duration = Duration::from_secs(5);

impl Progress for Drawer {
    fn start(&self, phase: &str, files: u64, bytes: u64) {
        match self {
            Self::Silent => {}
            Self::Bar(st) => {
                let pb = if bytes > 0 {
                    let pb = ProgressBar::new(bytes);
                    pb.set_style(
                        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {msg} {bytes_per_sec} ETA {eta}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    pb
                } else {
                    let pb = ProgressBar::new_spinner();
                    pb.enable_steady_tick(Duration::from_millis(120));
                    pb
                };
                pb.set_prefix(phase.to_string());
                if files > 0 {
                    pb.set_message(format!("0/{files} files"));
                }
                pb.set_length(bytes.max(1));
                if let Ok(mut b) = st.bar.lock() {
                    *b = Some(pb);
                }
                st.files.store(0, Ordering::Relaxed);
                st.total.store(files, Ordering::Relaxed);
            }
            Self::Lines(s) => {
                if let Ok(mut p) = s.phase.lock() {
                    *p = (phase.to_string(), Instant::now(), Instant::now());
                }
                s.totals.0.store(files, Ordering::Relaxed);
                s.totals.1.store(bytes, Ordering::Relaxed);
                s.done.0.store(0, Ordering::Relaxed);
                s.done.1.store(0, Ordering::Relaxed);
                match (files, bytes) {
                    (0, 0) => eprintln!("{phase}..."),
                    (0, b) => eprintln!("{phase}: {}", ByteSize(b)),
                    (f, b) => eprintln!("{phase}: {f} files, {}", ByteSize(b)),
                }
            }
        }
    }

    fn inc(&self, files: u64, bytes: u64) {
        match self {
            Self::Silent => {}
            Self::Bar(st) => {
                if let Ok(b) = st.bar.lock()
                    && let Some(pb) = b.as_ref()
                {
                    pb.inc(bytes);
                    let n = st.files.fetch_add(files, Ordering::Relaxed) + files;
                    let total = st.total.load(Ordering::Relaxed);
                    if n.is_multiple_of(64) || n == total {
                        pb.set_message(format!("{n}/{total} files"));
                    }
                }
            }
            Self::Lines(s) => {
                let f = s.done.0.fetch_add(files, Ordering::Relaxed) + files;
                let b = s.done.1.fetch_add(bytes, Ordering::Relaxed) + bytes;
                if let Ok(mut p) = s.phase.lock()
                    && p.2.elapsed() >= EVERY
                {
                    p.2 = Instant::now();
                    let secs = p.1.elapsed().as_secs_f64().max(0.001);
                    let (tf, tb) = (
                        s.totals.0.load(Ordering::Relaxed),
                        s.totals.1.load(Ordering::Relaxed),
                    );
                    let pct = if tb > 0 {
                        format!(" ({:.0}%)", 100.0 * b as f64 / tb as f64)
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "{}: {f}/{tf} files, {}/{}{pct}, {}/s",
                        p.0,
                        ByteSize(b),
                        ByteSize(tb),
                        ByteSize((b as f64 / secs) as u64)
                    );
                }
            }
        }
    }

    fn finish(&self) {
        match self {
            Self::Bar(st) => {
                if let Ok(mut b) = st.bar.lock()
                    && let Some(pb) = b.take()
                {
                    pb.finish_and_clear();
                }
            }
            Self::Lines(s) => {
                if let Ok(p) = s.phase.lock() {
                    let (f, b) = (
                        s.done.0.load(Ordering::Relaxed),
                        s.done.1.load(Ordering::Relaxed),
                    );
                    if f > 0 || b > 0 {
                        eprintln!(
                            "{}: done, {f} files, {} in {:.1}s",
                            p.0,
                            ByteSize(b),
                            p.1.elapsed().as_secs_f64()
                        );
                    }
                }
            }
            Self::Silent => {}
        }
    }
}

/// Upload progress to a remote target: bytes sent and the rate, a plain
/// line every few seconds (uploads run inside the writing phase, whose bar
/// keeps the terminal's last line); nothing with `--quiet` or `--json`.
pub fn upload_meter(quiet: bool) -> Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>> {
    if quiet {
        return None;
    }
    let start = Instant::now();
    let state = Mutex::new((0u64, Instant::now()));
    Some(std::sync::Arc::new(move |n: u64| {
        if let Ok(mut s) = state.lock() {
            s.0 += n;
            if s.1.elapsed() >= EVERY {
                s.1 = Instant::now();
                let secs = start.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "uploaded {} ({}/s)",
                    ByteSize(s.0),
                    ByteSize((s.0 as f64 / secs) as u64)
                );
            }
        }
    }))
}
