//! Which version of each module is active, kept in memory.
//!
//! Every module call (a push's `bulletin`, a user's `on-mo`, a welcome) needs the
//! active version of a module; reading it from the database was one query per call.
//! The answer is kept here per (partner, module name):
//!
//! - an activation, a rollback or the first upload through this registry drops the
//!   module's entry once its transaction has committed, so the next call reads the
//!   new version (the registry is one per process: API, router and scheduler share
//!   it);
//! - another replica's change (PostgreSQL with several `tongdao serve`) is read
//!   back after at most `[modules] active_recheck_ms` milliseconds: an entry older
//!   than that is read again;
//! - a read that started before a change and finishes after it is not kept (a
//!   generation number, bumped by every change, tells), so a stale answer never
//!   outlives the change that made it stale.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The module row's answer: its id and its active version (None: no version
/// active), the shadow candidate and the canary with its percentage (issue 17
/// items 3 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Active {
    pub module_id: i64,
    pub version_id: Option<i64>,
    pub shadow_version_id: Option<i64>,
    pub canary: Option<(i64, u32)>,
}

/// What a lookup found.
pub(super) enum Lookup {
    /// A fresh answer.
    Hit(Active),
    /// Nothing fresh: read the database, then [`ActiveVersions::keep`] the answer
    /// with this generation.
    Miss { generation: u64 },
}

pub(super) struct ActiveVersions {
    recheck: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every [`ActiveVersions::forget`].
    generation: u64,
    /// Partner id → module name → (answer, when it was read).
    entries: HashMap<i64, HashMap<String, (Active, Instant)>>,
}

impl ActiveVersions {
    /// Entries are trusted for `recheck` (zero: never, every call reads the database).
    pub(super) fn new(recheck: Duration) -> Self {
        Self {
            recheck,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn lookup(&self, partner_id: i64, name: &str) -> Lookup {
        let inner = self.inner();
        let fresh = inner
            .entries
            .get(&partner_id)
            .and_then(|modules| modules.get(name))
            .filter(|(_, read_at)| read_at.elapsed() < self.recheck);
        match fresh {
            Some((active, _)) => Lookup::Hit(*active),
            None => Lookup::Miss {
                generation: inner.generation,
            },
        }
    }

    /// Keep an answer read from the database after a [`Lookup::Miss`] of
    /// `generation`, unless something changed since.
    pub(super) fn keep(&self, partner_id: i64, name: &str, generation: u64, active: Active) {
        let mut inner = self.inner();
        if inner.generation != generation || self.recheck.is_zero() {
            return;
        }
        inner
            .entries
            .entry(partner_id)
            .or_default()
            .insert(name.to_string(), (active, Instant::now()));
    }

    /// The active version of this module changed (committed): the next call reads it.
    pub(super) fn forget(&self, partner_id: i64, name: &str) {
        let mut inner = self.inner();
        inner.generation = inner.generation.wrapping_add(1);
        if let Some(modules) = inner.entries.get_mut(&partner_id) {
            modules.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Active = Active {
        module_id: 1,
        version_id: Some(10),
        shadow_version_id: None,
        canary: None,
    };

    fn miss(lookup: Lookup) -> u64 {
        match lookup {
            Lookup::Miss { generation } => generation,
            Lookup::Hit(active) => panic!("expected a miss, got {active:?}"),
        }
    }

    #[test]
    fn an_answer_is_kept_until_forgotten() {
        let cache = ActiveVersions::new(Duration::from_secs(3600));
        let generation = miss(cache.lookup(7, "horoscope"));
        cache.keep(7, "horoscope", generation, A);
        assert!(matches!(cache.lookup(7, "horoscope"), Lookup::Hit(a) if a == A));
        // Per partner and per name.
        miss(cache.lookup(8, "horoscope"));
        miss(cache.lookup(7, "quiz"));
        cache.forget(7, "horoscope");
        miss(cache.lookup(7, "horoscope"));
    }

    #[test]
    fn a_read_that_overlapped_a_change_is_not_kept() {
        let cache = ActiveVersions::new(Duration::from_secs(3600));
        let generation = miss(cache.lookup(7, "horoscope"));
        // The activation commits and forgets while the read is under way.
        cache.forget(7, "horoscope");
        cache.keep(7, "horoscope", generation, A);
        miss(cache.lookup(7, "horoscope"));
    }

    #[test]
    fn a_zero_recheck_keeps_nothing() {
        let cache = ActiveVersions::new(Duration::ZERO);
        let generation = miss(cache.lookup(7, "horoscope"));
        cache.keep(7, "horoscope", generation, A);
        miss(cache.lookup(7, "horoscope"));
    }
}
