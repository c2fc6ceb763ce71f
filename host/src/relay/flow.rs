//! Flow control (issue 18 item 2, R-1.3, R-2.5): a push never delays MOs.
//!
//! An SMSC sends receipts and MOs down the same binds, in one queue per ESME, as
//! each falls due (SMPP 3.4 §4.6: both are `deliver_sm`; CMPP's `CMPP_DELIVER` and
//! SGIP's `Deliver`/`Report` likewise share their links). When the relay submits
//! faster than it takes receipts in, the receipts owed to it pile up at the SMSC and
//! every MO, a `TD` included, waits behind them: minutes at a million MTs (the load
//! bench found MO p50 462 s before this rule).
//!
//! So each operator's binds keep their submits within their receipt intake. Every
//! segment the SMSC accepts is **awaited**, by its operator message id, until its
//! receipt arrives. The MTs a bind has claimed and not yet had answered count too,
//! one each, and together the two stay within `[relay] max_awaited_receipts` per
//! operator: a bind claims only the room left (reserved at once, so two binds never
//! claim the same room). An MO then waits at the SMSC behind at most that many
//! receipts (a long MT's extra segments aside), whatever the size of the push.
//!
//! A receipt that never comes (a handset that is off answers hours later, an SMSC
//! that loses one) must not hold room for ever, and a late one is not in the SMSC's
//! queue ahead of anything. Receipts come roughly in the order of their submits, so
//! an awaited segment accepted more than `[relay] receipt_wait_secs` before the
//! newest segment whose receipt has arrived is given up; so is every segment older
//! than that when no receipt at all has come for that long (an SMSC that sends
//! none). A slow intake therefore never loosens the bound: what arrives, however
//! late, moves the reference forward only as far as the queue has drained.
//!
//! The ledger is per process: receipts reach the process whose sessions the SMSC
//! chooses; a receipt for another process's segment pays nothing here, and that
//! process gives its segment up as newer receipts arrive.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::inbound::receipts::submit_id_for;
use super::settings::ReceiptIds;

/// How long a bind without room waits for receipts before it looks again (the
/// oldest awaited segments may have been given up meanwhile).
const RECHECK: Duration = Duration::from_millis(250);

/// The receipts every operator owes this process (see the module docs).
#[derive(Debug)]
pub(super) struct AwaitedReceipts {
    /// Most MTs claimed plus segments awaited per operator before its binds claim no
    /// more; 0 = no bound.
    cap: u64,
    /// How far behind the newest receipt's segment an awaited one is given up, and
    /// how long without any receipt before the old ones are.
    wait: Duration,
    ledgers: Mutex<HashMap<String, Ledger>>,
    /// How long a bind without room waits for receipts before it looks again.
    recheck: Duration,
    /// Woken when receipts arrive or claims are given back: a bind waiting for room
    /// looks again.
    paid: Notify,
}

/// One operator's claimed MTs not yet answered, and its awaited segments.
#[derive(Debug, Default)]
struct Ledger {
    /// MTs claimed within the bound whose submit outcome is not in yet.
    reserved: u64,
    /// Awaited segments by canonical operator message id: their ticket.
    by_id: HashMap<String, u64>,
    /// The same, oldest first: ticket → (accepted at, id).
    by_age: BTreeMap<u64, (Instant, String)>,
    next_ticket: u64,
    /// When the newest segment whose receipt arrived was accepted.
    progress: Option<Instant>,
    /// When the last receipt that paid something arrived (or the first segment was
    /// awaited).
    last_receipt: Option<Instant>,
}

impl Ledger {
    fn awaited(&self) -> u64 {
        u64::try_from(self.by_id.len()).unwrap_or(u64::MAX)
    }

    fn used(&self) -> u64 {
        self.awaited().saturating_add(self.reserved)
    }

