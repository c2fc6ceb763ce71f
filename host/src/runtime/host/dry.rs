//! Calls that write nothing durable (issue 17 items 1 and 2): the admission corpus
//! and the partners' dry runs. A [`DryRun`] sits in the call's [`PartnerScope`]
//! (`super::PartnerScope`): key-value and attribute writes land in its overlay,
//! reads see the overlay first, and every data call is recorded, so the answer can
//! show what the module read and what it tried to write. Content-library reads go
//! to the partner's real library (it is read-only to modules).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

/// One host call a dry-run call made (R-2.4: the partner sees what its code did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HostCallRecord {
    /// `kv`, `content`, `subscribers`.
    pub interface: &'static str,
    /// `get`, `set`, `delete`, `incr`, `list-keys`, `count`, `get-attribute`,
    /// `set-attribute`.
    pub op: &'static str,
    /// The key, `collection[index]`, or `subscriber.attribute`.
    pub target: String,
    /// What the module got back, in a few words (`found 12 bytes`, `absent`,
    /// `kept in the dry run, not stored`, the error).
    pub outcome: String,
}

/// The overlay and record of dry-run calls; cheap to clone, shared by the calls of
/// one corpus so a sequence (subscribe, then messages) sees its own writes.
#[derive(Debug, Clone, Default)]
pub struct DryRun {
    inner: Arc<Mutex<DryState>>,
}

#[derive(Debug, Default)]
struct DryState {
    read_through: bool,
    shadow: bool,
    kv: BTreeMap<String, Option<Vec<u8>>>,
    attributes: HashMap<(String, String), String>,
    subscribers: HashSet<String>,
    calls: Vec<HostCallRecord>,
}

impl DryRun {
    /// Reads see nothing stored: an empty key-value store and only the subscribers
    /// added with [`Self::with_subscriber`] (the admission corpus, so a verdict does
    /// not depend on the partner's data).
    pub fn isolated() -> Self {
        Self::default()
    }

    /// Reads fall through to the partner's stored keys and attributes (a partner's
    /// dry run of its live data); writes still stay in the overlay.
    pub fn over_store() -> Self {
        let dry = Self::default();
        dry.lock().read_through = true;
        dry
    }

    /// A shadow run (issue 17 item 3): reads fall through to the partner's stored
    /// data as in [`Self::over_store`], writes stay in the overlay, and the call
    /// queues in the partner's shadow lane, never in the lane of its live calls.
    pub fn shadow() -> Self {
        let dry = Self::over_store();
        dry.lock().shadow = true;
        dry
    }

    /// Whether this is a shadow run's overlay (see [`Self::shadow`]).
    pub fn is_shadow(&self) -> bool {
        self.lock().shadow
    }

    /// Make `subscriber` known to the calls with these attributes (a synthetic
    /// subscriber, or a real one's attributes as the caller wants them).
    #[must_use]
    pub fn with_subscriber<'a>(
        self,
        subscriber: &str,
        attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        self.add_subscriber(subscriber, attributes);
        self
    }

    /// As [`Self::with_subscriber`], on a dry run already shared.
    pub fn add_subscriber<'a>(
        &self,
        subscriber: &str,
        attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let mut state = self.lock();
        state.subscribers.insert(subscriber.to_string());
        for (name, value) in attributes {
            state.attributes.insert(
                (subscriber.to_string(), name.to_string()),
                value.to_string(),
            );
        }
    }

    /// The host calls recorded since the last take, oldest first.
    pub fn take_calls(&self) -> Vec<HostCallRecord> {
        std::mem::take(&mut self.lock().calls)
    }

    fn lock(&self) -> MutexGuard<'_, DryState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn read_through(&self) -> bool {
        self.lock().read_through
    }

    pub(super) fn record(
        &self,
        interface: &'static str,
        op: &'static str,
        target: &str,
        outcome: String,
    ) {
        self.lock().calls.push(HostCallRecord {
            interface,
            op,
            target: target.to_string(),
            outcome,
        });
    }

    /// The overlay's value of `key`: `Some(None)` deleted here, `None` not touched.
    pub(super) fn kv_value(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.lock().kv.get(key).cloned()
    }

    pub(super) fn kv_put(&self, key: &str, value: Option<Vec<u8>>) {
        self.lock().kv.insert(key.to_string(), value);
    }

    /// Merge stored keys with the overlay's writes and deletions: what
    /// `list-keys` answers in a dry run.
    pub(super) fn kv_keys(
        &self,
        stored: Vec<String>,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<String> {
        let state = self.lock();
        let mut keys: std::collections::BTreeSet<String> = stored
            .into_iter()
            .filter(|k| !matches!(state.kv.get(k), Some(None)))
            .collect();
        keys.extend(
            state
                .kv
                .iter()
                .filter(|(k, v)| v.is_some() && k.starts_with(prefix))
                .map(|(k, _)| k.clone()),
        );
        keys.into_iter()
            .filter(|k| after.is_none_or(|a| k.as_str() > a))
            .take(limit)
            .collect()
    }

    /// Whether `subscriber` was added to this dry run.
    pub(super) fn knows(&self, subscriber: &str) -> bool {
        self.lock().subscribers.contains(subscriber)
    }

    pub(super) fn attribute(&self, subscriber: &str, name: &str) -> Option<String> {
        self.lock()
            .attributes
            .get(&(subscriber.to_string(), name.to_string()))
            .cloned()
    }

    pub(super) fn set_attribute(&self, subscriber: &str, name: &str, value: &str) {
        self.lock().attributes.insert(
            (subscriber.to_string(), name.to_string()),
            value.to_string(),
        );
    }
}
