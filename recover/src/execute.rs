//! [`execute`]: carries out a prepared restore. Before anything live
//! changes it checks that the mail server is stopped (live restores), takes
//! the install's restore lock, stages every root and takes the safety copy;
//! then it swaps the roots in. It returns a [`RestoreReport`] that says
//! what was done and, as plainly, what was not.

use std::path::PathBuf;
use std::time::Instant;

use mailvault_repo::PassedOver;
use mailvault_repo::progress::Progress;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::plan::{KeepReason, Kept, Prepared};
use crate::request::Destination;
use crate::running::{RunningCheck, server_running};
use crate::stage::{self, NotRestored};

/// Saves what a restore is about to replace, so it can be undone. The
/// mailvault binaries implement it with the backup writer (a `C` archive);
/// the restore library only decides when.
pub trait SafetyCopier {
    /// Saves the live state of `roots` (install-relative, laid out as `dest`
    /// says) and returns where it went.
    ///
    /// # Errors
    /// A message saying why the copy could not be taken.
    fn take(
        &self,
        dest: &Destination,
        roots: &[String],
        note: &str,
    ) -> std::result::Result<String, String>;

    /// The local directory copies go to, if there is one (a restore refuses
    /// to replace a root that holds it: the copy would be swapped away).
    fn location(&self) -> Option<PathBuf> {
        None
    }
}

/// How to execute.
#[derive(Default)]
pub struct ExecuteOptions<'a> {
    /// The safety copy (None: none is taken).
    pub safety: Option<&'a dyn SafetyCopier>,
    /// How to tell whether the mail server runs.
    pub running: RunningCheck,
    /// Restore even though the server seems to run.
    pub force: bool,
}

/// A root restored.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// Install-relative path in the backup.
    pub rel: String,
    /// Where it is now.
    #[serde(serialize_with = "crate::serde_path::path")]
    pub dest: PathBuf,
}

/// What a restore did, and what it did not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The chain restored from, full first.
    pub chain: Vec<String>,
    /// Newer sets passed over, with why.
    pub passed_over: Vec<PassedOver>,
    /// Whether this was a salvage.
    pub salvaging: bool,
    /// What a salvage found wrong with the archives it read.
    pub problems: Vec<mailvault_repo::Problem>,
    /// Files written.
    pub written: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files removed.
    pub deleted: u64,
    /// Files already as backed up.
    pub unchanged: u64,
    /// Roots swapped in (with `--as-folder`, the new folder).
    pub restored: Vec<Restored>,
    /// Live items left in place although not in the restored state.
    pub kept: Vec<Kept>,
    /// Files of the backed-up state that were not restored, with why.
    pub not_restored: Vec<NotRestored>,
    /// Folders whose `index.fld` was renamed to `index.bad` (rebuilt by the server).
    #[serde(serialize_with = "crate::serde_path::paths")]
    pub index_bad: Vec<PathBuf>,
    /// Live files that appeared while the restore ran (not in its plan):
    /// put back or kept aside, never deleted.
    pub arrived: Vec<stage::Arrived>,
    /// The safety copy taken first.
    pub safety_copy: Option<String>,
    /// Remarks.
    pub notes: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

impl RestoreReport {
    /// Whether everything asked for was restored exactly: nothing lost, no
    /// damaged newer backup passed over, no damage salvaged around, and
    /// (salvage) nothing kept that the backup would have removed. Otherwise
    /// the exit code is 3.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.not_restored.is_empty()
            && self.problems.is_empty()
            && self.arrived.is_empty()
            && !self.passed_over.iter().any(|p| p.damaged)
            && !self.kept.iter().any(|k| k.reason == KeepReason::Salvage)
    }
}

