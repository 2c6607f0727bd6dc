//! The `Progress` trait: long operations (verification here, restores in
//! `mailvault-recover`, backups in `mailvault`; each re-exports it) report
//! what they have done; the command line decides how to draw it: a bar on a terminal, plain
//! lines under cron or systemd, nothing with `--quiet` or `--json`.

/// Receives progress. Implementations must be cheap: `inc` is called once per
/// file, possibly from several threads.
pub trait Progress: Sync {
    /// A phase starts (`scanning`, `writing`, `restoring`) with known totals (0 = unknown).
    fn start(&self, phase: &str, files: u64, bytes: u64);
    /// `files` more files and `bytes` more bytes are done.
    fn inc(&self, files: u64, bytes: u64);
    /// The phase ended.
    fn finish(&self);
}

/// Draws nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64, _: u64) {}
    fn inc(&self, _: u64, _: u64) {}
    fn finish(&self) {}
}
