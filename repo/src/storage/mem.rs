//! [`MemStorage`]: an in-memory storage for unit tests of the layers above
//! (and a second implementation that keeps the conformance suite honest).
//! Never used for real backups.

use std::collections::BTreeMap;
use std::io::{Cursor, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

use super::{Lock, LockMode, Pending, ReadSeek, Storage, TEMP_PREFIX};
use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct State {
    exists: bool,
    objects: BTreeMap<String, Arc<Vec<u8>>>,
    shared: usize,
    exclusive: Option<String>,
}

/// An in-memory repository.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    state: Arc<Mutex<State>>,
}

impl MemStorage {
    /// An empty, not yet created repository.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| Error::Request("memory storage poisoned".into()))?;
        f(&mut st)
    }

    /// Replaces an object's bytes (tests damage archives this way).
    ///
    /// # Errors
    /// Never, but for a poisoned lock.
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.with(|s| {
            s.exists = true;
            s.objects.insert(name.to_string(), Arc::new(bytes));
            Ok(())
        })
    }
}

fn missing(name: &str) -> Error {
    Error::NotFound(format!("`mem:{name}`"))
}

impl Storage for MemStorage {
    fn location(&self) -> String {
        "mem:".into()
    }

    fn describe(&self, name: &str) -> String {
        format!("`mem:{name}`")
    }

    fn exists(&self) -> Result<bool> {
        self.with(|s| Ok(s.exists))
    }

    fn create_root(&self) -> Result<bool> {
        self.with(|s| Ok(!std::mem::replace(&mut s.exists, true)))
    }

    fn remove_root_if_empty(&self) -> Result<()> {
        self.with(|s| {
            if s.objects.is_empty() {
                s.exists = false;
            }
            Ok(())
        })
    }

    fn list(&self) -> Result<Vec<String>> {
        self.with(|s| {
            if !s.exists {
                return Err(missing(""));
            }
            Ok(s.objects.keys().cloned().collect())
        })
    }

    fn size(&self, name: &str) -> Result<u64> {
        self.with(|s| {
            s.objects
                .get(name)
                .map(|b| b.len() as u64)
                .ok_or_else(|| missing(name))
        })
    }

    fn open(&self, name: &str) -> Result<Box<dyn ReadSeek>> {
        let bytes = self.with(|s| s.objects.get(name).cloned().ok_or_else(|| missing(name)))?;
        Ok(Box::new(Cursor::new(ArcBytes(bytes))))
    }

    fn create(&self, name: &str) -> Result<Box<dyn Pending>> {
        let temp = format!("{TEMP_PREFIX}{name}");
        self.with(|s| {
            if !s.exists {
                return Err(missing(""));
            }
            if s.objects.contains_key(&temp) {
                return Err(Error::AlreadyExists(format!("`mem:{temp}`")));
            }
            s.objects.insert(temp.clone(), Arc::new(Vec::new()));
            Ok(())
        })?;
        Ok(Box::new(MemPending {
            storage: self.clone(),
            name: name.to_string(),
            temp,
            buf: Cursor::new(Vec::new()),
            committed: false,
        }))
    }

    fn remove(&self, name: &str) -> Result<()> {
        self.with(|s| {
            s.objects
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| missing(name))
        })
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn lock(&self, mode: LockMode, holder: &str) -> Result<Lock> {
        self.with(|s| {
            if !s.exists {
                return Err(missing(""));
            }
            let refused = |h: &str| Error::Locked {
                place: "`mem:`".into(),
                holder: h.to_string(),
            };
            match mode {
                LockMode::Shared => {
                    if let Some(h) = &s.exclusive {
                        return Err(refused(h));
                    }
                    s.shared += 1;
                }
                LockMode::Exclusive => {
                    if let Some(h) = &s.exclusive {
                        return Err(refused(h));
                    }
                    if s.shared > 0 {
                        return Err(refused(&format!("{} reader(s)", s.shared)));
                    }
                    s.exclusive = Some(holder.to_string());
                }
            }
            Ok(())
        })?;
        Ok(Lock::new(
            mode,
            Box::new(MemLockGuard {
                storage: self.clone(),
                mode,
            }),
        ))
    }
}

/// Shared bytes that `Cursor` can read.
struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

struct MemLockGuard {
    storage: MemStorage,
    mode: LockMode,
}

impl Drop for MemLockGuard {
    fn drop(&mut self) {
        let mode = self.mode;
        let _ = self.storage.with(|s| {
            match mode {
                LockMode::Shared => s.shared = s.shared.saturating_sub(1),
                LockMode::Exclusive => s.exclusive = None,
            }
            Ok(())
        });
    }
}

struct MemPending {
    storage: MemStorage,
    name: String,
    temp: String,
    buf: Cursor<Vec<u8>>,
    committed: bool,
}

impl Write for MemPending {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for MemPending {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.buf.seek(pos)
    }
}

impl Pending for MemPending {
    fn name(&self) -> &str {
        &self.name
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        let bytes = std::mem::take(self.buf.get_mut());
        let (name, temp) = (self.name.clone(), self.temp.clone());
        self.storage.with(|s| {
            if s.objects.contains_key(&name) {
                return Err(Error::AlreadyExists(format!("`mem:{name}`")));
            }
            s.objects.remove(&temp);
            s.objects.insert(name, Arc::new(bytes));
            Ok(())
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for MemPending {
    fn drop(&mut self) {
        if !self.committed {
            let temp = self.temp.clone();
            let _ = self.storage.with(|s| {
                s.objects.remove(&temp);
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passes_the_conformance_suite() {
        crate::storage::conformance::run(&|| Box::new(super::MemStorage::new()));
    }
}
