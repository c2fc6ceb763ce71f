//! One operator bind, whatever its protocol: keeps a session up over the
//! protocol-neutral [`tongdao_link::Session`] (reconnecting with the back-off of
//! `tongdao_link::reconnect`), claims queued MTs for its operator, segments them,
//! fills their operator fee fields ([`super::fees`]), submits them within the window
//! (one recipient's MTs one after the other, in queue order) and within the
//! receipts the operator still owes (`super::flow`), stores the outcomes under the
//! unknown-outcome rule, and stores receipts and MOs
//! before acknowledging them. Only [`run_bind`] knows which protocol an operator
//! speaks.
//!
//! On shutdown a bind claims nothing more, writes no new submit, waits up to
//! `[relay] shutdown_grace_ms` for the responses of those already written, records
//! every outcome (claimed MTs it did not send go back to the queue unmarked), unbinds
//! and ends.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::collections::HashMap;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tongdao_link::encode::{self, Concat};
use tongdao_link::{
    Alphabet, Connect, Inbound, LinkState, LinkStatus, Receipt, Session, StatusClass, SubmitError,
    SubmitRequest, run_with_reconnect,
};
use tongdao_smpp::ClientConfig;

use super::fees::{self, FeeContext};
use super::inbound;
use super::outbox::{self, Claimed, Failure, SubmitResult};
use super::settings::{ConcatMode, OperatorConfig, Protocol, ReceiptIds};
use super::{BindView, RelayShared};
use crate::store::Store;

/// The protocols this binary can speak to an operator (issue 16): SMPP 3.4
/// (`tongdao-smpp`), CMPP 3.0 and 2.0 (`tongdao-cmpp`), SGIP 1.2 (`tongdao-sgip`).
pub const SUPPORTED: &[Protocol] = &[
    Protocol::Smpp,
    Protocol::Cmpp3,
    Protocol::Cmpp2,
    Protocol::Sgip12,
];

/// Most outcomes (in batches of `[relay] batch`) that may wait in memory for the
/// writer before the binds of this process claim again.
const UNSTORED_BATCHES: u64 = 4;
/// How long a bind waits for the writer at a time before it looks again.
const UNSTORED_WAIT: Duration = Duration::from_millis(200);

/// How long an idle worker waits before looking at the queue again (a new MT
/// wakes it at once through `RelayShared::wake`).
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Run one bind of `operator` until the relay stops, over its protocol.
///
/// An SGIP operator's bind also runs the SP listener of `[operators.sgip] listen`
/// for as long as the bind runs: the SMG connects back to it with its Deliver
/// (MO) and Report (receipt) commands, which reach the same inbound path as the
/// other protocols' (issue 16 item 2). A listener that cannot be bound stops the
/// bind with the reason in its link status.
pub(super) async fn run_bind(
    shared: Arc<RelayShared>,
    operator: OperatorConfig,
    view: Arc<BindView>,
    status: watch::Sender<LinkStatus>,
) {
    let window = usize::try_from(operator.window).unwrap_or(1).max(1);
    match operator.protocol {
        Protocol::Smpp => {
            let mut config =
                ClientConfig::new(&operator.address, &operator.system_id, &operator.password);
            config.system_type = operator.system_type.clone();
            config.window = window;
            config.tps = operator.tps;
            run_over(shared, operator, view, status, config).await;
        }
        Protocol::Cmpp3 | Protocol::Cmpp2 => {
            let version = if operator.protocol == Protocol::Cmpp3 {
                tongdao_cmpp::Version::V30
            } else {
                tongdao_cmpp::Version::V20
            };
            let mut config = tongdao_cmpp::ClientConfig::new(
                &operator.address,
                &operator.system_id,
                &operator.password,
                version,
            );
            config.window = window;
            config.tps = operator.tps;
            if let Some(secs) = operator
                .cmpp
                .as_ref()
                .map(|c| c.active_test_secs)
                .filter(|s| *s > 0)
            {
                config.active_test_interval = Duration::from_secs(secs);
            }
            run_over(shared, operator, view, status, config).await;
        }
        Protocol::Sgip12 => {
            let settings = operator.sgip.clone().unwrap_or_default();
            let listener = match settings.listen.parse::<std::net::SocketAddr>() {
                Ok(listen) => {
                    let mut config = tongdao_sgip::ServerConfig::new(
                        listen,
                        &settings.smg_login,
                        &settings.smg_password,
                    );
                    config.login_timeout = Duration::from_secs(settings.login_timeout_secs);
                    config.max_pending_logins = settings.max_pending_logins.max(1);
                    tongdao_sgip::Server::start(config)
                        .await
                        .map_err(|e| format!("SGIP listener on {listen}: {e}"))
                }
                Err(e) => Err(format!(
                    "[operators.sgip] listen `{}` is not host:port: {e}",
                    settings.listen
                )),
            };
            // Until a session is up, the listener answers the SMG "busy" (Result 11)
            // and it sends again: nothing reaches this first receiver.
            let server = match listener {
                Ok((server, _before_first_session)) => server,
                Err(reason) => return not_started(&operator, &status, reason),
            };
            tracing::info!(operator = %operator.name, listen = %server.local_addr(), "SGIP listener up");
            let mut client = tongdao_sgip::ClientConfig::new(
                &operator.address,
                &operator.system_id,
                &operator.password,
                settings.node_id,
                &settings.corp_id,
            );
            client.service_type = settings.service_type.clone();
            client.window = window;
            client.tps = operator.tps;
            client.incarnation = sgip_incarnation(&shared.store, &operator.name).await;
            let config = tongdao_sgip::Sgip::new(client, &server);
            run_over(shared, operator, view, status, config).await;
            server.shutdown();
        }
    }
}

