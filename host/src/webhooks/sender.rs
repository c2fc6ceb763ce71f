//! The webhook sender: claims due deliveries with a lease (`SKIP LOCKED`
//! on PostgreSQL, so replicas never send one at once), POSTs each event signed,
//! and records the answer. A 2xx is `delivered`; anything else (no connection, a
//! timeout, another status) is tried again after
//! `min(retry_initial_ms × 2^(attempts−1), retry_max_ms)`, jittered uniformly
//! between half of that and all of it, until `give_up_secs` after the first
//! attempt, then `failed` (replayable). A crash between the partner's answer and
//! its record sends the event again with the same `Tongdao-Event-Id`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use super::{Event, WebhooksConfig, feed, sign, signing_secrets};
use crate::store::{Store, StoreError, now_ms};

/// Start the feeder and the sender; they run until the task is aborted.
pub fn spawn(store: Store, config: WebhooksConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = match client(&config) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "webhook client could not be built; webhooks are off");
                return;
            }
        };
        let every = Duration::from_millis(config.poll_ms);
        let feeding = async {
            loop {
                if let Err(e) = feed::feed_once(&store, &config).await {
                    tracing::error!(error = %e, "partner event feed failed");
                }
                tokio::time::sleep(every).await;
            }
        };
        let sending = async {
            loop {
                match send_due(&store, &config, &client).await {
                    // A full batch: look again at once.
                    Ok(n) if n >= BATCH as usize => continue,
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "webhook sender failed"),
                }
                tokio::time::sleep(every).await;
            }
        };
        tokio::join!(feeding, sending);
    })
}

/// Deliveries claimed per round.
const BATCH: i64 = 200;

/// Resolves names and drops every non-public address unless private addresses
/// are allowed, so a name cannot point the platform into its own network.
struct PublicOnly {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || sign::is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client: the timeout, no redirects (a redirect could lead anywhere),
/// no proxy, the address rule on every resolution; `https` through rustls, trusting the
/// web PKI roots and the certificates of `[webhooks] ca_file`.
///
/// # Errors
/// When `ca_file` cannot be read, or the TLS or HTTP stack cannot start.
pub fn client(config: &WebhooksConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    for certificate in config.ca_certificates()? {
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .timeout(Duration::from_millis(config.timeout_ms))
        .connect_timeout(Duration::from_millis(config.timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        // No proxy from the environment (`HTTPS_PROXY`…): through a proxy the name
        // would be resolved by the proxy, out of reach of the address rule.
        .no_proxy()
        .dns_resolver(Arc::new(PublicOnly {
            allow_private: config.allow_private,
        }))
        .user_agent(concat!("tongdao-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("the webhook client: {e}"))
}

/// The pause before attempt `attempts + 1`, before jitter (ms).
pub fn backoff_ms(config: &WebhooksConfig, attempts: i64) -> u64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
    config
        .retry_initial_ms
        .saturating_mul(1u64 << doublings)
        .min(config.retry_max_ms)
}

type DueRow = (
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    String,
    i64,
    String,
    String,
    i64,
);

/// Claim and send the deliveries that are due; returns how many were attempted.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn send_due(
    store: &Store,
    config: &WebhooksConfig,
    client: &reqwest::Client,
) -> Result<usize, StoreError> {
    let now = now_ms();
    let lease = i64::try_from(config.timeout_ms.saturating_mul(3).saturating_add(30_000))
        .unwrap_or(i64::MAX);
    // A read first: nothing due costs no write transaction.
    let due: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 LIMIT 1",
    )
    .bind(now)
    .fetch_optional(store.pool())
    .await?;
    if due.is_none() {
        return Ok(0);
    }
    let claimed: Vec<(i64,)> = sqlx::query_as(&format!(
        "UPDATE webhook_deliveries SET lease_until = $1 WHERE id IN (
           SELECT id FROM webhook_deliveries
           WHERE status = 'pending' AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2)
           ORDER BY next_attempt_at, id LIMIT $3 {})
         RETURNING id",
        store.skip_locked()
    ))
    .bind(now.saturating_add(lease))
    .bind(now)
    .bind(BATCH)
    .fetch_all(store.pool())
    .await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = claimed.iter().map(|(id,)| id.to_string()).collect();
    // The ids are integers the store just returned.
    let due: Vec<DueRow> = sqlx::query_as(&format!(
        "SELECT d.id, d.endpoint_id, d.event_id, d.attempts, d.first_attempt_at, w.url, e.partner_id,
                e.kind, e.payload, e.at
         FROM webhook_deliveries d
         JOIN webhook_endpoints w ON w.id = d.endpoint_id
         JOIN partner_events e ON e.id = d.event_id
         WHERE d.id IN ({}) ORDER BY d.event_id",
        ids.join(",")
    ))
    .fetch_all(store.pool())
    .await?;
    let mut secrets = std::collections::HashMap::new();
    for row in &due {
        if let std::collections::hash_map::Entry::Vacant(slot) = secrets.entry(row.6) {
            slot.insert(signing_secrets(store, row.6).await?);
        }
    }
    let attempted = due.len();
    let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(due)
        .map(|row| {
            let partner_secrets = secrets.get(&row.6).cloned().unwrap_or_default();
            async move { attempt(store, config, client, row, &partner_secrets).await }
        })
        .buffer_unordered(config.concurrency)
        .collect()
        .await;
    for result in results {
        result?;
    }
    Ok(attempted)
}

/// The body of an event as sent: the same bytes on every attempt.
pub fn body(event: &Event) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": event.id, "kind": event.kind, "created_at": event.created_at, "data": event.data,
    }))
    .unwrap_or_default()
}

