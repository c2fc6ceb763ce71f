//! The bookkeeping every protocol's client keeps around its window of outstanding
//! requests (issue 16 item 1: window, throttling and response matching in one place):
//!
//! * [`Pending`]: requests written and not yet answered, by sequence number, each with
//!   the one-shot its caller waits on; closing the session fails every waiter at once
//!   (their receivers see the sender dropped: the connection was lost).
//! * [`Pacer`]: the pace of submits: a token bucket for a TPS limit (a burst of a tenth
//!   of a second, at least one) and the throttle back-off of a gateway that answered
//!   "throttled" / "flow control" (a pause that doubles per episode up to 32 times the
//!   first one, reset by the next accepted submit; one episode however many submits
//!   were in flight).
//! * [`next_seq`]: a 31-bit request counter (SMPP `sequence_number` 1..=0x7FFFFFFF;
//!   CMPP's `Sequence_Id` uses the same). SGIP's three-part sequence number is its own.
//!
//! The window itself is a `tokio::sync::Semaphore` of `window` permits held by each
//! submit until its response (or its failure) arrives.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, sleep_until};

/// The next request sequence number from `counter`: 1..=0x7FFFFFFF, wrapping, never 0.
pub fn next_seq(counter: &AtomicU32) -> u32 {
    let s = counter.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF;
    if s == 0 { 1 } else { s }
}

/// Requests awaiting their response, by sequence number `K`; `V` is what the reader
/// hands the waiter (the response, or why it could not be read).
#[derive(Debug)]
pub struct Pending<K, V> {
    /// `None` once closed, so late registrations fail fast.
    map: Mutex<Option<HashMap<K, oneshot::Sender<V>>>>,
}

impl<K: Eq + Hash, V> Default for Pending<K, V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(Some(HashMap::new())),
        }
    }
}

impl<K: Eq + Hash, V> Pending<K, V> {
    /// An open, empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `key` before its request is written; `None` once closed (the session
    /// is down: send nothing).
    pub fn register(&self, key: K) -> Option<oneshot::Receiver<V>> {
        let (tx, rx) = oneshot::channel();
        self.map.lock().ok()?.as_mut()?.insert(key, tx);
        Some(rx)
    }

    /// Forgets `key` (its request was not written, or its caller stopped waiting).
    pub fn unregister(&self, key: &K) {
        if let Ok(mut guard) = self.map.lock()
            && let Some(map) = guard.as_mut()
        {
            map.remove(key);
        }
    }

    /// Hands `value` to the waiter of `key`. Returns whether one was registered (a
    /// response nobody waits for, late or unknown, returns false).
    pub fn complete(&self, key: &K, value: V) -> bool {
        let tx = match self.map.lock() {
            Ok(mut guard) => guard.as_mut().and_then(|m| m.remove(key)),
            Err(_) => None,
        };
        match tx {
            Some(tx) => {
                let _ = tx.send(value);
                true
            }
            None => false,
        }
    }

    /// Requests awaiting a response.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(HashMap::len))
            .unwrap_or(0)
    }

    /// Whether no request awaits a response.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the table: every waiter wakes with its sender dropped (connection lost),
    /// and later registrations fail.
    pub fn close(&self) {
        if let Ok(mut guard) = self.map.lock() {
            guard.take();
        }
    }
}

