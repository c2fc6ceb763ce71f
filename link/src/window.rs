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
//! * [`Lifecycle`]: the window of `window` permits (a `tokio::sync::Semaphore` held by
//!   each submit until its response or its failure arrives), the drain and close
//!   flags and the cancel token every task of the session watches, and the graceful
//!   close they make together: stop new submits, wait for the window to drain, say
//!   goodbye in the protocol's words (`unbind`, `CMPP_TERMINATE`, SGIP `Unbind`).
//! * [`next_seq`]: a 31-bit request counter (SMPP `sequence_number` 1..=0x7FFFFFFF;
//!   CMPP's `Sequence_Id` uses the same). SGIP's three-part sequence number is its own.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit, oneshot};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

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

/// The life of one client: its send window, whether it still takes submits, whether
/// it is closing, and the cancel token its reader, writer and timers watch.
///
/// Draining (`stop_submitting`) refuses new submits while those written keep waiting
/// for their responses and inbound receipts and MOs still flow; closing is draining
/// plus the goodbye; `shut` ends everything at once (every submit still waiting for
/// a window slot fails, every task sees the token cancelled).
#[derive(Debug)]
pub struct Lifecycle {
    window: Semaphore,
    size: u32,
    draining: AtomicBool,
    closing: AtomicBool,
    cancel: CancellationToken,
}

impl Lifecycle {
    /// A live client with a window of `window` outstanding requests, whose tasks
    /// watch `cancel`.
    pub fn new(window: usize, cancel: CancellationToken) -> Self {
        Self {
            window: Semaphore::new(window),
            size: u32::try_from(window).unwrap_or(u32::MAX),
            draining: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            cancel,
        }
    }

    /// The token cancelled when the client is shut.
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Refuse new submits from now on; those written keep waiting for their answers.
    pub fn stop_submitting(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True while a new submit may be written (neither draining nor closing). Checked
    /// before a submit waits for its slot and again after every wait.
    pub fn accepting(&self) -> bool {
        !self.draining.load(Ordering::SeqCst) && !self.closing.load(Ordering::SeqCst)
    }

    /// A window slot, held until the submit's response or failure; `None` once shut.
    pub async fn slot(&self) -> Option<SemaphorePermit<'_>> {
        self.window.acquire().await.ok()
    }

    /// Marks the client closing; true when it already was (someone else says the
    /// goodbye).
    pub fn begin_closing(&self) -> bool {
        self.closing.swap(true, Ordering::SeqCst)
    }

    /// True once a close has begun.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// True once closing or shut.
    pub fn is_closed(&self) -> bool {
        self.is_closing() || self.cancel.is_cancelled()
    }

    /// Resolves once the client is shut.
    pub async fn closed(&self) {
        self.cancel.cancelled().await;
    }

    /// The graceful close: stop new submits; when a close is already under way,
    /// wait until it has shut the client and answer `false`. Otherwise wait up to
    /// `grace` for every window slot to come back (the responses of the submits in
    /// flight), run `goodbye` (the protocol's unbind and its answer) and answer
    /// `true`: the caller then shuts the session.
    pub async fn close_within(&self, grace: Duration, goodbye: impl Future<Output = ()>) -> bool {
        self.stop_submitting();
        if self.begin_closing() {
            self.closed().await;
            return false;
        }
        let _drained = timeout(grace, self.window.acquire_many(self.size)).await;
        goodbye.await;
        true
    }

    /// Ends the client now: closing, the window closed (a submit waiting for a slot
    /// fails), the token cancelled.
    pub fn shut(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.window.close();
        self.cancel.cancel();
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
    async fn a_close_drains_the_window_says_goodbye_once_and_shuts() {
        let life = std::sync::Arc::new(Lifecycle::new(2, CancellationToken::new()));
        let held = life.slot().await.expect("open");
        assert!(life.accepting());
        let closer = {
            let life = life.clone();
            tokio::spawn(async move {
                let said = life.close_within(Duration::from_secs(5), async {}).await;
                if said {
                    life.shut();
                }
                said
            })
        };
        // The close waits for the held slot; a second close waits for the first.
        tokio::task::yield_now().await;
        assert!(!life.accepting() && life.is_closing() && !life.token().is_cancelled());
        let second = {
            let life = life.clone();
            tokio::spawn(async move { life.close_within(Duration::ZERO, async {}).await })
        };
        drop(held);
        assert!(
            closer.await.expect("closer"),
            "the first close says goodbye"
        );
        assert!(!second.await.expect("second"), "the second only waits");
        assert!(life.is_closed());
        assert!(life.slot().await.is_none(), "no slot once shut");
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