    fn owe(&mut self, now: Instant, id: String) {
        if self.by_id.contains_key(&id) {
            return;
        }
        if self.by_id.is_empty() {
            // Waiting for receipts starts now, not at the last receipt of long ago.
            self.last_receipt = Some(now);
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.by_id.insert(id.clone(), ticket);
        self.by_age.insert(ticket, (now, id));
    }

    /// Pay the segment `id` if it is awaited; true if it was.
    fn pay(&mut self, now: Instant, id: &str) -> bool {
        let Some(ticket) = self.by_id.remove(id) else {
            return false;
        };
        if let Some((accepted, _)) = self.by_age.remove(&ticket) {
            self.progress = Some(self.progress.map_or(accepted, |p| p.max(accepted)));
        }
        self.last_receipt = Some(now);
        true
    }

    /// Give up the segments whose receipt is not coming (see the module docs).
    fn give_up(&mut self, now: Instant, wait: Duration) {
        let behind_progress = self.progress.and_then(|p| p.checked_sub(wait));
        let silent = self
            .last_receipt
            .is_some_and(|at| now.saturating_duration_since(at) >= wait);
        let behind_silence = silent.then(|| now.checked_sub(wait)).flatten();
        let Some(before) = behind_progress.max(behind_silence) else {
            return;
        };
        while let Some(entry) = self.by_age.first_entry() {
            if entry.get().0 >= before {
                break;
            }
            let (_, id) = entry.remove();
            self.by_id.remove(&id);
        }
    }
}

/// The canonical submit ids a receipt's id may stand for under `format` (every
/// reading while the operator's format is being learned).
fn submit_ids(receipt_id: &str, format: ReceiptIds) -> Vec<String> {
    let formats: &[ReceiptIds] = match format {
        ReceiptIds::Auto => &[
            ReceiptIds::Same,
            ReceiptIds::HexToDecimal,
            ReceiptIds::DecimalToHex,
        ],
        _ => std::slice::from_ref(&format),
    };
    formats
        .iter()
        .filter_map(|f| submit_id_for(receipt_id, *f))
        .collect()
}

impl AwaitedReceipts {
    /// `cap` per operator (0: no bound); receipts given up `wait` behind.
    pub(super) fn new(cap: u64, wait: Duration) -> Self {
        Self {
            cap,
            wait,
            ledgers: Mutex::new(HashMap::new()),
            recheck: RECHECK,
            paid: Notify::new(),
        }
    }

    /// Room to claim up to `want` MTs for `operator`: how many it may claim now,
    /// reserved until each is answered ([`Claims::settle`]) or given back
    /// ([`Self::release`]). Without room, returns 0 once receipts arrive or the
    /// recheck span has passed: look again then.
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
        let Ok(mut ledgers) = self.ledgers.lock() else {
            return want;
        };
        let ledger = ledgers.entry(operator.to_string()).or_default();
        ledger.give_up(Instant::now(), self.wait);
        let granted = self.cap.saturating_sub(ledger.used()).min(want);
        ledger.reserved = ledger.reserved.saturating_add(granted);
        gauge(operator, ledger.awaited());
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

