//! One operator bind: keeps an SMPP transceiver session up (reconnecting with
//! back-off), claims queued MTs for its operator, submits them within the window,
//! stores the outcomes, and stores receipts and MOs before acknowledging them.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tongdao_smpp::client::{Backoff, ClientConfig, SubmitError, SubmitRequest, run_with_reconnect};
use tongdao_smpp::encode::{self, Concat};
use tongdao_smpp::{Client, Inbound, StatusClass};

use super::RelayShared;
use super::inbound;
use super::outbox::{self, Claimed, Failure, SubmitResult};
use crate::config::{ConcatMode, OperatorConfig};

/// How long an idle worker waits before looking at the queue again (a new MT
/// wakes it at once through `RelayShared::wake`).
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Run one bind of `operator` until the relay stops.
pub(super) async fn run_bind(shared: Arc<RelayShared>, operator: OperatorConfig) {
    let mut config = ClientConfig::new(&operator.address, &operator.system_id, &operator.password);
    config.system_type = operator.system_type.clone();
    config.window = usize::try_from(operator.window).unwrap_or(1).max(1);
    config.tps = operator.tps;
    let backoff = Backoff::default();
    run_with_reconnect(config, backoff, |client, events| {
        let shared = shared.clone();
        let operator = operator.clone();
        async move {
            tracing::info!(operator = %operator.name, "smpp bind up");
            let inbound = tokio::spawn(handle_inbound(
                shared.clone(),
                operator.name.clone(),
                events,
            ));
            send_loop(&shared, &operator, &client).await;
            client.close().await;
            let _ = inbound.await;
            tracing::warn!(operator = %operator.name, "smpp bind down; reconnecting");
            if shared.stopping() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    })
    .await;
}

async fn send_loop(shared: &Arc<RelayShared>, operator: &OperatorConfig, client: &Client) {
    let lease = Duration::from_secs(shared.relay.lease_secs);
    while !client.is_closed() && !shared.stopping() {
        let batch = match outbox::claim(&shared.store, &operator.name, shared.relay.batch, lease)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(operator = %operator.name, error = %e, "cannot claim from the outbox");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = client.closed() => {}
            }
            continue;
        }
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
        while let Some(done) = submits.join_next().await {
            match done {
                Ok(r) => results.push(r),
                // A panicked submit task leaves its row leased: the sweep resends it
                // under the unknown-outcome rule.
                Err(e) => tracing::error!(error = %e, "submit task failed"),
            }
        }
        if let Err(e) = outbox::record_submits(&shared.store, &shared.relay, &results).await {
            // Not stored: the leases run out and the sweep re-queues these rows under
            // the unknown-outcome rule, so nothing is lost.
            tracing::error!(operator = %operator.name, error = %e, "cannot store submit outcomes");
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
    operator: String,
    mut events: tokio::sync::mpsc::Receiver<Inbound>,
) {
    const BURST: usize = 512;
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
                Inbound::Mo(pdu, ack) => handle_mo(&shared, &operator, &pdu, ack).await,
                Inbound::Closed(reason) => {
                    tracing::warn!(%operator, %reason, "smpp link closed");
                    closed = true;
                }
            }
        }
        if receipts.is_empty() {
            continue;
        }
        match inbound::receipts(&shared.store, &operator, &receipts).await {
            Ok(_) => acks.into_iter().for_each(tongdao_smpp::Ack::ack),
            // Dropping the acks answers "temporary error": the SMSC resends them.
            Err(e) => {
                tracing::error!(%operator, error = %e, "cannot store receipts; the SMSC will resend them")
            }
        }
    }
}

async fn handle_mo(
    shared: &RelayShared,
    operator: &str,
    pdu: &tongdao_smpp::MoPdu,
    ack: tongdao_smpp::Ack,
) {
    match inbound::mo(&shared.store, operator, pdu).await {
        Ok(record) => {
            ack.ack();
            if let Some(record) = record {
                tracing::info!(%operator, mo = record.id, "MO received");
                let _ = shared.mo_events.send(record);
            }
        }
        Err(e) => {
            tracing::error!(%operator, error = %e, "cannot store an MO; the SMSC will resend it")
        }
    }
}