async fn attempt(
    store: &Store,
    config: &WebhooksConfig,
    client: &reqwest::Client,
    (id, _endpoint, event_id, attempts, first_attempt_at, url, _partner, kind, payload, at): DueRow,
    secrets: &[String],
) -> Result<(), StoreError> {
    let event = Event::from_row((event_id, kind, payload, at));
    let body = body(&event);
    let timestamp = now_ms() / 1000;
    let started = now_ms();
    let mut request = client
        .post(&url)
        .header("content-type", "application/json")
        .header("Tongdao-Event-Id", event_id.to_string())
        .header("Tongdao-Timestamp", timestamp.to_string())
        .body(body.clone());
    if !secrets.is_empty() {
        request = request.header("Tongdao-Signature", sign::header(secrets, timestamp, &body));
    }
    let refused = super::check_url(&url, config.allow_private).err();
    let outcome = match refused {
        Some(e) => Err((None, e.to_string())),
        None => match request.send().await {
            Ok(resp) if resp.status().is_success() => Ok(i64::from(resp.status().as_u16())),
            Ok(resp) => Err((
                Some(i64::from(resp.status().as_u16())),
                format!("answered {}", resp.status()),
            )),
            Err(e) => Err((None, describe(&e))),
        },
    };
    let now = now_ms();
    let attempts = attempts.saturating_add(1);
    match outcome {
        Ok(code) => {
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = $1, lease_until = NULL,
                   last_status_code = $2, last_error = NULL, delivered_at = $3, last_attempt_at = $3,
                   first_attempt_at = COALESCE(first_attempt_at, $4)
                 WHERE id = $5",
            )
            .bind(attempts)
            .bind(code)
            .bind(now)
            .bind(started)
            .bind(id)
            .execute(store.pool())
            .await?;
        }
        Err((code, error)) => {
            let first = first_attempt_at.unwrap_or(started);
            let give_up =
                i64::try_from(config.give_up_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            let status = if now.saturating_sub(first) >= give_up {
                "failed"
            } else {
                "pending"
            };
            let pause = backoff_ms(config, attempts);
            let jittered = pause / 2 + rand::random_range(0..=pause - pause / 2);
            let next = now.saturating_add(i64::try_from(jittered).unwrap_or(i64::MAX));
            tracing::debug!(delivery = id, event = event_id, %error, attempts, "webhook delivery failed");
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $1, attempts = $2, lease_until = NULL,
                   last_status_code = $3, last_error = $4, next_attempt_at = $5, last_attempt_at = $6,
                   first_attempt_at = COALESCE(first_attempt_at, $7)
                 WHERE id = $8",
            )
            .bind(status)
            .bind(attempts)
            .bind(code)
            .bind(error)
            .bind(next)
            .bind(now)
            .bind(started)
            .bind(id)
            .execute(store.pool())
            .await?;
        }
    }
    Ok(())
}

/// A short reason for a failed request (connect, timeout, …).
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = format!("{what}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let config = WebhooksConfig::default();
        let pauses: Vec<u64> = (1..=12).map(|n| backoff_ms(&config, n)).collect();
        assert_eq!(pauses[0], 10_000);
        assert_eq!(pauses[1], 20_000);
        assert_eq!(pauses[8], 2_560_000);
        assert_eq!(pauses[9], 3_600_000);
        assert_eq!(pauses[11], 3_600_000);
        assert_eq!(backoff_ms(&config, i64::MAX), 3_600_000);
    }

    /// A listener on loopback that counts the connections it accepts.
    async fn counting_listener() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = vec![0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        (addr, accepted)
    }

    /// SECURITY.md claim 13 (DNS rebinding): the address rule is applied by the
    /// client's own resolver to every resolution it connects through, not to the
    /// URL's text beforehand, so a name that resolves to a private address at
    /// delivery time (here `localhost`, which the system's hosts file resolves to
    /// loopback; the URL rule is not asked) is refused before any connection. The
    /// same request with private addresses allowed reaches the listener, so the
    /// name does lead there.
    #[tokio::test]
    async fn a_name_resolving_to_a_private_address_is_refused_at_connect() {
        let (addr, accepted) = counting_listener().await;
        let url = format!("http://localhost:{}/hook", addr.port());
        let refusing = client(&WebhooksConfig::default()).unwrap();
        let refused = refusing.post(&url).body("{}").send().await.unwrap_err();
        assert!(refused.is_connect(), "{refused:?}");
        let chain = format!("{:?}", refused);
        assert!(chain.contains("resolves to no public address"), "{chain}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);

        let allowing = client(&WebhooksConfig {
            allow_private: true,
            ..WebhooksConfig::default()
        })
        .unwrap();
        let answer = allowing.post(&url).body("{}").send().await.unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::NO_CONTENT);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
