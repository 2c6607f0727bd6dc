//! Is the mail server running? A restore into a live install refuses while
//! it is (Kerio's own rule: the server reads its files at start and writes
//! them at stop), unless forced.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How to tell whether the mail server runs.
#[derive(Debug, Clone, Default)]
pub enum RunningCheck {
    /// A process whose name is `mailserver` (Kerio Connect's daemon).
    #[default]
    ProcessName,
    /// The pid file names a live process.
    PidFile(PathBuf),
    /// This shell command exits 0 when the server runs.
    Command(String),
}

/// What the check found: `Some(evidence)` when the server runs.
///
/// # Errors
/// The command cannot be run.
pub fn server_running(check: &RunningCheck) -> Result<Option<String>> {
    match check {
        RunningCheck::PidFile(pf) => {
            let pid = std::fs::read_to_string(pf)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            Ok(pid
                .filter(|p| Path::new(&format!("/proc/{p}")).exists())
                .map(|p| format!("pid file `{}` names live process {p}", pf.display())))
        }
        RunningCheck::Command(cmd) => {
            let st = std::process::Command::new("sh")
                .args(["-c", cmd])
                .status()
                .map_err(|e| Error::Request(format!("cannot run --running-check `{cmd}`: {e}")))?;
            Ok(st.success().then(|| format!("`{cmd}` says so")))
        }
        RunningCheck::ProcessName => {
            let Ok(rd) = std::fs::read_dir("/proc") else {
                return Ok(None);
            };
            for e in rd.flatten() {
                if let Ok(comm) = std::fs::read_to_string(e.path().join("comm"))
                    && comm.trim() == "mailserver"
                {
                    return Ok(Some(format!(
                        "process `mailserver`, pid {}",
                        e.file_name().to_string_lossy()
                    )));
                }
            }
            Ok(None)
        }
    }
}
