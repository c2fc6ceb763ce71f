//! Compiled versions in memory: only versions that are called, at most
//! `[modules] loaded_versions` of them, the least recently called evicted first.
//! An upload does not keep its version loaded; the first call loads it from the
//! store (a cache hit on disk is a fraction of a millisecond).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::runtime::LoadedModule;

pub(super) struct LoadedVersions {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tick: u64,
    /// Version id → (module, last use).
    entries: HashMap<i64, (Arc<LoadedModule>, u64)>,
}

impl LoadedVersions {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(super) fn get(&self, version_id: i64) -> Option<Arc<LoadedModule>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.tick += 1;
        let tick = inner.tick;
        inner.entries.get_mut(&version_id).map(|(module, used)| {
            *used = tick;
            module.clone()
        })
    }

    pub(super) fn insert(&self, version_id: i64, module: Arc<LoadedModule>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.tick += 1;
        let tick = inner.tick;
        inner.entries.insert(version_id, (module, tick));
        while inner.entries.len() > self.capacity {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => inner.entries.remove(&id),
                None => break,
            };
        }
    }

    /// How many versions are loaded now.
    pub(super) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}