/// The SGIP incarnation of this bind's start (see `tongdao_sgip::ClientConfig::
/// incarnation`): the next value of a counter in the store, so a process that comes
/// back within the same second, or another replica with the same node id, mints
/// other sequence numbers. Found by the fault suite: after a `kill -9` the restarted
/// process minted the numbers the dead one had just used, and the SMG's Reports for
/// the old Submits matched the new MTs (28 of 3,000 left without a receipt, others
/// given a receipt that was not theirs). If the store cannot answer, a random one
/// (a collision is then 1 in 256, and only within the same second).
async fn sgip_incarnation(store: &Store, operator: &str) -> u8 {
    match store.next_in_counter("relay.sgip_incarnation").await {
        Ok(n) => u8::try_from(n.rem_euclid(256)).unwrap_or(0),
        Err(e) => {
            tracing::warn!(%operator, error = %e, "cannot take an SGIP incarnation from the store; a random one");
            rand::random::<u8>()
        }
    }
}

/// A bind that cannot start: logged and shown in its link status, never a silent
/// idle bind.
fn not_started(operator: &OperatorConfig, status: &watch::Sender<LinkStatus>, reason: String) {
    tracing::error!(operator = %operator.name, %reason, "operator bind not started");
    status.send_modify(|s| {
        s.state = LinkState::Stopped;
        s.last_error = Some(reason);
    });
}