/// Carries out a prepared restore.
///
/// # Errors
/// The server runs (unless forced), another restore holds the install, the
/// safety copy fails, an entry is damaged (not salvaging), I/O. Before the
/// swap nothing live has changed; during it each root is old or new.
pub fn execute(
    prepared: Prepared,
    opts: &ExecuteOptions<'_>,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let t0 = Instant::now();
    let Prepared {
        request,
        chain,
        plan,
        lock,
        ..
    } = prepared;
    let dest = &request.destination;
    let live = !dest.into && dest.rename.is_none();
    if live
        && !opts.force
        && let Some(why) = server_running(&opts.running)?
    {
        return Err(Error::ServerRunning(why));
    }
    if live && let Some(loc) = opts.safety.and_then(|c| c.location()) {
        // Where the copies physically go (links and `..` resolved): inside
        // a restored root they would be swapped away with the old tree.
        let loc = crate::request::physical(&loc);
        if let Some(r) = plan
            .roots
            .iter()
            .find(|r| loc.starts_with(crate::request::physical(&r.dest)))
        {
            return Err(Error::Request(format!(
                "the safety copy would go to `{}`, inside `{}`, which this restore replaces: \
                 give --safety-dir outside it (or --no-safety-copy)",
                loc.display(),
                r.dest.display()
            )));
        }
    }
    let into_existed = dest.into && dest.anchor().exists();
    let target_lock = stage::lock_target(dest, &plan.roots)?;
    let marker = dest.anchor().join(stage::INTO_MARKER);
    if dest.into {
        // What this run creates at the top of the directory: the next run
        // may clear exactly that if this one is killed, and nothing else.
        let mut created: Vec<String> = plan
            .roots
            .iter()
            .filter_map(|r| r.dest.strip_prefix(dest.anchor()).ok())
            .filter_map(|rel| rel.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        created.sort();
        created.dedup();
        let mut text = format!(
            "{}\npid {}\n",
            crate::request::INTO_MARKER_MAGIC,
            std::process::id()
        );
        for c in &created {
            text.push_str("created ");
            text.push_str(c);
            text.push('\n');
        }
        std::fs::write(&marker, text).map_err(Error::io("cannot create", &marker))?;
    }
    let mut safety: Option<String> = None;
    let replaces = plan.writes.iter().any(|w| w.replace) || !plan.deletes.is_empty();
    let mut repo_lock = Some(lock);
    let mut before_swap = || -> Result<()> {
        // Everything is staged: the archives are read. Letting go of the
        // repository now lets the safety copy be written into it (an undo
        // from a safety copy writes the next one beside it).
        drop(repo_lock.take());
        let Some(copier) = opts.safety.filter(|_| live && replaces) else {
            return Ok(());
        };
        let roots: Vec<String> = plan
            .roots
            .iter()
            .filter(|r| r.changes)
            .map(|r| r.rel.clone())
            .collect();
        let note = format!(
            "safety copy taken by kmsrecover before restoring {} from {}",
            roots.join(", "),
            plan.chain.join(" + ")
        );
        safety = Some(
            copier
                .take(dest, &roots, &note)
                .map_err(Error::SafetyCopy)?,
        );
        Ok(())
    };
    let applied = stage::apply(&chain, &plan, dest, progress, &mut before_swap);
    drop(target_lock);
    let lock_path = dest.anchor().join(stage::LOCK_FILE);
    let _ = std::fs::remove_file(&lock_path);
    if dest.into {
        let _ = std::fs::remove_file(&marker);
    }
    let applied = match applied {
        Ok(a) => a,
        Err(e) => {
            if dest.into {
                undo_into(dest, into_existed);
            }
            return Err(e);
        }
    };
    let mut not_restored = applied.not_restored;
    not_restored.extend(plan.not_restorable.iter().map(|u| NotRestored {
        path: u.path.clone(),
        reason: u.reason.clone(),
    }));
    Ok(RestoreReport {
        chain: plan.chain.clone(),
        passed_over: plan.passed_over.clone(),
        salvaging: plan.salvaging,
        problems: plan.problems.clone(),
        written: applied.written,
        bytes: applied.bytes,
        deleted: plan.deletes.len() as u64,
        unchanged: plan.unchanged,
        restored: applied
            .roots
            .into_iter()
            .map(|(rel, dest)| Restored { rel, dest })
            .collect(),
        kept: plan.kept.clone(),
        not_restored,
        index_bad: applied.index_bad,
        arrived: applied.arrived,
        safety_copy: safety,
        notes: plan.notes.clone(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// A failed `--into` leaves the directory as it found it: it was new or
/// empty (prepare checked), so everything in it now is this run's.
fn undo_into(dest: &Destination, existed: bool) {
    let dir = dest.anchor();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    if !existed {
        let _ = std::fs::remove_dir(dir);
    }
}
