//! Flow control (issue 18 item 2, R-1.3, R-2.5): a push never delays MOs.
//!
//! An SMSC sends receipts and MOs down the same binds, in one queue per ESME, as
//! each falls due (SMPP 3.4 §4.6: both are `deliver_sm`; CMPP's `CMPP_DELIVER` and
//! SGIP's `Deliver`/`Report` likewise share their links). When the relay submits
//! faster than it takes receipts in, the receipts owed to it pile up at the SMSC and
//! every MO, a `TD` included, waits behind them: minutes at a million MTs (the load
//! bench found MO p50 462 s before this rule).
//!
//! So each operator's binds keep their submits within their receipt intake: a
//! segment the SMSC accepts with a receipt requested is **awaited** until a receipt
//! arrives (any receipt of that operator pays the oldest one) or until
//! `[relay] receipt_wait_secs` have passed (a handset that is off answers hours
//! later; its receipt is not queued at the SMSC, so it stops counting). The MTs a
//! bind has claimed and not yet had answered count too, one each, and together the
//! two stay within `[relay] max_awaited_receipts` per operator: a bind claims only
//! what room is left (reserved at once, so binds never claim the same room twice).
//! An MO then waits at the SMSC behind at most that many receipts (a long MT's extra
//! segments aside), whatever the size of the push.
//!
//! The ledger is per process: receipts reach the process whose sessions the SMSC
//! chooses, which on a shared operator evens out between processes as their
//! submits do.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Awaited segments are counted in buckets of this span (expiry resolution).
const BUCKET: Duration = Duration::from_millis(250);

/// The awaited receipts of every operator of this process (see the module docs).
#[derive(Debug)]
pub(super) struct AwaitedReceipts {
    /// Most MTs claimed and segments awaited per operator before its binds claim no
    /// more; 0 = no bound.
    cap: u64,
    /// How long an accepted segment's receipt counts as awaited.
    wait: Duration,
    ledgers: Mutex<HashMap<String, Ledger>>,
    /// How long a bind without room waits for receipts before it looks again.
    recheck: Duration,
    /// Woken when receipts arrive or claims are given back: a bind waiting for room
    /// looks again.
    paid: Notify,
}

/// One operator's claimed MTs not yet answered, and its awaited segments, oldest
/// first, in buckets of [`BUCKET`].
#[derive(Debug, Default)]
struct Ledger {
    /// MTs claimed within the bound whose submit outcome is not in yet.
    reserved: u64,
    buckets: VecDeque<(Instant, u64)>,
    /// Segments awaited (the sum of `buckets`).
    total: u64,
}

impl Ledger {
    /// Drop the buckets older than `wait` (their receipts are late, not queued).
    fn expire(&mut self, now: Instant, wait: Duration) {
        while let Some(&(at, n)) = self.buckets.front() {
            if now.saturating_duration_since(at) < wait {
                break;
            }
            self.buckets.pop_front();
            self.total = self.total.saturating_sub(n);
        }
    }

    fn owe(&mut self, now: Instant, n: u64) {
        if n == 0 {
            return;
        }
        match self.buckets.back_mut() {
            Some((at, count)) if now.saturating_duration_since(*at) < BUCKET => {
                *count = count.saturating_add(n);
            }
            _ => self.buckets.push_back((now, n)),
        }
        self.total = self.total.saturating_add(n);
    }

    /// Pay `n` receipts against the oldest awaited segments (a surplus, such as a
    /// duplicate or an intermediate receipt, pays nothing further).
    fn pay(&mut self, mut n: u64) {
        while n > 0 {
            let Some((_, count)) = self.buckets.front_mut() else {
                break;
            };
            let paid = (*count).min(n);
            *count -= paid;
            n -= paid;
            self.total -= paid;
            if *count == 0 {
                self.buckets.pop_front();
            }
        }
    }

    fn used(&self) -> u64 {
        self.total.saturating_add(self.reserved)
    }
}

impl AwaitedReceipts {
    /// `cap` per operator (0: no bound), each segment awaited for `wait`.
    pub(super) fn new(cap: u64, wait: Duration) -> Self {
        Self {
            cap,
            wait,
            ledgers: Mutex::new(HashMap::new()),
            recheck: BUCKET,
            paid: Notify::new(),
        }
    }

    /// Room to claim up to `want` MTs for `operator`: how many it may claim now,
    /// reserved until each is answered ([`Claims::settle`]) or given back
    /// ([`Self::release`]). Without room, returns 0 once receipts arrive or the
    /// recheck span has passed (the oldest awaited segments may have expired): look
    /// again then.
    pub(super) async fn reserve(&self, operator: &str, want: u64) -> u64 {
        if self.cap == 0 {
            return want;
        }
        // Listening before looking, so receipts paid in between wake this caller.
        let paid = self.paid.notified();
        tokio::pin!(paid);
        paid.as_mut().enable();
        let granted = self.reserve_now(operator, want);
        if granted == 0 {
            let _ = tokio::time::timeout(self.recheck, paid).await;
        }
        granted
    }

    fn reserve_now(&self, operator: &str, want: u64) -> u64 {
        let now = Instant::now();
        let Ok(mut ledgers) = self.ledgers.lock() else {
            return want;
        };
        let ledger = ledgers.entry(operator.to_string()).or_default();
        ledger.expire(now, self.wait);
        let granted = self.cap.saturating_sub(ledger.used()).min(want);
        ledger.reserved = ledger.reserved.saturating_add(granted);
        gauge(operator, ledger.total);
        granted
    }

