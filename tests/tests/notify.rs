//! Issue 15 items 3 and 4: anomaly alerts and signed webhooks with an
//! inbox, through the real server, the SMSC simulator over SMPP and a real
//! HTTP receiver on loopback, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use common::env::{Env, free};
use common::{ADMIN_KEY, Server, databases, error_code, poll_until};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tongdao::config::Config;
use tongdao_smpp::sim::{Faults, Sim, SimConfig};

const WAIT: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    event_id: i64,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

/// A partner's webhook receiver: answers with `status` (200 when up), records
/// every request.
#[derive(Clone, Default)]
struct Receiver {
    status: Arc<AtomicU16>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Serve on `addr` until the returned task is aborted.
    async fn serve(&self, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        let listener = poll_until(WAIT, async || {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("binding {addr}: {e}"))
        })
        .await;
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(self.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        })
    }

    /// Serve HTTPS on a free loopback port with `tls` (a certificate for
    /// 127.0.0.1) until the returned task is aborted; returns the address too.
    async fn serve_tls(
        &self,
        tls: tokio_rustls::rustls::ServerConfig,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(self.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends the
                    // handshake: nothing to serve then.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(stream),
                            hyper_util::service::TowerToHyperService::new(app),
                        )
                        .await;
                });
            }
        });
        (addr, task)
    }
}

/// A throw-away CA (its PEM) and a server certificate it signed for 127.0.0.1.
fn test_pki() -> (String, tokio_rustls::rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    use tokio_rustls::rustls;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tongdao test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    leaf.distinguished_name
        .push(DnType::CommonName, "partner receiver");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca_cert.pem(), config)
}

async fn hook(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AxumStatus {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let answered = receiver.status.load(Ordering::SeqCst);
    receiver.hits.lock().unwrap().push(Hit {
        event_id: header("tongdao-event-id").parse().unwrap_or(-1),
        timestamp: header("tongdao-timestamp").parse().unwrap_or(-1),
        signature: header("tongdao-signature"),
        body: body.to_vec(),
        answered,
    });
    AxumStatus::from_u16(answered).unwrap()
}

/// What a partner runs: does any `v1=` of the header match
/// HMAC-SHA256(secret, timestamp + "." + body)? (Written here from the README's
/// recipe, not with the platform's code.)
fn verifies(secret: &str, hit: &Hit) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.", hit.timestamp).as_bytes());
    mac.update(&hit.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    hit.signature
        .split(',')
        .any(|part| part.trim().strip_prefix("v1=") == Some(expected.as_str()))
}

/// A free loopback port (bound, then closed: nothing listens there yet).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn fast_webhooks(config: &mut Config) {
    config.webhooks.allow_private = true;
    config.webhooks.poll_ms = 50;
    config.webhooks.feed_lag_ms = 200;
    config.webhooks.retry_initial_ms = 100;
    config.webhooks.retry_max_ms = 400;
    config.webhooks.timeout_ms = 2000;
}

/// Every event of the partner's inbox, following `next`.
async fn inbox(server: &Server, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let path = if after.is_empty() {
            "/v1/events?limit=100".to_string()
        } else {
            format!("/v1/events?limit=100&after={after}")
        };
        let (status, page) = server.get(&path, key).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return out;
        }
        after = page["next"].as_str().unwrap().to_string();
        out.extend(items);
    }
}