    /// Receipts from `operator` (stored and acknowledged), by the message id each
    /// carries, read under the operator's receipt id `format`. A receipt for no
    /// awaited segment (a duplicate, an intermediate state already paid, another
    /// process's segment) pays nothing.
    pub(super) fn pay(&self, operator: &str, format: ReceiptIds, receipt_ids: &[String]) {
        if self.cap == 0 || receipt_ids.is_empty() {
            return;
        }
        let now = Instant::now();
        if let Ok(mut ledgers) = self.ledgers.lock()
            && let Some(ledger) = ledgers.get_mut(operator)
        {
            for receipt_id in receipt_ids {
                for id in submit_ids(receipt_id, format) {
                    if ledger.pay(now, &id) {
                        break;
                    }
                }
            }
            gauge(operator, ledger.awaited());
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
    /// One MT answered: the operator message ids of the segments accepted, each
    /// with a receipt to come (none: nothing was accepted, or a record that gets no
    /// report).
    pub(super) fn settle<'i>(&mut self, accepted: impl IntoIterator<Item = &'i str>) {
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        let awaited = self.awaited;
        if awaited.cap == 0 {
            return;
        }
        let now = Instant::now();
        let mut any = false;
        if let Ok(mut ledgers) = awaited.ledgers.lock() {
            let ledger = ledgers.entry(self.operator.to_string()).or_default();
            ledger.reserved = ledger.reserved.saturating_sub(1);
            for id in accepted {
                any = true;
                ledger.owe(now, tongdao_link::canonical_message_id(id));
            }
            gauge(self.operator, ledger.awaited());
        }
        if !any {
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

    fn ids(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("{i:08}")).collect()
    }

    /// Claims and awaited segments share one bound per operator; a receipt pays its
    /// own segment (any spelling of its id the operator's format allows), a
    /// duplicate or an unknown id pays nothing; operators are apart.
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
        for id in ids(0..40) {
            claims.settle([id.as_str()]);
        }
        drop(claims); // 30 answered no more: given back
        assert_eq!(awaited.reserve_now("mobile", 1000), 60);
        awaited.release("mobile", 60);
        // Receipts for ten of them (leading zeros dropped, as SMSCs write ids), a
        // duplicate, and an id nobody was given.
        let mut receipts: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        receipts.push("3".into());
        receipts.push("999999".into());
        awaited.pay("mobile", ReceiptIds::Same, &receipts);
        assert_eq!(awaited.reserve_now("mobile", 1000), 70);
        awaited.release("mobile", 70);
        // A hex-to-decimal SMSC: receipt `16` is segment `10`.
        awaited.pay("mobile", ReceiptIds::HexToDecimal, &["16".to_string()]);
        assert_eq!(awaited.reserve_now("mobile", 1000), 71);
    }

    /// A receipt that arrives moves the reference: segments accepted more than the
    /// wait before the newest one paid are given up (their receipts are not in the
    /// SMSC's queue ahead of anything).
    #[test]
    fn segments_far_behind_the_newest_receipt_are_given_up() {
        let wait = Duration::from_secs(10);
        let mut ledger = Ledger::default();
        let start = Instant::now();
        ledger.owe(start, "1".into());
        ledger.owe(start + Duration::from_secs(5), "2".into());
        ledger.owe(start + Duration::from_secs(20), "3".into());
        ledger.owe(start + Duration::from_secs(21), "4".into());
        // Receipts flowing (the last one just now) and far behind the queue: nothing
        // given up, however long ago the segments were accepted.
        let late = start + Duration::from_secs(300);
        assert!(ledger.pay(late, "2"));
        ledger.give_up(late, wait);
        assert_eq!(ledger.awaited(), 3);
        // The receipt of a segment accepted at 21 s: the one at 0 s is 21 s behind.
        assert!(ledger.pay(late, "4"));
        ledger.give_up(late, wait);
        assert_eq!(ledger.awaited(), 1, "{ledger:?}");
        assert!(ledger.by_id.contains_key("3"));
    }

    /// No receipt at all for the wait (an SMSC that sends none): what is older than
    /// the wait is given up, so such an operator is slowed, never stopped.
    #[test]
    fn without_any_receipt_old_segments_are_given_up() {
        let wait = Duration::from_secs(10);
        let mut ledger = Ledger::default();
        let start = Instant::now();
        ledger.owe(start, "1".into());
        ledger.owe(start + Duration::from_secs(8), "2".into());
        ledger.give_up(start + Duration::from_secs(9), wait);
        assert_eq!(ledger.awaited(), 2);
        ledger.give_up(start + Duration::from_secs(12), wait);
        assert_eq!(ledger.awaited(), 1);
        ledger.give_up(start + Duration::from_secs(30), wait);
        assert_eq!(ledger.awaited(), 0);
    }

    /// `max_awaited_receipts = 0` turns the bound off.
    #[tokio::test]
    async fn zero_means_no_bound() {
        let awaited = AwaitedReceipts::new(0, Duration::from_secs(60));
        let mut claims = awaited.claims("mobile", 1);
        claims.settle(["1"]);
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
        for id in ids(0..5) {
            claims.settle([id.as_str()]);
        }
        let waiter = awaited.clone();
        let task = tokio::spawn(async move { waiter.reserve("mobile", 5).await });
        // Paid one by one until the waiter is woken (it may begin listening after a
        // payment).
        let woken = tokio::time::timeout(Duration::from_secs(30), async {
            let mut task = task;
            for i in 0..5 {
                awaited.pay("mobile", ReceiptIds::Same, &[i.to_string()]);
                if let Ok(room) = tokio::time::timeout(Duration::from_millis(20), &mut task).await {
                    return room.unwrap();
                }
            }
            task.await.unwrap()
        })
        .await
        .expect("a waiting bind is woken by receipts");
        // 0: it was waiting and the receipts woke it; more: it looked after one.
        assert!(woken <= 5);
    }
}