/// [`run_bind`] over one protocol's [`Connect`].
async fn run_over<C: Connect>(
    shared: Arc<RelayShared>,
    operator: OperatorConfig,
    view: Arc<BindView>,
    status: watch::Sender<LinkStatus>,
    config: C,
) {
    let backoff = operator.backoff();
    let protocol = config.protocol();
    // Connecting or backing off ends at once on shutdown; a bound session drains first.
    let mut stop = shared.stop.subscribe();
    let stopped = async move {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    run_with_reconnect(config, backoff, status, stopped, |client, events| {
        let shared = shared.clone();
        let operator = operator.clone();
        let view = view.clone();
        async move {
            let session = shared.open_session(&view, &client);
            tracing::info!(operator = %operator.name, protocol, bind = view.bind, %session, "bind up");
            let inbound = tokio::spawn(handle_inbound(
                shared.clone(),
                operator.clone(),
                session.clone(),
                events,
            ));
            send_loop(&shared, &operator, &client, &view).await;
            // Every submit is recorded; receipts and MOs still flow until the unbind.
            client.close_within(shared.relay.shutdown_grace()).await;
            let _ = inbound.await;
            shared.close_session(&session);
            if shared.stopping() {
                tracing::info!(operator = %operator.name, protocol, bind = view.bind, "bind closed for shutdown");
                ControlFlow::Break(())
            } else {
                tracing::warn!(operator = %operator.name, protocol, bind = view.bind, "bind down; reconnecting");
                ControlFlow::Continue(())
            }
        }
    })
    .await;
}

/// Claim, submit and hand over outcomes as a pipeline: the next claim is taken while
/// the window still drains the last one (when fewer than half a batch is left), and
/// each outcome goes to the relay's recorder as its response arrives (stored in
/// group commits, see [`Outcomes`]). Ends when the relay stops (nothing new written,
/// answers awaited for the shutdown grace) or the link closes, once every outcome of
/// this bind is stored.
async fn send_loop<S: Session>(
    shared: &Arc<RelayShared>,
    operator: &OperatorConfig,
    client: &S,
    view: &BindView,
) {
    let lease = Duration::from_secs(shared.relay.lease_secs);
    let batch = usize::try_from(shared.relay.batch).unwrap_or(1).max(1);
    let refill_below = (batch / 2).max(1);
    let unstored_cap = u64::try_from(batch)
        .unwrap_or(u64::MAX)
        .saturating_mul(UNSTORED_BATCHES);
    let mut stop = shared.stop.subscribe();
    let mut submits: JoinSet<()> = JoinSet::new();
    let mut order = RecipientOrder::default();
    // The queue may hold more for this operator (false after a short claim, until a
    // wake-up or the idle poll).
    let mut more = true;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if shared.stopping() && deadline.is_none() {
            client.stop_submitting();
            deadline = Some(tokio::time::Instant::now() + shared.relay.shutdown_grace());
        }
        let draining = shared.stopping() || client.is_closed();
        if draining && submits.is_empty() {
            break;
        }
        if !draining && more && submits.len() < refill_below {
            // Back-pressure: outcomes wait in memory for the writer; claim no more
            // while more than a few batches of them are not yet stored, so memory
            // stays bounded and a crash leaves few submits of unknown outcome.
            let arrived = shared.outcomes.arrived();
            if arrived > unstored_cap
                && !shared
                    .outcomes
                    .wait_recorded(arrived - unstored_cap, UNSTORED_WAIT)
                    .await
            {
                continue;
            }
            // Flow control: within the receipts this operator still owes, so MOs
            // never queue at the SMSC behind a push (`super::flow`).
            let wanted = u64::try_from(batch - submits.len()).unwrap_or(u64::MAX);
            let room = shared.awaited.reserve(&operator.name, wanted).await;
            if room == 0 {
                continue;
            }
            view.claims.fetch_add(1, Ordering::Relaxed);
            let want = usize::try_from(room).unwrap_or(batch);
            let claimed = {
                let _turn = shared.write_turn().await;
                outbox::claim(
                    &shared.store,
                    &operator.name,
                    u32::try_from(want).unwrap_or(u32::MAX),
                    lease,
                )
                .await
            };
            match claimed {
                Ok(claimed) => {
                    more = claimed.len() == want;
                    shared
                        .awaited
                        .release(&operator.name, count(want - claimed.len()));
                    shared.hold(claimed.iter().map(|m| m.id));
                    if shared.stopping() {
                        // Claimed just as the shutdown began: hand the rows back unsent.
                        let _turn = shared.write_turn().await;
                        if let Err(e) = outbox::release_unsent(
                            &shared.store,
                            &claimed,
                            "released unsent at shutdown",
                        )
                        .await
                        {
                            tracing::error!(operator = %operator.name, error = %e, "cannot release claimed MTs");
                        }
                        shared.let_go(claimed.iter().map(|m| m.id));
                        shared.awaited.release(&operator.name, count(claimed.len()));
                        continue;
                    }
                    let mut contexts = if operator.protocol.carries_fees() {
                        match fees::contexts(&shared.store, &claimed).await {
                            Ok(c) => c,
                            Err(e) => {
                                // Not sent without its bill: back to the queue, unmarked.
                                tracing::error!(operator = %operator.name, error = %e, "cannot read the fee fields; releasing the claim");
                                let _turn = shared.write_turn().await;
                                let _ = outbox::release_unsent(
                                    &shared.store,
                                    &claimed,
                                    "fee fields unavailable",
                                )
                                .await;
                                shared.let_go(claimed.iter().map(|m| m.id));
                                shared.awaited.release(&operator.name, count(claimed.len()));
                                more = false;
                                continue;
                            }
                        }
                    } else {
                        HashMap::new()
                    };
                    for chain in per_recipient(claimed) {
                        let turn = order.next(&chain[0].recipient);
                        let chain = chain
                            .into_iter()
                            .map(|m| {
                                let context = contexts.remove(&m.id).unwrap_or_default();
                                (m, context)
                            })
                            .collect();
                        spawn_submit(&mut submits, shared, operator, client, chain, turn);
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(operator = %operator.name, error = %e, "cannot claim from the outbox");
                    shared.awaited.release(&operator.name, room);
                    more = false;
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            next = submits.join_next(), if !submits.is_empty() => {
                // A panicked submit task leaves its row leased: the sweep resends it
                // under the unknown-outcome rule.
                if let Some(Err(e)) = next {
                    tracing::error!(error = %e, "submit task failed");
                }
            }
            () = shared.wake.notified(), if !more && !draining => more = true,
            () = tokio::time::sleep(IDLE_POLL), if !more && !draining => more = true,
            () = client.closed(), if !draining => {}
            _ = stop.changed(), if deadline.is_none() => {}
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            }, if deadline.is_some() && !submits.is_empty() => {
                tracing::warn!(operator = %operator.name, "shutdown grace over with submits unanswered; closing the link");
                client.close_within(Duration::ZERO).await;
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
        }
    }
    // Every outcome of this bind is handed over; return once it is stored.
    let upto = shared.outcomes.arrived();
    if !shared
        .outcomes
        .wait_recorded(upto, RECORD_WAIT_AT_END)
        .await
    {
        tracing::error!(operator = %operator.name, "submit outcomes not stored in time; their leases will run out");
    }
}

/// How long a bind that stops waits for its last outcomes to be stored.
const RECORD_WAIT_AT_END: Duration = Duration::from_secs(30);

/// The claimed MTs split into one chain per recipient, each in queue order (the
/// claim returns them sorted by id). Chains are submitted concurrently, the MTs of
/// one chain one after the other, so a user reads the platform's confirmation
/// before the module's farewell, a prompt before its answer.
fn per_recipient(claimed: Vec<Claimed>) -> Vec<Vec<Claimed>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut chains: Vec<Vec<Claimed>> = Vec::new();
    for message in claimed {
        match index.get(&message.recipient) {
            Some(&i) => chains[i].push(message),
            None => {
                index.insert(message.recipient.clone(), chains.len());
                chains.push(vec![message]);
            }
        }
    }
    chains
}

/// Keeps one recipient's chains of one bind in claim order across claims: a chain
/// starts once the recipient's previous chain has finished.
#[derive(Default)]
struct RecipientOrder {
    /// The last chain of each recipient still (possibly) in flight: it closes its
    /// sender when done.
    last: HashMap<String, oneshot::Receiver<()>>,
}

/// A chain's place in its recipient's order: wait for `after`, drop `done` at the end.
struct Turn {
    after: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
}

impl RecipientOrder {
    /// Recipients remembered before the finished chains are forgotten.
    const PRUNE_ABOVE: usize = 4096;

    fn next(&mut self, recipient: &str) -> Turn {
        if self.last.len() > Self::PRUNE_ABOVE {
            self.last
                .retain(|_, rx| matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        }
        let (done, rx) = oneshot::channel();
        let after = self.last.insert(recipient.to_string(), rx);
        Turn { after, done }
    }
}

/// Submit one recipient's claimed MTs in their own task, one after the other (after
/// the recipient's previous chain), and hand each outcome to the recorder as it
/// arrives.
fn spawn_submit<S: Session>(
    submits: &mut JoinSet<()>,
    shared: &Arc<RelayShared>,
    operator: &OperatorConfig,
    client: &S,
    chain: Vec<(Claimed, FeeContext)>,
    turn: Turn,
) {
    let client = client.clone();
    let shared = shared.clone();
    let carries_fees = operator.protocol.carries_fees();
    let service_id = operator.default_service_id().to_string();
    let default_source = operator.source_addr.clone();
    let concat = operator.concat;
    let alphabet = operator.protocol.alphabet();
    let operator_name = operator.name.clone();
    let has_records = operator.protocol.has_fee_records();
    let reports_records = operator.protocol.reports_fee_records();
    let protocol = operator.protocol.as_str();
    // At debug level: a span per chain costs on the hot path when enabled.
    let span = tracing::debug_span!("submit", first = chain.first().map(|(m, _)| m.id), operator = %operator_name);
    submits.spawn(tracing::Instrument::instrument(
        async move {
            // This chain's MTs, reserved at the claim: each settled as it is answered.
            let mut claims = shared.awaited.claims(&operator_name, count(chain.len()));
            if let Some(previous) = turn.after {
                // Ok or closed: either way the previous chain has finished.
                let _ = previous.await;
            }
            for (message, context) in chain {
                // The fee fields, for protocols that carry them (None: SMPP).
                let fee = carries_fees.then(|| (context, service_id.clone()));
                // A service's MTs come from its own number, so a bare `TD` reaches it.
                let source = message
                    .sender
                    .clone()
                    .unwrap_or_else(|| default_source.clone());
                // A 包月 billing record goes only where the protocol has records
                // (never as an MT the user would see), and is final on acceptance
                // where no report follows.
                let record = fees::is_fee_record(&message);
                let result = if record && !has_records {
                    SubmitResult::Failed {
                        accepted: Vec::new(),
                        failure: Failure::Permanent(format!(
                            "a billing record cannot be sent over {protocol}: the protocol has none"
                        )),
                    }
                } else if shared.stopping() || client.is_closed() {
                    // A chain's later MTs are new submits: none once the bind stops.
                    SubmitResult::Failed {
                        accepted: Vec::new(),
                        failure: Failure::NotSent("the bind stopped before this MT's turn".into()),
                    }
                } else {
                    let sending = Sending {
                        operator: &operator_name,
                        source: &source,
                        concat,
                        alphabet,
                        fee: fee.as_ref(),
                    };
                    match submit_message(&shared, &client, sending, &message).await {
                        SubmitResult::Accepted(accepted) if record && !reports_records => {
                            SubmitResult::Recorded(accepted)
                        }
                        other => other,
                    }
                };
                // Each accepted segment has a receipt to come (a record that gets
                // no report has none).
                let awaited: &[(i64, String)] = match &result {
                    SubmitResult::Accepted(accepted) | SubmitResult::Failed { accepted, .. } => {
                        accepted
                    }
                    SubmitResult::Recorded(_) => &[],
                };
                claims.settle(awaited.iter().map(|(_, id)| id.as_str()));
                shared.outcomes.push(message, result);
            }
            drop(turn.done);
        },
        span,
    ));
}

/// The relay's writer queue: submit outcomes, pushed by every bind's submit
/// tasks as responses arrive, and receipt bursts, pushed by every session's inbound
/// task before it acknowledges them. One writer task stores whatever has gathered in
/// one transaction (group commit): the outcomes first, then the receipts, so a
/// receipt always finds the operator id of a submit answered before it arrived.
/// `recorded` tells how many of the outcomes pushed so far are stored (or failed to
/// be: then their leases run out and the sweep resends them under the
/// unknown-outcome rule), so a stopping bind can wait for its own.
pub(super) struct Outcomes {
    queue: std::sync::Mutex<OutcomeQueue>,
    ready: tokio::sync::Notify,
    recorded: watch::Sender<u64>,
}

#[derive(Default)]
struct OutcomeQueue {
    items: Vec<(Claimed, SubmitResult)>,
    /// Outcomes pushed since start.
    arrived: u64,
    bursts: Vec<ReceiptBurst>,
}

/// Receipts of one session to store; `stored` answers whether they were.
struct ReceiptBurst {
    operator: String,
    receipt_ids: ReceiptIds,
    receipts: Vec<Receipt>,
    stored: tokio::sync::oneshot::Sender<bool>,
}

impl Outcomes {
    pub(super) fn new() -> Self {
        Self {
            queue: std::sync::Mutex::new(OutcomeQueue::default()),
            ready: tokio::sync::Notify::new(),
            recorded: watch::Sender::new(0),
        }
    }

    fn push(&self, message: Claimed, result: SubmitResult) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.items.push((message, result));
            queue.arrived += 1;
        }
        self.ready.notify_one();
    }

    /// Hand receipts to the writer; true once they are stored.
    async fn store_receipts(&self, operator: &OperatorConfig, receipts: Vec<Receipt>) -> bool {
        let (stored, answer) = tokio::sync::oneshot::channel();
        if let Ok(mut queue) = self.queue.lock() {
            queue.bursts.push(ReceiptBurst {
                operator: operator.name.clone(),
                receipt_ids: operator.receipt_format(),
                receipts,
                stored,
            });
        }
        self.ready.notify_one();
        answer.await.unwrap_or(false)
    }

    /// Outcomes pushed so far.
    fn arrived(&self) -> u64 {
        self.queue.lock().map(|q| q.arrived).unwrap_or(0)
    }

    /// Everything gathered, and the count it brings `recorded` to once stored.
    fn take(&self) -> (Vec<(Claimed, SubmitResult)>, Vec<ReceiptBurst>, u64) {
        match self.queue.lock() {
            Ok(mut queue) => (
                std::mem::take(&mut queue.items),
                std::mem::take(&mut queue.bursts),
                queue.arrived,
            ),
            Err(_) => (Vec::new(), Vec::new(), 0),
        }
    }

    /// Wait (at most `bound`) until the first `upto` outcomes are stored.
    async fn wait_recorded(&self, upto: u64, bound: Duration) -> bool {
        let mut recorded = self.recorded.subscribe();
        tokio::time::timeout(bound, recorded.wait_for(|r| *r >= upto))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The writer task (see [`Outcomes`]); runs until the relay ends it. When the one
/// transaction fails, the outcomes and each receipt burst are tried again apart, so
/// one bad burst cannot hold back the rest.
pub(super) async fn record_outcomes(shared: Arc<RelayShared>) {
    loop {
        shared.outcomes.ready.notified().await;
        loop {
            let (items, bursts, upto) = shared.outcomes.take();
            if items.is_empty() && bursts.is_empty() {
                break;
            }
            let _turn = shared.write_turn().await;
            match store_together(&shared, &items, &bursts).await {
                Ok(()) => {
                    for burst in bursts {
                        let _ = burst.stored.send(true);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "storing outcomes and receipts together failed; trying each apart");
                    if let Err(e) =
                        outbox::record_submits(&shared.store, &shared.relay, &items).await
                    {
                        // Not stored: the leases run out and the sweep re-queues these
                        // rows under the unknown-outcome rule, so nothing is lost.
                        tracing::error!(error = %e, count = items.len(), "cannot store submit outcomes");
                    }
                    for burst in bursts {
                        let stored = inbound::receipts(
                            &shared.store,
                            &burst.operator,
                            burst.receipt_ids,
                            &burst.receipts,
                        )
                        .await;
                        if let Err(e) = &stored {
                            tracing::error!(operator = %burst.operator, error = %e, "cannot store receipts; the SMSC will resend them");
                        }
                        let _ = burst.stored.send(stored.is_ok());
                    }
                }
            }
            // Stored, or not storable now: either way the leases run as claimed
            // from here (the sweep recovers rows whose outcome was lost).
            shared.let_go(items.iter().map(|(m, _)| m.id));
            shared.outcomes.recorded.send_replace(upto);
        }
    }
}

/// Outcomes, then every receipt burst (merged per operator), in one transaction.
async fn store_together(
    shared: &RelayShared,
    items: &[(Claimed, SubmitResult)],
    bursts: &[ReceiptBurst],
) -> Result<(), outbox::OutboxError> {
    let now = crate::store::now_ms();
    let mut tx = shared.store.begin_write().await?;
    outbox::record_submits_in(&mut tx, &shared.relay, items, now).await?;
    let mut operators: Vec<(&str, ReceiptIds)> = bursts
        .iter()
        .map(|b| (b.operator.as_str(), b.receipt_ids))
        .collect();
    operators.sort_unstable_by_key(|(name, _)| *name);
    operators.dedup_by_key(|(name, _)| *name);
    for (operator, receipt_ids) in operators {
        let receipts: Vec<Receipt> = bursts
            .iter()
            .filter(|b| b.operator == operator)
            .flat_map(|b| b.receipts.iter().cloned())
            .collect();
        inbound::receipts::receipts_in(&mut tx, operator, receipt_ids, &receipts, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// How one MT is sent: its operator, source address, concatenation, the protocol's
/// alphabet and, where the protocol carries them, its fee context with the operator's
/// default `Service_Id`.
struct Sending<'a> {
    operator: &'a str,
    source: &'a str,
    concat: ConcatMode,
    alphabet: Alphabet,
    fee: Option<&'a (FeeContext, String)>,
}

/// Submit the segments of one MT not yet accepted, in order; stop at the first failure.
///
/// `fee` is the MT's fee context and the operator's default `Service_Id` when the
/// protocol carries fee fields; a fee that cannot be written fails the MT
/// permanently before anything is sent.
async fn submit_message<S: Session>(
    shared: &RelayShared,
    client: &S,
    sending: Sending<'_>,
    message: &Claimed,
) -> SubmitResult {
    let Sending {
        operator,
        source,
        concat,
        alphabet,
        fee,
    } = sending;
    // The same reference on every attempt, so a resent segment joins its siblings.
    let concat = match concat {
        ConcatMode::Udh => Concat::Udh8(u8::try_from(message.id.rem_euclid(256)).unwrap_or(0)),
        ConcatMode::Sar => Concat::Sar(u16::try_from(message.id.rem_euclid(65_536)).unwrap_or(0)),
    };
    // The protocol's alphabet, as the outbox counted the segments (`Routes::alphabet`).
    let segments = match encode::encode_in(&message.text, alphabet, concat) {
        Ok(s) => s,
        Err(e) => {
            return SubmitResult::Failed {
                accepted: Vec::new(),
                failure: Failure::Permanent(e.to_string()),
            };
        }
    };
    let already = if message.attempts > 1 {
        match outbox::accepted_segments(&shared.store, message.id).await {
            Ok(a) => a,
            Err(e) => {
                return SubmitResult::Failed {
                    accepted: Vec::new(),
                    failure: Failure::Temporary(format!("outbox unavailable: {e}")),
                };
            }
        }
    } else {
        Vec::new()
    };
    let mut accepted = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let seq = i64::try_from(index + 1).unwrap_or(i64::MAX);
        if already.contains(&seq) {
            continue;
        }
        let fee = match fee {
            Some((context, default_service_id)) => {
                match fees::fee_for(message, context, default_service_id, seq) {
                    Ok(fee) => Some(fee),
                    Err(e) => {
                        return SubmitResult::Failed {
                            accepted,
                            failure: Failure::Permanent(e.to_string()),
                        };
                    }
                }
            }
            None => None,
        };
        let request = SubmitRequest::new(source, &message.recipient, segment).with_fee(fee);
        // Window in use, submit latency and throttling (issue 15 item 1).
        let timer = crate::telemetry::SubmitTimer::start(operator);
        let submitted = client.submit(&request).await;
        match &submitted {
            Ok(outcome) => timer.throttled(u64::from(outcome.attempts.saturating_sub(1))),
            Err(SubmitError::Rejected {
                class: StatusClass::Throttled,
                ..
            }) => timer.throttled(1),
            Err(_) => {}
        }
        drop(timer);
        match submitted {
            Ok(outcome) => accepted.push((seq, outcome.message_id)),
            Err(error) => {
                return SubmitResult::Failed {
                    accepted,
                    failure: classify(&error),
                };
            }
        }
    }
    SubmitResult::Accepted(accepted)
}

/// A count as the flow ledger's `u64`.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Map a submit failure (any protocol) onto the outbox's retry rules.
fn classify(error: &SubmitError) -> Failure {
    let reason = error.to_string();
    if error.outcome_unknown() {
        return Failure::Unknown(reason);
    }
    if matches!(error, SubmitError::NotConnected) {
        return Failure::NotSent(reason);
    }
    match error.class() {
        StatusClass::Permanent => Failure::Permanent(reason),
        StatusClass::UnknownOutcome => Failure::Unknown(reason),
        StatusClass::Ok | StatusClass::Throttled | StatusClass::Temporary => {
            Failure::Temporary(reason)
        }
    }
}

/// Store every receipt and MO, then acknowledge it; a failed store is answered
/// with a temporary error so the SMSC delivers it again. Receipts that arrive
/// together are stored in one transaction.
async fn handle_inbound(
    shared: Arc<RelayShared>,
    operator: OperatorConfig,
    session: String,
    mut events: tokio::sync::mpsc::Receiver<Inbound>,
) {
    const BURST: usize = 512;
    let name = operator.name.as_str();
    let mut closed = false;
    while !closed {
        let Some(first) = events.recv().await else {
            break;
        };
        let mut burst = vec![first];
        while burst.len() < BURST {
            match events.try_recv() {
                Ok(event) => burst.push(event),
                Err(_) => break,
            }
        }
        let mut receipts = Vec::new();
        let mut acks = Vec::new();
        for event in burst {
            match event {
                Inbound::Receipt(receipt, ack) => {
                    receipts.push(receipt);
                    acks.push(ack);
                }
                Inbound::Mo(pdu, ack) => handle_mo(&shared, (name, &session), &pdu, ack).await,
                Inbound::Closed(reason) => {
                    tracing::warn!(operator = %name, %reason, "operator link closed");
                    closed = true;
                }
            }
        }
        if receipts.is_empty() {
            continue;
        }
        // Stored by the relay's writer, after the outcomes of the submits these
        // receipts answer (their responses came first).
        // Not stored: dropping the acks answers "temporary error", the SMSC resends.
        let ids: Vec<String> = receipts.iter().map(|r| r.message_id.clone()).collect();
        if shared.outcomes.store_receipts(&operator, receipts).await {
            acks.into_iter().for_each(tongdao_link::Ack::ack);
            shared.awaited.pay(name, operator.receipt_format(), &ids);
        }
    }
}

async fn handle_mo(
    shared: &RelayShared,
    (operator, session): (&str, &str),
    pdu: &tongdao_link::MoPdu,
    ack: tongdao_link::Ack,
) {
    let alive = |name: &str| shared.session_alive(name);
    match inbound::mo::mo(
        &shared.store,
        &shared.relay,
        (operator, session),
        &alive,
        pdu,
    )
    .await
    {
        Ok(intake) => {
            ack.ack();
            if intake.duplicate {
                tracing::info!(%operator, source = %pdu.source_addr, "MO delivered again; answered, not stored again");
            }
            for record in intake.to_route() {
                tracing::info!(%operator, mo = record.id, "MO received");
                let _ = shared.mo_events.send(record.clone());
            }
        }
        Err(e) => {
            tracing::error!(%operator, error = %e, "cannot store an MO; the SMSC will resend it")
        }
    }
}
