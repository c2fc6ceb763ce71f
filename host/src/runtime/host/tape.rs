//! Record and replay (issue 17 item 7): the answers the host gave one call, so the
//! call can be run again later, deterministically, on the same or another version.
//!
//! A live call records every answer of the contract's imports in order: `clock`
//! (`now-ms`, `utc-offset-seconds`), `random` (`next-u64`), `kv`, `content` and
//! `subscribers`, each with the arguments that name the question (key,
//! collection and index, subscriber and attribute). A replay answers from the
//! recording instead of the store or the clock: the first recorded answer of the
//! same call with the same arguments, in order, so a replayed call never reads or
//! writes anything stored. A question the recording has no answer for (another
//! version may ask other things) gets a neutral answer (absent, zero, or
//! `unavailable` for calls that can fail) and is reported as a difference, as are
//! recorded answers nobody asked for again.
//!
//! WASI's clocks in a replay start at the recorded start of the call, and WASI's
//! `insecure-seed` (which e.g. Rust's `HashMap` keys come from) is recorded and
//! replayed; WASI's secure random bytes are not part of the contract and are not
//! recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One answer the host gave a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostAnswer {
    /// `interface.function` as the contract names it (`kv.get`, `clock.now-ms`,
    /// `subscribers.get-attribute`…).
    pub call: String,
    /// The arguments that name the question (key; collection and index;
    /// subscriber and attribute name; a written value's length is not one).
    pub args: Vec<String>,
    /// The answer as the contract types serialise (`{"Ok": …}` / `{"Err": …}` for
    /// results).
    #[schema(value_type = Object)]
    pub answer: serde_json::Value,
}

/// A call's answers being recorded or replayed; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tape {
    inner: Arc<Mutex<TapeState>>,
}

#[derive(Debug, Default)]
struct TapeState {
    replaying: bool,
    /// Recording: every answer so far. Replaying: the answers not used yet.
    answers: VecDeque<HostAnswer>,
    /// Replaying: the questions the recording had no answer for, with the neutral
    /// answer given.
    unrecorded: Vec<HostAnswer>,
}

impl Tape {
    /// An empty recording.
    pub fn recording() -> Self {
        Self {
            inner: Arc::new(Mutex::new(TapeState::default())),
        }
    }

    /// A replay of `answers`.
    pub fn replaying(answers: Vec<HostAnswer>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(TapeState {
                replaying: true,
                answers: answers.into(),
                unrecorded: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TapeState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this tape replays (answers come from it, nothing is stored).
    pub fn is_replay(&self) -> bool {
        self.lock().replaying
    }

    /// Replaying: the recorded answer of `call` with `args` (used up), or
    /// `missing` (reported as unrecorded). `None` when recording.
    pub(crate) fn replay<T: Serialize + DeserializeOwned>(
        &self,
        call: &str,
        args: &[&str],
        missing: impl FnOnce() -> T,
    ) -> Option<T> {
        let mut state = self.lock();
        if !state.replaying {
            return None;
        }
        let found = state.answers.iter().position(|a| {
            a.call == call && a.args.iter().map(String::as_str).eq(args.iter().copied())
        });
        if let Some(answer) = found
            .and_then(|i| state.answers.remove(i))
            .and_then(|a| serde_json::from_value(a.answer).ok())
        {
            return Some(answer);
        }
        let value = missing();
        state.unrecorded.push(HostAnswer {
            call: call.to_string(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
            answer: serde_json::to_value(&value).unwrap_or_default(),
        });
        Some(value)
    }

    /// Recording: keep `answer` of `call` with `args`. A replay records nothing.
    pub(crate) fn record<T: Serialize>(&self, call: &str, args: &[&str], answer: &T) {
        let mut state = self.lock();
        if state.replaying {
            return;
        }
        state.answers.push_back(HostAnswer {
            call: call.to_string(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
            answer: serde_json::to_value(answer).unwrap_or_default(),
        });
    }

    /// Recording: every answer, in order. Replaying: the recorded answers no
    /// question used.
    pub fn answers(&self) -> Vec<HostAnswer> {
        self.lock().answers.iter().cloned().collect()
    }

    /// Replaying: the questions the recording had no answer for.
    pub fn unrecorded(&self) -> Vec<HostAnswer> {
        self.lock().unrecorded.clone()
    }
}

/// Replay `call` with `args` on `tape` if it replays, else run `live` and record
/// its answer: the one pattern every recorded host call follows.
pub(crate) async fn answer<T, F>(
    tape: Option<&Tape>,
    call: &str,
    args: &[&str],
    missing: impl FnOnce() -> T,
    live: F,
) -> T
where
    T: Serialize + DeserializeOwned,
    F: Future<Output = T>,
{
    if let Some(tape) = tape
        && let Some(replayed) = tape.replay(call, args, missing)
    {
        return replayed;
    }
    let value = live.await;
    if let Some(tape) = tape {
        tape.record(call, args, &value);
    }
    value
}
