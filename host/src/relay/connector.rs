//! One operator bind: keeps an SMPP transceiver session up (reconnecting with the
//! back-off of `tongdao_smpp::reconnect`), claims queued MTs for its operator, submits
//! them within the window, stores the outcomes, and stores receipts and MOs before
//! acknowledging them.
//!
//! On shutdown a bind claims nothing more, writes no new submit, waits up to
//! `[relay] shutdown_grace_ms` for the responses of those already written, records
//! every outcome (claimed MTs it did not send go back to the queue unmarked), unbinds
//! and ends.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tongdao_smpp::client::{ClientConfig, SubmitError, SubmitRequest};
use tongdao_smpp::encode::{self, Concat};
use tongdao_smpp::{Client, Inbound, LinkStatus, StatusClass, run_with_reconnect};

use super::inbound;
use super::outbox::{self, Claimed, Failure, SubmitResult};
use super::settings::{ConcatMode, OperatorConfig};
use super::{BindView, RelayShared};

/// How long an idle worker waits before looking at the queue again (a new MT
/// wakes it at once through `RelayShared::wake`).
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Run one bind of `operator` until the relay stops.
pub(super) async fn run_bind(
    shared: Arc<RelayShared>,
    operator: OperatorConfig,
    view: Arc<BindView>,
    status: watch::Sender<LinkStatus>,
) {
    let mut config = ClientConfig::new(&operator.address, &operator.system_id, &operator.password);
    config.system_type = operator.system_type.clone();
    config.window = usize::try_from(operator.window).unwrap_or(1).max(1);
    config.tps = operator.tps;
    let backoff = operator.backoff();
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
            tracing::info!(operator = %operator.name, bind = view.bind, %session, "smpp bind up");
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
                tracing::info!(operator = %operator.name, bind = view.bind, "smpp bind closed for shutdown");
                ControlFlow::Break(())
            } else {
                tracing::warn!(operator = %operator.name, bind = view.bind, "smpp bind down; reconnecting");
                ControlFlow::Continue(())
            }
        }
    })
    .await;
}

async fn send_loop(
    shared: &Arc<RelayShared>,
    operator: &OperatorConfig,
    client: &Client,
    view: &BindView,
) {
    let lease = Duration::from_secs(shared.relay.lease_secs);
    let mut stop = shared.stop.subscribe();
    while !client.is_closed() && !shared.stopping() {
        view.claims.fetch_add(1, Ordering::Relaxed);
        let batch = match outbox::claim(&shared.store, &operator.name, shared.relay.batch, lease)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(operator = %operator.name, error = %e, "cannot claim from the outbox");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = client.closed() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        if shared.stopping() {
            // Claimed just as the shutdown began: hand the rows back unsent.
            if let Err(e) =
                outbox::release_unsent(&shared.store, &batch, "released unsent at shutdown").await
            {
                tracing::error!(operator = %operator.name, error = %e, "cannot release claimed MTs");
            }
            break;
        }
        let results = submit_batch(shared, operator, client, batch, &mut stop).await;
        if let Err(e) = outbox::record_submits(&shared.store, &shared.relay, &results).await {
            // Not stored: the leases run out and the sweep re-queues these rows under
            // the unknown-outcome rule, so nothing is lost.
            tracing::error!(operator = %operator.name, error = %e, "cannot store submit outcomes");
        }
    }
}

/// Submit one claimed batch, one task per MT, and collect every outcome. When the
/// relay stops meanwhile, nothing new is written and the answers of what was written
/// are awaited for at most the shutdown grace; the link is then closed, so anything
/// still unanswered ends as an unknown outcome.
async fn submit_batch(
    shared: &Arc<RelayShared>,
    operator: &OperatorConfig,
    client: &Client,
    batch: Vec<Claimed>,
    stop: &mut watch::Receiver<bool>,
) -> Vec<(Claimed, SubmitResult)> {
    let mut submits = JoinSet::new();
    for message in batch {
        let client = client.clone();
        let shared = shared.clone();
        // A service's MTs come from its own number, so a bare `TD` reaches it.
        let source = message
            .sender
            .clone()
            .unwrap_or_else(|| operator.source_addr.clone());
        let concat = operator.concat;
        submits.spawn(async move {
            let result = submit_message(&shared, &client, &source, concat, &message).await;
            (message, result)
        });
    }
    let mut results = Vec::with_capacity(submits.len());
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if deadline.is_none() && shared.stopping() {
            client.stop_submitting();
            deadline = Some(tokio::time::Instant::now() + shared.relay.shutdown_grace());
        }
        let next = tokio::select! {
            next = submits.join_next() => next,
            _ = stop.changed(), if deadline.is_none() => continue,
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::warn!(operator = %operator.name, "shutdown grace over with submits unanswered; closing the link");
                client.close_within(Duration::ZERO).await;
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
                continue;
            }
        };
        match next {
            Some(Ok(r)) => results.push(r),
            // A panicked submit task leaves its row leased: the sweep resends it
            // under the unknown-outcome rule.
            Some(Err(e)) => tracing::error!(error = %e, "submit task failed"),
            None => return results,
        }
    }
}

/// Submit the segments of one MT not yet accepted, in order; stop at the first failure.
async fn submit_message(
    shared: &RelayShared,
    client: &Client,
    source: &str,
    concat: ConcatMode,
    message: &Claimed,
) -> SubmitResult {
    // The same reference on every attempt, so a resent segment joins its siblings.
    let concat = match concat {
        ConcatMode::Udh => Concat::Udh8(u8::try_from(message.id.rem_euclid(256)).unwrap_or(0)),
        ConcatMode::Sar => Concat::Sar(u16::try_from(message.id.rem_euclid(65_536)).unwrap_or(0)),
    };
    let segments = match encode::encode(&message.text, concat) {
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
        let request = SubmitRequest::new(source, &message.recipient, segment);
        match client.submit(&request).await {
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

/// Map an SMPP failure onto the outbox's retry rules.
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
                    tracing::warn!(operator = %name, %reason, "smpp link closed");
                    closed = true;
                }
            }
        }
        if receipts.is_empty() {
            continue;
        }
        match inbound::receipts(&shared.store, name, operator.receipt_ids, &receipts).await {
            Ok(_) => acks.into_iter().for_each(tongdao_smpp::Ack::ack),
            // Dropping the acks answers "temporary error": the SMSC resends them.
            Err(e) => {
                tracing::error!(operator = %name, error = %e, "cannot store receipts; the SMSC will resend them")
            }
        }
    }
}

async fn handle_mo(
    shared: &RelayShared,
    (operator, session): (&str, &str),
    pdu: &tongdao_smpp::MoPdu,
    ack: tongdao_smpp::Ack,
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