    /// Give back `n` reserved MTs that were not claimed or not sent.
    pub(super) fn release(&self, operator: &str, n: u64) {
        if self.cap == 0 || n == 0 {
            return;
        }
        if let Ok(mut ledgers) = self.ledgers.lock()
            && let Some(ledger) = ledgers.get_mut(operator)
        {
            ledger.reserved = ledger.reserved.saturating_sub(n);
        }
        self.paid.notify_waiters();
    }

    /// `receipts` arrived from `operator` (stored and acknowledged).
    pub(super) fn pay(&self, operator: &str, receipts: u64) {
        if self.cap == 0 || receipts == 0 {
            return;
        }
        if let Ok(mut ledgers) = self.ledgers.lock()
            && let Some(ledger) = ledgers.get_mut(operator)
        {
            ledger.pay(receipts);
            gauge(operator, ledger.total);
        }
        self.paid.notify_waiters();
    }

    /// The reserved MTs of one chain of submits, settled one by one; those left
    /// when it is dropped (a chain that ended early) are given back.
    pub(super) fn claims<'a>(&'a self, operator: &'a str, n: u64) -> Claims<'a> {
        Claims {
            awaited: self,
            operator,
            left: n,
        }
    }
}

/// Reserved MTs of one chain (see [`AwaitedReceipts::claims`]).
pub(super) struct Claims<'a> {
    awaited: &'a AwaitedReceipts,
    operator: &'a str,
    left: u64,
}

impl Claims<'_> {
    /// One MT answered: `segments` accepted, each with a receipt to come.
    pub(super) fn settle(&mut self, segments: u64) {
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        let awaited = self.awaited;
        if awaited.cap == 0 {
            return;
        }
        if let Ok(mut ledgers) = awaited.ledgers.lock() {
            let ledger = ledgers.entry(self.operator.to_string()).or_default();
            ledger.reserved = ledger.reserved.saturating_sub(1);
            ledger.owe(Instant::now(), segments);
            gauge(self.operator, ledger.total);
        }
        if segments == 0 {
            awaited.paid.notify_waiters();
        }
    }
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        self.awaited.release(self.operator, self.left);
    }
}

fn gauge(operator: &str, awaited: u64) {
    #[allow(clippy::cast_precision_loss)] // a count far below 2^52
    metrics::gauge!("tongdao_receipts_awaited", "operator" => operator.to_string())
        .set(awaited as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Claims and awaited segments share one bound per operator; receipts pay the
    /// oldest; a surplus pays nothing further; operators are apart.
    #[test]
    fn claims_and_receipts_share_the_bound() {
        let awaited = AwaitedReceipts::new(100, Duration::from_secs(60));
        assert_eq!(awaited.reserve_now("mobile", 70), 70);
        assert_eq!(awaited.reserve_now("mobile", 70), 30, "only what is left");
        assert_eq!(awaited.reserve_now("mobile", 1), 0);
        assert_eq!(
            awaited.reserve_now("unicom", 100),
            100,
            "operators are apart"
        );
        // 30 of the first claim given back unsent; 40 answered, one segment each.
        awaited.release("mobile", 30);
        let mut claims = awaited.claims("mobile", 70);
        for _ in 0..40 {
            claims.settle(1);
        }
        drop(claims); // 30 answered no more: given back
        assert_eq!(awaited.reserve_now("mobile", 1000), 60);
        awaited.release("mobile", 60);
        awaited.pay("mobile", 25);
        assert_eq!(awaited.reserve_now("mobile", 1000), 85);
        awaited.release("mobile", 85);
        awaited.pay("mobile", 500);
        assert_eq!(
            awaited.reserve_now("mobile", 1000),
            100,
            "a surplus pays nothing"
        );
    }

    /// A receipt that does not come within `receipt_wait_secs` stops counting (a
    /// handset that is off must not stop the operator's sending).
    #[test]
    fn an_awaited_receipt_expires() {
        let awaited = AwaitedReceipts::new(10, Duration::ZERO);
        assert_eq!(awaited.reserve_now("mobile", 10), 10);
        let mut claims = awaited.claims("mobile", 10);
        for _ in 0..10 {
            claims.settle(1);
        }
        assert_eq!(awaited.reserve_now("mobile", 10), 10);
    }

    /// `max_awaited_receipts = 0` turns the bound off.
    #[tokio::test]
    async fn zero_means_no_bound() {
        let awaited = AwaitedReceipts::new(0, Duration::from_secs(60));
        let mut claims = awaited.claims("mobile", 1_000_000);
        claims.settle(1_000_000);
        assert_eq!(awaited.reserve("mobile", 5000).await, 5000);
    }

    /// A bind waiting for room is woken by receipts, not only by the recheck.
    #[tokio::test]
    async fn receipts_wake_a_waiting_bind() {
        let mut awaited = AwaitedReceipts::new(5, Duration::from_secs(3600));
        awaited.recheck = Duration::from_secs(3600);
        let awaited = std::sync::Arc::new(awaited);
        assert_eq!(awaited.reserve_now("mobile", 5), 5);
        let mut claims = awaited.claims("mobile", 5);
        for _ in 0..5 {
            claims.settle(1);
        }
        let waiter = awaited.clone();
        let task = tokio::spawn(async move { waiter.reserve("mobile", 5).await });
        // Paid until the waiter is woken (it may begin listening after a payment).
        let woken = tokio::time::timeout(Duration::from_secs(30), async {
            let mut task = task;
            loop {
                awaited.pay("mobile", 1);
                if let Ok(room) = tokio::time::timeout(Duration::from_millis(20), &mut task).await {
                    return room.unwrap();
                }
            }
        })
        .await
        .expect("a waiting bind is woken by receipts");
        // 0: it was waiting and the receipts woke it; more: it looked after one.
        assert!(woken <= 5);
    }
}