/// The pace of one session's submits: TPS token bucket and throttle back-off (see the
/// module docs).
#[derive(Debug)]
pub struct Pacer {
    bucket: Option<Mutex<Bucket>>,
    throttle: Mutex<Throttle>,
    /// The first pause after a throttled answer.
    backoff: Duration,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Takes a token, possibly going into debt; returns how long to wait for it.
    fn reserve(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

#[derive(Debug)]
struct Throttle {
    until: Instant,
    next: Duration,
}

/// How many times the first pause the throttle back-off grows to at most.
const MAX_BACKOFF_FACTOR: u32 = 32;

impl Pacer {
    /// `tps` submits a second (0: unlimited), `backoff` the first pause after a
    /// throttled answer.
    pub fn new(tps: u32, backoff: Duration) -> Self {
        let bucket = (tps > 0).then(|| {
            let rate = f64::from(tps);
            let burst = (rate / 10.0).max(1.0);
            Mutex::new(Bucket {
                rate,
                burst,
                tokens: burst,
                last: Instant::now(),
            })
        });
        Self {
            bucket,
            throttle: Mutex::new(Throttle {
                until: Instant::now(),
                next: backoff,
            }),
            backoff,
        }
    }

    /// Waits out a throttle pause, then for a token of the TPS limit.
    pub async fn pace(&self) {
        let until = self.throttle.lock().map(|t| t.until).ok();
        if let Some(until) = until
            && until > Instant::now()
        {
            sleep_until(until).await;
        }
        if let Some(bucket) = &self.bucket {
            let wait = bucket
                .lock()
                .ok()
                .and_then(|mut b| b.reserve(Instant::now()));
            if let Some(wait) = wait {
                sleep(wait).await;
            }
        }
    }

    /// The gateway answered "throttled": pause every submit, unless a pause is already
    /// running (one episode per pause, however many submits were in flight). Returns the
    /// new pause when this answer started one.
    pub fn throttled(&self) -> Option<Duration> {
        let mut t = self.throttle.lock().ok()?;
        let now = Instant::now();
        if now < t.until {
            return None;
        }
        let pause = t.next;
        t.until = now + pause;
        t.next = (t.next * 2).min(self.backoff * MAX_BACKOFF_FACTOR);
        Some(pause)
    }

    /// A submit was accepted: the next throttle pause starts from the first again.
    pub fn accepted(&self) {
        if let Ok(mut t) = self.throttle.lock() {
            t.next = self.backoff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_stay_in_31_bits_and_skip_zero() {
        let c = AtomicU32::new(0x7FFF_FFFF);
        assert_eq!(next_seq(&c), 0x7FFF_FFFF);
        assert_eq!(next_seq(&c), 1, "0x80000000 masks to 0, which is skipped");
        assert_eq!(next_seq(&c), 1);
        assert_eq!(next_seq(&c), 2);
    }

    #[tokio::test]
    async fn pending_completes_once_and_close_fails_the_waiters() {
        let p: Pending<u32, &str> = Pending::new();
        let a = p.register(1).expect("open");
        let b = p.register(2).expect("open");
        assert_eq!(p.len(), 2);
        assert!(p.complete(&1, "resp"));
        assert!(!p.complete(&1, "again"), "answered once");
        assert_eq!(a.await, Ok("resp"));
        p.unregister(&9);
        p.close();
        assert!(
            b.await.is_err(),
            "closed: the waiter sees the connection lost"
        );
        assert!(p.register(3).is_none());
        assert!(p.is_empty());
    }

    #[tokio::test]
    async fn throttle_pauses_double_to_32_times_and_reset_on_acceptance() {
        let ms = Duration::from_millis;
        let pacer = Pacer::new(0, ms(1));
        assert_eq!(pacer.throttled(), Some(ms(1)));
        assert_eq!(pacer.throttled(), None, "one episode per pause");
        let start = Instant::now();
        pacer.pace().await;
        assert!(Instant::now() - start >= ms(1));
        let mut pauses = Vec::new();
        for _ in 0..7 {
            pauses.push(pacer.throttled().expect("a new episode after the pause"));
            pacer.pace().await;
        }
        assert_eq!(
            pauses,
            [ms(2), ms(4), ms(8), ms(16), ms(32), ms(32), ms(32)]
        );
        pacer.accepted();
        pacer.pace().await;
        assert_eq!(pacer.throttled(), Some(ms(1)));
    }

    #[tokio::test]
    async fn the_bucket_holds_the_tps() {
        let pacer = Pacer::new(1000, Duration::from_millis(1));
        let start = Instant::now();
        for _ in 0..120 {
            pacer.pace().await;
        }
        // A burst of 100, then 20 more at 1,000/s: at least 19 ms.
        let took = Instant::now() - start;
        assert!(took >= Duration::from_millis(19), "{took:?}");
    }
}
