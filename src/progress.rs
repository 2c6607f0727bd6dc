//! The `Progress` trait: the engine reports what it has done, the CLI decides
//! how to draw it (a bar on a terminal, plain lines under cron or systemd,
//! nothing with `--quiet` or `--json`).

/// Receives progress from long operations. Implementations must be cheap:
/// `inc` is called once per file from the writer thread.
pub trait Progress: Send + Sync {
    /// A new phase starts (`scanning`, `writing`, `verifying`) with known totals (0 = unknown).
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