/// Issue 15 item 4: the partner's endpoint is down (nothing listens),
/// then answers 503, then comes back; meanwhile the secret is rotated. Every event
/// of the inbox reaches the receiver with a 200 exactly once per event id (a
/// repeated id carries the same body), in the kinds its traffic made, and every
/// request verifies with the partner's secret: before the rotation the old one,
/// after it both (the grace period), so the receiver may switch at any time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_a_receiver_down_then_back_gets_every_event_once_signed_across_rotation() {
    for db in databases().await {
        let env = Env::start(db, fast_webhooks).await;
        let server = &env.server;
        let receiver = Receiver::default();
        receiver.status.store(503, Ordering::SeqCst);
        let addr = closed_port();
        let (status, created) = server
            .post(
                "/v1/webhooks",
                &env.acme,
                json!({"url": format!("http://{addr}/hook"), "description": "acme's receiver"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let endpoint = created["id"].as_i64().unwrap();
        let old_secret = created["secret"].as_str().unwrap().to_string();
        assert!(old_secret.starts_with("whsec_"));
        let service = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "03"))
            .await;

        // Phase 1: nothing listens. Users subscribe by texting the keyword.
        for user in ["13900000001", "13900000002", "13900000003"] {
            env.mo(user, "1066123403", "笑话");
        }
        poll_until(WAIT, async || {
            let (_, log) = server
                .get(&format!("/v1/webhooks/{endpoint}/deliveries"), &env.acme)
                .await;
            let retried = log["items"].as_array().unwrap().iter().any(|d| {
                d["attempts"].as_i64().unwrap() >= 2
                    && d["status"] == "pending"
                    && d["last_error"].as_str().unwrap_or("").contains("connect")
            });
            if retried {
                Ok(())
            } else {
                Err(format!(
                    "no delivery retried after a refused connection: {log}"
                ))
            }
        })
        .await;

        // Phase 2: the receiver answers 503 for a while.
        let serving = receiver.serve(addr).await;
        poll_until(WAIT, async || {
            let failed = receiver.hits().iter().filter(|h| h.answered == 503).count();
            if failed >= 5 {
                Ok(())
            } else {
                Err(format!("{failed} requests answered 503"))
            }
        })
        .await;
        let (_, log) = server
            .get(&format!("/v1/webhooks/{endpoint}/deliveries"), &env.acme)
            .await;
        assert!(
            log["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["response_code"] == 503),
            "the log shows the 503: {log}"
        );

        // Phase 3: back up; the secret is rotated; more traffic and a suspension.
        receiver.status.store(200, Ordering::SeqCst);
        let before_rotation = tongdao::store::now_ms() / 1000;
        let (status, rotated) = server
            .post("/v1/webhook-secret/rotate", &env.acme, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let new_secret = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new_secret, old_secret);
        let rotated_at = tongdao::store::now_ms() / 1000;
        for user in ["13900000004", "13900000005"] {
            env.mo(user, "1066123403", "笑话");
        }

        // Every MO routed and every MT final, so every event there will be is known:
        // one per final MT, one per routed MO, the suspension and the resumption.
        let pool = server.platform.store.pool();
        let count = async |sql: &str| -> usize {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.unwrap();
            usize::try_from(n).unwrap()
        };
        poll_until(WAIT, async || {
            let open = count(
                "SELECT COUNT(*) FROM messages WHERE partner_id IS NOT NULL
                   AND status NOT IN ('delivered', 'failed', 'expired', 'cancelled')",
            )
            .await;
            let routed = count(
                "SELECT COUNT(*) FROM mo_messages WHERE status = 'routed' AND service_id IS NOT NULL",
            )
            .await;
            let finals = count(
                "SELECT COUNT(*) FROM messages WHERE partner_id IS NOT NULL
                   AND status IN ('delivered', 'failed', 'expired')",
            )
            .await;
            // Five users subscribed: five MOs routed, each answered with a welcome.
            if open == 0 && routed == 5 && finals >= 5 {
                Ok(())
            } else {
                Err(format!("{routed} MOs routed, {finals} MTs final, {open} not final"))
            }
        })
        .await;
        // Then a suspension and a resumption of the service (after the welcomes, so
        // that none of them is held).
        for action in ["suspend", "resume"] {
            let (status, body) = server
                .post(
                    &format!("/v1/admin/services/{service}/{action}"),
                    ADMIN_KEY,
                    json!({"reason": "webhook test"}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let expected = count(
            "SELECT COUNT(*) FROM messages WHERE partner_id IS NOT NULL
               AND status IN ('delivered', 'failed', 'expired')",
        )
        .await
            + count("SELECT COUNT(*) FROM mo_messages WHERE status = 'routed' AND service_id IS NOT NULL")
                .await
            + 2;
        assert!(expected >= 2 + 5 + 5, "{expected}");
        // Every inbox event reaches the receiver with a 200.
        let events = poll_until(WAIT, async || {
            let events = inbox(server, &env.acme).await;
            let kinds: BTreeSet<String> = events
                .iter()
                .map(|e| e["kind"].as_str().unwrap().to_string())
                .collect();
            if events.len() != expected {
                return Err(format!(
                    "inbox has {} of {expected} events: {kinds:?}",
                    events.len()
                ));
            }
            assert_eq!(
                kinds,
                ["message.receipt", "mo.received", "suspension"]
                    .map(String::from)
                    .into(),
            );
            let delivered: BTreeSet<i64> = receiver
                .hits()
                .iter()
                .filter(|h| h.answered == 200)
                .map(|h| h.event_id)
                .collect();
            let missing: Vec<i64> = events
                .iter()
                .map(|e| e["id"].as_i64().unwrap())
                .filter(|id| !delivered.contains(id))
                .collect();
            if missing.is_empty() {
                Ok(events)
            } else {
                Err(format!(
                    "{} of {} events not delivered yet: {missing:?}",
                    missing.len(),
                    events.len()
                ))
            }
        })
        .await;
        let hits = receiver.hits();
        // Exactly once per event id: every id the receiver accepted is an inbox
        // event, and a repeated id is the same event (same body).
        let inbox_ids: BTreeSet<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
        let mut bodies: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        for hit in &hits {
            assert!(
                inbox_ids.contains(&hit.event_id),
                "unknown event {}",
                hit.event_id
            );
            let body: Value = serde_json::from_slice(&hit.body).unwrap();
            assert_eq!(body["id"].as_i64(), Some(hit.event_id));
            let same = bodies
                .entry(hit.event_id)
                .or_insert_with(|| hit.body.clone());
            assert_eq!(
                *same, hit.body,
                "event {} sent with two bodies",
                hit.event_id
            );
        }
        for event in &events {
            let id = event["id"].as_i64().unwrap();
            let body: Value = serde_json::from_slice(&bodies[&id]).unwrap();
            assert_eq!(body["kind"], event["kind"]);
            assert_eq!(body["data"], event["data"]);
        }
        let accepted = hits.iter().filter(|h| h.answered == 200).count();
        let accepted_ids: BTreeSet<i64> = hits
            .iter()
            .filter(|h| h.answered == 200)
            .map(|h| h.event_id)
            .collect();
        assert_eq!(accepted_ids, inbox_ids);
        // Signatures: each request verifies with a secret the partner holds; after
        // the rotation with the new one and, during the grace, the old one too.
        for hit in &hits {
            assert!(
                verifies(&old_secret, hit) || verifies(&new_secret, hit),
                "event {} at {}: {}",
                hit.event_id,
                hit.timestamp,
                hit.signature
            );
            // A round that read the secrets just before the rotation may sign a
            // moment after it; two seconds on, every request carries both.
            if hit.timestamp > rotated_at + 2 {
                assert!(
                    verifies(&new_secret, hit) && verifies(&old_secret, hit),
                    "{hit:?}"
                );
            }
            if hit.timestamp < before_rotation {
                assert!(!verifies(&new_secret, hit), "{hit:?}");
            }
        }
        assert!(hits.iter().any(|h| verifies(&new_secret, h)));
        assert!(!hits.iter().any(|h| verifies("whsec_not-the-secret", h)));
        let retried = hits.len() - accepted;
        eprintln!(
            "webhooks: {} events, {} requests ({} answered 503 before the receiver came back, {} repeated)",
            events.len(),
            hits.len(),
            retried,
            accepted - accepted_ids.len()
        );

        // The log: every delivery delivered (recorded a moment after the receiver
        // answered); a replay sends events again, same ids.
        let items = poll_until(WAIT, async || {
            let (_, log) = server
                .get(
                    &format!("/v1/webhooks/{endpoint}/deliveries?limit=500"),
                    &env.acme,
                )
                .await;
            let items = log["items"].as_array().unwrap().clone();
            assert_eq!(items.len(), events.len(), "{log}");
            if items
                .iter()
                .all(|d| d["status"] == "delivered" && d["response_code"] == 200)
            {
                Ok(items)
            } else {
                Err(format!("not all recorded delivered: {log}"))
            }
        })
        .await;
        assert!(items.iter().any(|d| d["attempts"].as_i64().unwrap() > 2));
        let last = *inbox_ids.iter().next_back().unwrap();
        let (status, replayed) = server
            .post(
                &format!("/v1/webhooks/{endpoint}/replay"),
                &env.acme,
                json!({"from_event_id": last}),
            )
            .await;
        assert_eq!(
            (status, replayed["replayed"].as_i64()),
            (StatusCode::OK, Some(1))
        );
        poll_until(WAIT, async || {
            let copies = receiver
                .hits()
                .iter()
                .filter(|h| h.event_id == last && h.answered == 200)
                .count();
            if copies == 2 {
                Ok(())
            } else {
                Err(format!("{copies} copies of {last}"))
            }
        })
        .await;
        let (status, body) = server
            .post(
                &format!("/v1/webhooks/{endpoint}/replay"),
                &env.acme,
                json!({}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-input")
        );
        serving.abort();
        env.stop().await;
    }
}

/// Issue 15 item 4, `https` endpoints: a real TLS receiver on loopback
/// with a certificate from a private CA the platform trusts through `[webhooks]
/// ca_file` receives every event of the partner's inbox with a 200, and every
/// request verifies with the partner's secret. A client without that CA refuses
/// the same receiver (the certificate is checked, not skipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_an_https_receiver_gets_every_event_signed() {
    let (ca_pem, tls) = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    for db in databases().await {
        let env = Env::start(db, |config| {
            fast_webhooks(config);
            config.webhooks.ca_file = Some(ca_file.clone());
        })
        .await;
        let server = &env.server;
        let receiver = Receiver::default();
        receiver.status.store(200, Ordering::SeqCst);
        let (addr, serving) = receiver.serve_tls(tls.clone()).await;
        let url = format!("https://{addr}/hook");

        // Without the private CA the certificate is refused.
        let untrusting = tongdao::webhooks::sender::client(&tongdao::webhooks::WebhooksConfig {
            allow_private: true,
            ..Default::default()
        })
        .unwrap();
        let refused = untrusting.post(&url).body("{}").send().await.unwrap_err();
        assert!(
            format!("{refused:?}")
                .to_lowercase()
                .contains("certificate"),
            "{refused:?}"
        );
        assert!(receiver.hits().is_empty());

        let (status, created) = server
            .post("/v1/webhooks", &env.acme, json!({"url": url}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let secret = created["secret"].as_str().unwrap().to_string();
        let service = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "03"))
            .await;
        for user in ["13900000001", "13900000002"] {
            env.mo(user, "1066123403", "笑话");
        }
        // Both welcomes final before the suspension, so that neither is held.
        poll_until(WAIT, async || {
            let (finals,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM messages WHERE partner_id IS NOT NULL
                   AND status IN ('delivered', 'failed', 'expired')",
            )
            .fetch_one(server.platform.store.pool())
            .await
            .unwrap();
            if finals == 2 {
                Ok(())
            } else {
                Err(format!("{finals} welcomes final"))
            }
        })
        .await;
        for action in ["suspend", "resume"] {
            let (status, body) = server
                .post(
                    &format!("/v1/admin/services/{service}/{action}"),
                    ADMIN_KEY,
                    json!({"reason": "https test"}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        // Two MOs routed, two welcomes final, the suspension and the resumption.
        let events = poll_until(WAIT, async || {
            let events = inbox(server, &env.acme).await;
            let kinds: BTreeMap<String, usize> = events.iter().fold(BTreeMap::new(), |mut m, e| {
                *m.entry(e["kind"].as_str().unwrap().to_string())
                    .or_default() += 1;
                m
            });
            let want = [
                ("message.receipt", 2),
                ("mo.received", 2),
                ("suspension", 2),
            ]
            .map(|(k, n)| (k.to_string(), n))
            .into();
            if kinds != want {
                return Err(format!("inbox kinds {kinds:?}"));
            }
            let delivered: BTreeSet<i64> = receiver
                .hits()
                .iter()
                .filter(|h| h.answered == 200)
                .map(|h| h.event_id)
                .collect();
            let ids: BTreeSet<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
            if delivered == ids {
                Ok(events)
            } else {
                Err(format!("delivered {delivered:?} of {ids:?}"))
            }
        })
        .await;
        let hits = receiver.hits();
        assert_eq!(hits.len(), events.len(), "one request per event");
        for hit in &hits {
            assert!(verifies(&secret, hit), "{hit:?}");
            let body: Value = serde_json::from_slice(&hit.body).unwrap();
            let event = events.iter().find(|e| e["id"] == body["id"]).unwrap();
            assert_eq!(body["id"].as_i64(), Some(hit.event_id));
            assert_eq!(body["data"], event["data"]);
        }
        eprintln!(
            "https webhooks: {} events, {} requests",
            events.len(),
            hits.len()
        );
        serving.abort();
        env.stop().await;
    }
}

/// Issue 15 item 4: endpoint URLs are http(s) on public addresses unless
/// `[webhooks] allow_private` (SSRF), kinds are known ones, the secret is shown
/// once and rotated, another partner's endpoint is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_endpoints_refuse_private_addresses_and_unknown_kinds() {
    for db in databases().await {
        let server = Server::start(db).await;
        let acme = server.new_partner("acme").await;
        let rival = server.new_partner("rival").await;
        for (url, code) in [
            ("http://127.0.0.1:9/hook", "private-address"),
            ("http://10.1.2.3/hook", "private-address"),
            ("http://169.254.169.254/latest", "private-address"),
            ("http://[::1]/hook", "private-address"),
            ("http://localhost/hook", "private-address"),
            ("ftp://example.com/hook", "invalid-url"),
            ("not a url", "invalid-url"),
            ("http://user:pw@example.com/hook", "invalid-url"),
        ] {
            let (status, body) = server
                .post("/v1/webhooks", &acme, json!({"url": url}))
                .await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::BAD_REQUEST, code),
                "{url}"
            );
        }
        let (status, body) = server
            .post(
                "/v1/webhooks",
                &acme,
                json!({"url": "https://example.com/hook", "events": ["alert", "nope"]}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-event-kind")
        );
        let (status, first) = server
            .post(
                "/v1/webhooks",
                &acme,
                json!({"url": "https://example.com/hook", "events": ["alert", "message.receipt"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert!(first["secret"].as_str().unwrap().starts_with("whsec_"));
        assert_eq!(first["events"], json!(["alert", "message.receipt"]));
        let (status, second) = server
            .post(
                "/v1/webhooks",
                &acme,
                json!({"url": "https://example.org/other"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(second["secret"], Value::Null, "the secret is shown once");
        let id = first["id"].as_i64().unwrap();
        let (status, _) = server.get(&format!("/v1/webhooks/{id}"), &rival).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = server
            .send(
                server
                    .http
                    .patch(server.url(&format!("/v1/webhooks/{id}")))
                    .json(&json!({"url": "http://192.168.0.1/x"})),
                Some(&acme),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "private-address")
        );
        let (status, body) = server
            .send(
                server
                    .http
                    .patch(server.url(&format!("/v1/webhooks/{id}")))
                    .json(&json!({"events": [], "enabled": false})),
                Some(&acme),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (body["events"].clone(), body["enabled"].clone()),
            (json!([]), json!(false))
        );
        let (_, page) = server.get("/v1/webhooks", &acme).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        let (_, page) = server.get("/v1/webhooks", &rival).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 0);
        let (status, _) = server.delete(&format!("/v1/webhooks/{id}"), &rival).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server.delete(&format!("/v1/webhooks/{id}"), &acme).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = server.get(&format!("/v1/webhooks/{id}"), &acme).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = server.get("/v1/events?kinds=alert,bogus", &acme).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-event-kind")
        );
        let (status, body) = server.get("/v1/events?after=x", &acme).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-cursor")
        );
        let (status, body) = server.get("/v1/events", &acme).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"items": [], "next": null}));
        server.stop().await;
    }
}

/// Wait for an alert of `kind` in the partner's view of `/v1/alerts`, open
/// (`active`) or ended; returns it.
async fn wait_alert(server: &Server, key: &str, kind: &str, active: bool) -> Value {
    poll_until(WAIT, async || {
        let (status, page) = server
            .get(&format!("/v1/alerts?active={active}"), key)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == kind)
            .cloned()
            .ok_or_else(|| format!("no {kind} alert with active={active}: {page}"))
    })
    .await
}

/// Issue 15 item 3: stopping the SMSC opens a critical `bind-down` alert
/// for the operator with what was measured; the SMSC coming back clears it; the
/// partner's webhook gets both, signed, with the same alert id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_a_lost_bind_opens_an_alert_that_clears_itself_and_reaches_the_webhook() {
    for db in databases().await {
        let env = Env::start(db, |config| {
            fast_webhooks(config);
            config.alerts.interval_ms = 100;
            config.alerts.bind_down_secs = 1;
        })
        .await;
        let server = &env.server;
        let receiver = Receiver::default();
        receiver.status.store(200, Ordering::SeqCst);
        let addr = closed_port();
        let serving = receiver.serve(addr).await;
        let (status, created) = server
            .post(
                "/v1/webhooks",
                &env.acme,
                json!({"url": format!("http://{addr}/hook"), "events": ["alert"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let secret = created["secret"].as_str().unwrap().to_string();
        // Bound first, and nothing open.
        poll_until(WAIT, async || {
            let (_, binds) = server.get("/v1/admin/relay/binds", ADMIN_KEY).await;
            let (_, open) = server.get("/v1/alerts?active=true", ADMIN_KEY).await;
            if binds["binds"][0]["state"] == "bound" && open["items"] == json!([]) {
                Ok(())
            } else {
                Err(format!("{binds} {open}"))
            }
        })
        .await;

        let sim_addr = env.sim.local_addr();
        env.sim.shutdown();
        let alert = wait_alert(server, &env.acme, "bind-down", true).await;
        assert_eq!(alert["severity"], "critical");
        assert_eq!(alert["operator"], "mobile");
        assert_eq!(alert["partner_id"], Value::Null, "a platform alert");
        assert_eq!(
            (alert["unit"].clone(), alert["threshold"].clone()),
            (json!("secs"), json!(1))
        );
        assert!(alert["value"].as_i64().unwrap() >= 1, "{alert}");
        assert_eq!(alert["ended_at"], Value::Null);

        // The SMSC returns on the same address: the bind comes back, the alert ends.
        let sim = poll_until(WAIT, async || {
            Sim::start(SimConfig {
                listen: sim_addr,
                dlr_delay: Duration::from_millis(5),
                ..SimConfig::default()
            })
            .await
            .map_err(|e| format!("restarting the simulator: {e}"))
        })
        .await;
        let ended = wait_alert(server, &env.acme, "bind-down", false).await;
        assert_eq!(ended["id"], alert["id"]);
        assert!(ended["ended_at"].is_string());
        let (_, open) = server.get("/v1/alerts?active=true", &env.acme).await;
        assert!(
            !open["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["kind"] == "bind-down"),
            "{open}"
        );

        // Both reached the webhook, signed.
        let id = alert["id"].as_i64().unwrap();
        let hits = poll_until(WAIT, async || {
            let hits: Vec<(Hit, Value)> = receiver
                .hits()
                .into_iter()
                .map(|h| {
                    let body: Value = serde_json::from_slice(&h.body).unwrap();
                    (h, body)
                })
                .filter(|(_, b)| b["data"]["alert_id"] == id)
                .collect();
            let states: Vec<&str> = hits
                .iter()
                .map(|(_, b)| b["data"]["state"].as_str().unwrap())
                .collect();
            if states.contains(&"open") && states.contains(&"cleared") {
                Ok(hits)
            } else {
                Err(format!("alert {id} states at the receiver: {states:?}"))
            }
        })
        .await;
        for (hit, body) in &hits {
            assert!(verifies(&secret, hit));
            assert_eq!(body["kind"], "alert");
            assert_eq!(body["data"]["alert"], "bind-down");
            assert_eq!(body["data"]["operator"], "mobile");
        }
        serving.abort();
        sim.shutdown();
        env.stop().await;
    }
}

/// Issue 15 item 3: with the SMSC reporting most MTs undeliverable the
/// operator's delivery rate drops under `delivery_rate_min_bp` and a
/// `delivery-rate` alert opens with the measured rate; once MTs are delivered
/// again and the bad ones leave the window, it clears itself. A complaint spike
/// against a service opens the partner's own `complaints` alert the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_a_delivery_rate_drop_and_complaints_open_alerts_that_clear_themselves() {
    for db in databases().await {
        let env = Env::start(db, |config| {
            config.relay.test_numbers = vec!["13800138000".into()];
            config.alerts.interval_ms = 100;
            config.alerts.window_secs = 3;
            config.alerts.delivery_min_final = 10;
            config.alerts.delivery_rate_min_bp = 8000;
            config.alerts.complaints = 3;
        })
        .await;
        let server = &env.server;
        let send = async |n: usize| {
            for i in 0..n {
                let (status, body) = server
                    .post(
                        "/v1/admin/test-messages",
                        ADMIN_KEY,
                        json!({"to": "13800138000", "text": format!("rate test {i}")}),
                    )
                    .await;
                assert!(status.is_success(), "{body}");
            }
        };
        let finals = async |status: &str| -> i64 {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages WHERE status = $1")
                .bind(status)
                .fetch_one(server.platform.store.pool())
                .await
                .unwrap();
            n
        };
        env.sim.set_faults(Faults {
            undeliverable: 0.9,
            ..Faults::default()
        });
        send(20).await;
        let alert = wait_alert(server, &env.acme, "delivery-rate", true).await;
        assert_eq!(alert["operator"], "mobile");
        assert_eq!(alert["unit"], "bp");
        assert_eq!(alert["threshold"], 8000);
        assert!(alert["value"].as_i64().unwrap() < 8000, "{alert}");
        assert!(finals("failed").await >= 10);

        env.sim.set_faults(Faults::default());
        // Healthy traffic until the failures have left the window.
        let ended = poll_until(WAIT, async || {
            send(2).await;
            let (_, page) = server.get("/v1/alerts?active=false", &env.acme).await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["kind"] == "delivery-rate" && a["id"] == alert["id"])
                .cloned()
                .ok_or_else(|| format!("still open: {page}"))
        })
        .await;
        assert!(ended["ended_at"].is_string());

        // Complaints against one of the partner's services: its own alert, which
        // ends once they leave the window.
        let service = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "03"))
            .await;
        for _ in 0..3 {
            let (status, body) = server
                .post(
                    "/v1/admin/complaints",
                    ADMIN_KEY,
                    json!({"partner": "acme", "service_id": service, "cause": "content"}),
                )
                .await;
            assert!(status.is_success(), "{body}");
        }
        let alert = wait_alert(server, &env.acme, "complaints", true).await;
        assert_eq!(alert["service_id"], service);
        assert!(alert["partner_id"].is_i64());
        assert_eq!(
            (alert["value"].clone(), alert["threshold"].clone()),
            (json!(3), json!(3))
        );
        let (_, rival_view) = server
            .get("/v1/alerts", &server.new_partner("rival").await)
            .await;
        assert!(
            !rival_view["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["kind"] == "complaints"),
            "another partner's alert is not shown: {rival_view}"
        );
        let ended = wait_alert(server, &env.acme, "complaints", false).await;
        assert_eq!(ended["id"], alert["id"]);
        env.stop().await;
    }
}

/// Issue 15 item 4: a delivery that keeps failing past `[webhooks] give_up_secs`
/// is marked `failed` with the last answer in the log, is still in the inbox, and
/// a replay from its event id delivers it (same id) once the receiver is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_a_delivery_that_keeps_failing_is_marked_failed_and_replayed() {
    for db in databases().await {
        let server = Server::start_with(db, |config| {
            fast_webhooks(config);
            config.webhooks.give_up_secs = 1;
        })
        .await;
        let acme = server.new_partner("acme").await;
        let receiver = Receiver::default();
        receiver.status.store(500, Ordering::SeqCst);
        let addr = closed_port();
        let serving = receiver.serve(addr).await;
        let (status, created) = server
            .post(
                "/v1/webhooks",
                &acme,
                json!({"url": format!("http://{addr}/hook"), "events": ["suspension"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let endpoint = created["id"].as_i64().unwrap();
        let secret = created["secret"].as_str().unwrap().to_string();
        let (status, body) = server
            .post(
                "/v1/admin/partners/acme/suspend",
                ADMIN_KEY,
                json!({"reason": "unpaid invoice"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let failed = poll_until(WAIT, async || {
            let (_, log) = server
                .get(&format!("/v1/webhooks/{endpoint}/deliveries"), &acme)
                .await;
            match log["items"].as_array().unwrap().first() {
                Some(d) if d["status"] == "failed" => Ok(d.clone()),
                other => Err(format!("not failed yet: {other:?}")),
            }
        })
        .await;
        assert_eq!(failed["response_code"], 500);
        assert!(failed["attempts"].as_i64().unwrap() >= 2, "{failed}");
        assert_eq!(failed["next_attempt_at"], Value::Null);
        let event_id = failed["event_id"].as_i64().unwrap();
        let events = inbox(&server, &acme).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["id"], event_id);
        assert_eq!(events[0]["kind"], "suspension");
        assert_eq!(events[0]["data"]["action"], "suspend");
        assert_eq!(events[0]["data"]["reason"], "unpaid invoice");

        receiver.status.store(200, Ordering::SeqCst);
        let (status, replayed) = server
            .post(
                &format!("/v1/webhooks/{endpoint}/replay"),
                &acme,
                json!({"from_event_id": event_id}),
            )
            .await;
        assert_eq!(
            (status, replayed["replayed"].as_i64()),
            (StatusCode::OK, Some(1))
        );
        let delivered = poll_until(WAIT, async || {
            let (_, log) = server
                .get(&format!("/v1/webhooks/{endpoint}/deliveries"), &acme)
                .await;
            match log["items"].as_array().unwrap().first() {
                Some(d) if d["status"] == "delivered" => Ok(d.clone()),
                other => Err(format!("not delivered yet: {other:?}")),
            }
        })
        .await;
        assert_eq!(
            (
                delivered["replays"].clone(),
                delivered["response_code"].clone()
            ),
            (json!(1), json!(200))
        );
        let hits = receiver.hits();
        assert!(
            hits.iter()
                .all(|h| h.event_id == event_id && verifies(&secret, h))
        );
        assert_eq!(hits.iter().filter(|h| h.answered == 200).count(), 1);
        serving.abort();
        server.stop().await;
    }
}

/// What every alert carries: its kind's severity and unit, the threshold, a
/// measured value at or past it (`at_least`: a rate threshold is a minimum),
/// when it started, and no end while open.
fn assert_measured(alert: &Value, severity: &str, unit: &str, threshold: i64, at_least: bool) {
    assert_eq!(alert["severity"], severity, "{alert}");
    assert_eq!(alert["unit"], unit, "{alert}");
    assert_eq!(alert["threshold"], threshold, "{alert}");
    let value = alert["value"].as_i64().unwrap();
    if at_least {
        assert!(value >= threshold, "{alert}");
    }
    let started: jiff::Timestamp = alert["started_at"].as_str().unwrap().parse().unwrap();
    assert!(
        started.as_millisecond() <= tongdao::store::now_ms(),
        "{alert}"
    );
    assert_eq!(alert["ended_at"], Value::Null, "{alert}");
    assert_eq!(alert["active"], true, "{alert}");
    assert!(!alert["detail"].as_str().unwrap().is_empty());
}

/// Wait for the open alert `alert` to end (the same id, with an end after its start).
async fn wait_cleared(server: &Server, key: &str, alert: &Value) -> Value {
    let ended = poll_until(WAIT, async || {
        let (_, page) = server.get("/v1/alerts?active=false", key).await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == alert["id"])
            .cloned()
            .ok_or_else(|| format!("alert {} still open: {page}", alert["id"]))
    })
    .await;
    let started: jiff::Timestamp = ended["started_at"].as_str().unwrap().parse().unwrap();
    let end: jiff::Timestamp = ended["ended_at"].as_str().unwrap().parse().unwrap();
    assert!(end >= started, "{ended}");
    assert_eq!(ended["active"], false);
    ended
}

/// The state of the first bind, as `/v1/admin/relay/binds` shows it.
async fn bind_state(server: &Server) -> String {
    let (_, binds) = server.get("/v1/admin/relay/binds", ADMIN_KEY).await;
    binds["binds"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Start the simulator again on `addr` (where a stopped one listened).
async fn sim_again(addr: SocketAddr) -> tongdao_smpp::sim::SimHandle {
    poll_until(WAIT, async || {
        Sim::start(SimConfig {
            listen: addr,
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .map_err(|e| format!("restarting the simulator: {e}"))
    })
    .await
}

/// Queue a test MT to `to` through the admin API.
async fn test_mt(server: &Server, to: &str, text: &str) {
    let (status, body) = server
        .post(
            "/v1/admin/test-messages",
            ADMIN_KEY,
            json!({"to": to, "text": text}),
        )
        .await;
    assert!(status.is_success(), "{body}");
}

/// Issue 15 item 3, `queue-age`: with the SMSC gone, a queued MT waits;
/// once it has waited `queue_age_secs` a platform `queue-age` alert opens for the
/// operator with the age measured in seconds; the SMSC back, the MT is sent and
/// the alert clears itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_queue_age_opens_while_mts_wait_and_clears_once_sent() {
    for db in databases().await {
        let env = Env::start(db, |config| {
            config.relay.test_numbers = vec!["13800138000".into()];
            config.alerts.interval_ms = 100;
            config.alerts.queue_age_secs = 1;
        })
        .await;
        let server = &env.server;
        poll_until(WAIT, async || match bind_state(server).await.as_str() {
            "bound" => Ok(()),
            other => Err(other.to_string()),
        })
        .await;
        let sim_addr = env.sim.local_addr();
        env.sim.shutdown();
        poll_until(WAIT, async || match bind_state(server).await.as_str() {
            "bound" => Err("still bound".to_string()),
            _ => Ok(()),
        })
        .await;
        test_mt(server, "13800138000", "queue age").await;
        let alert = wait_alert(server, &env.acme, "queue-age", true).await;
        assert_measured(&alert, "warning", "secs", 1, true);
        assert_eq!(alert["operator"], "mobile");
        assert_eq!(alert["partner_id"], Value::Null, "a platform alert");

        let sim = sim_again(sim_addr).await;
        wait_cleared(server, &env.acme, &alert).await;
        poll_until(WAIT, async || {
            let (delivered,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM messages WHERE status = 'delivered'")
                    .fetch_one(server.platform.store.pool())
                    .await
                    .unwrap();
            if delivered == 1 {
                Ok(())
            } else {
                Err("the waiting MT is not delivered yet".to_string())
            }
        })
        .await;
        sim.shutdown();
        env.stop().await;
    }
}

/// Issue 15 item 3, `failure-reason`: the SMSC reports every MT
/// undeliverable; one failure reason makes all of the operator's final MTs in the
/// window, so `failure-reason` opens for the operator and that reason with the
/// share measured (10,000 bp); healthy traffic replacing them clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_a_failure_reason_surge_opens_an_alert_that_clears_itself() {
    for db in databases().await {
        let env = Env::start(db, |config| {
            config.relay.test_numbers = vec!["13800138000".into()];
            config.alerts.interval_ms = 100;
            config.alerts.window_secs = 3;
            config.alerts.failure_reason_min = 5;
            config.alerts.failure_reason_share_bp = 5000;
        })
        .await;
        let server = &env.server;
        env.sim.set_faults(Faults {
            undeliverable: 1.0,
            ..Faults::default()
        });
        for i in 0..6 {
            test_mt(server, "13800138000", &format!("surge {i}")).await;
        }
        let alert = wait_alert(server, &env.acme, "failure-reason", true).await;
        assert_measured(&alert, "warning", "bp", 5000, true);
        assert_eq!(alert["operator"], "mobile");
        assert_eq!(
            alert["value"], 10_000,
            "every final MT failed alike: {alert}"
        );
        let (reason,): (String,) =
            sqlx::query_as("SELECT failure_reason FROM messages WHERE status = 'failed' LIMIT 1")
                .fetch_one(server.platform.store.pool())
                .await
                .unwrap();
        assert!(
            alert["detail"].as_str().unwrap().contains(&reason),
            "{alert} names `{reason}`"
        );

        env.sim.set_faults(Faults::default());
        let ended = poll_until(WAIT, async || {
            test_mt(server, "13800138000", "healthy").await;
            let (_, page) = server.get("/v1/alerts?active=false", &env.acme).await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["id"] == alert["id"])
                .cloned()
                .ok_or_else(|| format!("still open: {page}"))
        })
        .await;
        assert!(ended["ended_at"].is_string());
        env.stop().await;
    }
}

/// Issue 15 item 3, `bind-flapping`: the SMSC drops every bind soon after
/// accepting it; the relay binds again and again, and once `flap_binds` binds
/// were made within the window while the link is unstable, `bind-flapping` opens
/// with the count; the SMSC steady again, the link stays up past
/// `reconnect_stable_secs` and the alert clears itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_a_flapping_bind_opens_an_alert_that_clears_itself() {
    for db in databases().await {
        let env = Env::start(db, |config| {
            config.alerts.interval_ms = 100;
            config.alerts.window_secs = 3;
            config.alerts.flap_binds = 3;
            config.alerts.bind_down_secs = 600;
            for op in &mut config.operators {
                op.reconnect_initial_ms = 50;
                op.reconnect_max_ms = 200;
                op.reconnect_stable_secs = 1;
            }
        })
        .await;
        let server = &env.server;
        // The SMSC is replaced, on the same address, by one that drops every bind.
        let addr = env.sim.local_addr();
        env.sim.shutdown();
        let flappy = poll_until(WAIT, async || {
            Sim::start(SimConfig {
                listen: addr,
                faults: Faults {
                    drop_after_bind: Some(Duration::from_millis(50)),
                    ..Faults::default()
                },
                ..SimConfig::default()
            })
            .await
            .map_err(|e| format!("starting the flapping simulator: {e}"))
        })
        .await;
        let alert = wait_alert(server, &env.acme, "bind-flapping", true).await;
        assert_measured(&alert, "warning", "count", 3, true);
        assert_eq!(alert["operator"], "mobile");
        assert_eq!(alert["partner_id"], Value::Null);

        flappy.shutdown();
        let steady = sim_again(addr).await;
        wait_cleared(server, &env.acme, &alert).await;
        assert_eq!(bind_state(server).await, "bound");
        steady.shutdown();
        env.stop().await;
    }
}

/// Issue 15 item 3, `unsubscribes`: users of one service text the stop
/// word; once `unsubscribes` subscriptions were cancelled within the window the
/// partner's own alert opens for that service with the count, and clears itself
/// when they leave the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_an_unsubscribe_surge_opens_an_alert_that_clears_itself() {
    for db in databases().await {
        let env = Env::start(db, |config| {
            config.alerts.interval_ms = 100;
            config.alerts.window_secs = 3;
            config.alerts.unsubscribes = 2;
        })
        .await;
        let server = &env.server;
        let xh = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
            .await;
        let number = format!("{}02", common::env::SHORT_CODE);
        for user in ["13800002001", "13800002002"] {
            let (status, body) = env.subscribe(xh, user).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            env.mo(user, &number, "TD");
        }
        let alert = wait_alert(server, &env.acme, "unsubscribes", true).await;
        assert_measured(&alert, "warning", "count", 2, true);
        assert_eq!(alert["value"], 2);
        assert_eq!(alert["service_id"], xh);
        let partner = tongdao::partners::get(&server.platform.store, "acme")
            .await
            .unwrap()
            .id;
        assert_eq!(alert["partner_id"], partner);
        let subs = env.subscriptions(xh).await;
        assert!(subs.iter().all(|s| s["status"] == "cancelled"), "{subs:?}");
        let (_, rival) = server
            .get("/v1/alerts", &server.new_partner("rival").await)
            .await;
        assert!(
            !rival["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["kind"] == "unsubscribes"),
            "{rival}"
        );
        wait_cleared(server, &env.acme, &alert).await;
        env.stop().await;
    }
}

/// Issue 15 item 3, `module-faults`: a partner's module traps on every
/// call; once it faulted `module_faults` times within the window the partner's
/// alert opens for that module with the count, and clears itself when the faults
/// leave the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_module_faults_open_an_alert_that_clears_itself() {
    for db in databases().await {
        let server = Server::start_with(db, |config| {
            config.alerts.interval_ms = 100;
            config.alerts.window_secs = 3;
            config.alerts.module_faults = 3;
            // `hostile-trap` runs live: admission reports it, never blocks here.
            config.modules.admission = tongdao::modules::AdmissionMode::Report;
        })
        .await;
        let key = server.new_partner("acme").await;
        let (status, body) = server.upload(&key, common::guest("hostile-trap")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        for _ in 0..3 {
            let (status, body) = server
                .post("/v1/modules/hostile-trap/bulletin", &key, json!({}))
                .await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::UNPROCESSABLE_ENTITY, "trap"),
                "{body}"
            );
        }
        let alert = wait_alert(&server, &key, "module-faults", true).await;
        assert_measured(&alert, "warning", "count", 3, true);
        assert_eq!(alert["value"], 3);
        assert!(
            alert["detail"].as_str().unwrap().contains("hostile-trap"),
            "{alert}"
        );
        let partner = tongdao::partners::get(&server.platform.store, "acme")
            .await
            .unwrap()
            .id;
        assert_eq!(alert["partner_id"], partner);
        wait_cleared(&server, &key, &alert).await;
        server.stop().await;
    }
}

/// Issue 15 item 3, `volume-spike`: a partner that queued 10 MTs in the
/// hour before the window queues 20 within it: 20 ÷ (10 × 2 s ÷ 3600 s) =
/// 360,000 % of its own baseline, past `volume_spike_pct`; the alert opens with
/// exactly that, only for that partner, and clears itself when the burst leaves
/// the window. Another partner with the same burst and no history has no
/// baseline to compare with and gets no alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_a_volume_spike_against_the_partners_baseline_opens_and_clears() {
    for db in databases().await {
        let server = Server::start_with(db, |config| {
            config.alerts.interval_ms = 100;
            config.alerts.window_secs = 2;
            config.alerts.baseline_hours = 1;
            config.alerts.volume_min = 20;
            config.alerts.volume_spike_pct = 500;
        })
        .await;
        let key = server.new_partner("acme").await;
        let rival = server.new_partner("rival").await;
        let store = server.platform.store.clone();
        let id = async |name: &str| tongdao::partners::get(&store, name).await.unwrap().id;
        let (acme_id, rival_id) = (id("acme").await, id("rival").await);
        // MTs as the outbox writes them (final, so the relay leaves them be), in
        // id order of their time, one transaction per batch.
        let write = async |partner: i64, at: &[i64]| {
            let mut tx = store.begin_write().await.unwrap();
            for at in at {
                sqlx::query(
                    "INSERT INTO messages (partner_id, service, recipient, operator, text, content_sha256,
                        segments, charge_plan, is_test, status, attempts, next_attempt_at, expires_at,
                        created_at, updated_at, done_at, price_fen, basis)
                     VALUES ($1, 'XZ', '13800000010', 'mobile', 'text', 'sha', 1, 'per-message', 0,
                        'delivered', 1, $2, $2, $2, $2, $2, 0, 'reply')",
                )
                .bind(partner)
                .bind(at)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        };
        let now = tongdao::store::now_ms();
        let history: Vec<i64> = (0..10).map(|i| now - 3_000_000 + i * 60_000).collect();
        write(acme_id, &history).await;
        let burst = vec![tongdao::store::now_ms(); 20];
        write(acme_id, &burst).await;
        write(rival_id, &burst).await;

        let alert = wait_alert(&server, &key, "volume-spike", true).await;
        assert_measured(&alert, "warning", "pct-of-baseline", 500, true);
        assert_eq!(alert["value"], 20_i64 * 100 * 3_600_000 / (10 * 2000));
        assert_eq!(alert["partner_id"], acme_id);
        let (_, all) = server.get("/v1/alerts", ADMIN_KEY).await;
        let spikes: Vec<&Value> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "volume-spike")
            .collect();
        assert_eq!(spikes.len(), 1, "only acme's: {all}");
        let (_, theirs) = server.get("/v1/alerts", &rival).await;
        assert!(
            !theirs["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["kind"] == "volume-spike"),
            "{theirs}"
        );
        wait_cleared(&server, &key, &alert).await;
        server.stop().await;
    }
}

/// Issue 15 item 3 with N replicas: two platforms on one PostgreSQL
/// database, where replica A reaches the SMSC and replica B's address for the
/// operator leads nowhere. B's binds are down, A's up: every evaluator judges
/// from both replicas' bind heartbeats, so no `bind-down` opens (none flaps open
/// and shut between the replicas). When the SMSC stops, no replica is bound and
/// one critical alert opens, naming both replicas; the SMSC back on A, it clears.
/// SQLite is one process only: PostgreSQL is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_bind_down_is_judged_across_replicas() {
    let Some(url) = databases().await.into_iter().flatten().next() else {
        return;
    };
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let sim_addr = sim.local_addr();
    let replica = async |address: String| {
        Server::start_with(Some(url.clone()), |config| {
            config.alerts.interval_ms = 100;
            config.alerts.bind_down_secs = 1;
            let mut op = common::sim_operator(address);
            op.name = "mobile".into();
            op.reconnect_initial_ms = 50;
            op.reconnect_max_ms = 200;
            config.operators = vec![op];
        })
        .await
    };
    let a = replica(sim_addr.to_string()).await;
    let b = replica(closed_port().to_string()).await;
    let pool = a.platform.store.pool().clone();
    poll_until(WAIT, async || {
        match (bind_state(&a).await.as_str(), bind_state(&b).await.as_str()) {
            ("bound", b) if b != "bound" => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    // Both evaluators have judged, more than once, with B down for longer than
    // `bind_down_secs`: B's heartbeat says since when, and both wrote theirs later.
    poll_until(WAIT, async || {
        let beats: Vec<(i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT bound, down_since, updated_at FROM bind_heartbeats WHERE operator = 'mobile'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let since = beats.iter().find_map(|(_, s, _)| *s);
        let oldest_beat = beats.iter().map(|(_, _, at)| *at).min();
        match (beats.len(), since, oldest_beat) {
            (2, Some(since), Some(beat)) if beat - since >= 2_000 => Ok(()),
            _ => Err(format!("heartbeats {beats:?}")),
        }
    })
    .await;
    let bind_down = async || -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM alerts WHERE kind = 'bind-down'")
            .fetch_one(&pool)
            .await
            .unwrap();
        n
    };
    assert_eq!(
        bind_down().await,
        0,
        "a replica with its binds down raised an alert the other is up for"
    );

    sim.shutdown();
    let key = a.new_partner("acme").await;
    let alert = wait_alert(&a, &key, "bind-down", true).await;
    assert_measured(&alert, "critical", "secs", 1, true);
    assert_eq!(alert["operator"], "mobile");
    assert!(
        alert["detail"].as_str().unwrap().contains("2 replica"),
        "{alert}"
    );
    let back = sim_again(sim_addr).await;
    wait_cleared(&b, &key, &alert).await;
    assert_eq!(
        bind_down().await,
        1,
        "one alert, opened once and cleared once"
    );
    back.shutdown();
    a.stop().await;
    b.stop().await;
}

/// SECURITY.md (a stolen webhook secret): after a rotation the old secret signs
/// only for `[webhooks] rotation_grace_secs`; once the grace is over, deliveries
/// verify with the new secret and no longer with the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_out_secret_stops_signing_after_the_grace() {
    for db in databases().await {
        let env = Env::start(db, |config| {
            fast_webhooks(config);
            config.webhooks.rotation_grace_secs = 1;
        })
        .await;
        let server = &env.server;
        let receiver = Receiver::default();
        receiver.status.store(200, Ordering::SeqCst);
        let addr = closed_port();
        let _serving = receiver.serve(addr).await;
        let (status, created) = server
            .post(
                "/v1/webhooks",
                &env.acme,
                json!({"url": format!("http://{addr}/hook")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let old_secret = created["secret"].as_str().unwrap().to_string();
        let service = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "03"))
            .await;
        let (status, rotated) = server
            .post("/v1/webhook-secret/rotate", &env.acme, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let new_secret = rotated["secret"].as_str().unwrap().to_string();
        let rotated_at = tongdao::store::now_ms();
        // The grace is one second: wait for the clock, not for a fixed time.
        poll_until(WAIT, async || {
            if tongdao::store::now_ms() > rotated_at + 1_500 {
                Ok(())
            } else {
                Err("the grace is not over yet".to_string())
            }
        })
        .await;
        let seen = receiver.hits().len();
        for action in ["suspend", "resume"] {
            let (status, body) = server
                .post(
                    &format!("/v1/admin/services/{service}/{action}"),
                    ADMIN_KEY,
                    json!({"reason": "rotation test"}),
                )
                .await;
            assert!(status.is_success(), "{body}");
        }
        let late = poll_until(WAIT, async || {
            let hits = receiver.hits();
            // Every request since the grace ended (the events came after it).
            let late: Vec<Hit> = hits[seen..].to_vec();
            if late.len() >= 2 {
                Ok(late)
            } else {
                Err(format!("{} deliveries after the grace", late.len()))
            }
        })
        .await;
        for hit in &late {
            assert!(verifies(&new_secret, hit), "the new secret signs");
            assert!(
                !verifies(&old_secret, hit),
                "the old secret still signs after its grace"
            );
        }
        env.stop().await;
    }
}

/// SECURITY.md gap 13 (issue 18 item 4), R-2.7: the address rule holds when the
/// platform delivers, not only when an endpoint is registered. An endpoint whose
/// host is a *name* (`localhost`, which resolves to 127.0.0.1) is registered while
/// `[webhooks] allow_private` is on; the platform restarts with it off (as after an
/// operator's change). An event for the partner is then not delivered: a real
/// receiver listening on that loopback port gets no request and no connection, and
/// the endpoint's delivery log says why (the URL is checked again at every attempt
/// and its host is not public). Both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item18_a_name_resolving_to_loopback_gets_nothing_when_private_addresses_are_off() {
    for db in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let url = db.unwrap_or_else(|| format!("sqlite://{}/hooks.db", dir.path().display()));
        // A receiver on loopback that also counts bare TCP connections.
        let receiver = Receiver::default();
        receiver.status.store(200, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(receiver.clone());
        let serving = {
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let app = app.clone();
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(
                                hyper_util::rt::TokioIo::new(tcp),
                                hyper_util::service::TowerToHyperService::new(app),
                            )
                            .await;
                    });
                }
            })
        };
        let hook_url = format!("http://localhost:{port}/hook");

        // Registered while private addresses are allowed.
        let server = Server::start_with(Some(url.clone()), |config| {
            fast_webhooks(config);
        })
        .await;
        let acme = server.new_partner("acme").await;
        let (status, created) = server
            .post("/v1/webhooks", &acme, json!({"url": hook_url}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let endpoint = created["id"].as_i64().unwrap();
        server.stop().await;

        // The platform now refuses private addresses: the same name at delivery.
        let server = Server::start_with(Some(url.clone()), |config| {
            fast_webhooks(config);
            config.webhooks.allow_private = false;
        })
        .await;
        let (status, body) = server
            .post(
                "/v1/admin/partners/acme/suspend",
                ADMIN_KEY,
                json!({"reason": "webhook address test"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let delivery = poll_until(WAIT, async || {
            let (status, page) = server
                .get(
                    &format!("/v1/webhooks/{endpoint}/deliveries?partner=acme"),
                    ADMIN_KEY,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            match page["items"].as_array().unwrap().first() {
                Some(d) if d["attempts"].as_i64().unwrap_or(0) >= 2 => Ok(d.clone()),
                other => Err(format!("no failed attempts yet: {other:?}")),
            }
        })
        .await;
        assert_eq!(delivery["kind"], "suspension", "{delivery}");
        assert_eq!(delivery["status"], "pending", "{delivery}");
        assert!(delivery["last_status_code"].is_null(), "{delivery}");
        let why = delivery["last_error"].as_str().unwrap();
        assert!(why.contains("non-public address: localhost"), "{why}");
        assert!(receiver.hits().is_empty(), "{:?}", receiver.hits());
        assert_eq!(
            connections.load(Ordering::SeqCst),
            0,
            "a connection was made"
        );
        server.stop().await;
        serving.abort();
    }
}
