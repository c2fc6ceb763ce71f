//! A platform wired to a real SMSC simulator over SMPP on loopback, with partner
//! `acme` and the example modules: users are the simulator's handsets.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tongdao::config::{Config, OperatorConfig};
use tongdao_smpp::sim::{Sim, SimConfig, SimHandle};

use super::{ADMIN_KEY, Server, guest, poll_until};

/// How long the harness waits for a state before the test fails.
const WAIT: Duration = Duration::from_secs(20);

pub const SHORT_CODE: &str = "10661234";

/// A platform wired to a simulator, with partner `acme` and its modules uploaded.
pub struct Env {
    pub server: Server,
    pub sim: SimHandle,
    pub acme: String,
}

impl Env {
    pub async fn start(db: Option<String>, adjust: impl FnOnce(&mut Config)) -> Self {
        let sim = Sim::start(SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let address = sim.local_addr().to_string();
        let server = Server::start_with(db, |config| {
            config.compliance.quiet_hours = String::new();
            config.dialogue.poll_ms = 50;
            config.operators = vec![OperatorConfig {
                name: "mobile".into(),
                address,
                system_id: "td".into(),
                password: "pw".into(),
                system_type: String::new(),
                binds: 1,
                window: 20,
                tps: 0,
                prefixes: vec!["13".into(), "15".into(), "18".into()],
                source_addr: SHORT_CODE.into(),
                concat: tongdao::config::ConcatMode::Udh,
                ..Default::default()
            }];
            adjust(config);
        })
        .await;
        let acme = server.new_partner("acme").await;
        for name in ["horoscope", "quiz", "jokes"] {
            let (status, body) = server.upload(&acme, guest(name)).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        Self { server, sim, acme }
    }

    /// Declare, submit and approve a service; returns its id.
    pub async fn approved_service(&self, key: &str, code: &str, module: &str, terms: Value) -> i64 {
        let mut body = terms;
        body["code"] = json!(code);
        body["module"] = json!(module);
        let (status, created) = self.server.post("/v1/services", key, body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_i64().unwrap();
        let (status, body) = self
            .server
            .post(&format!("/v1/services/{id}/submit"), key, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = self
            .server
            .post(
                &format!("/v1/admin/services/{id}/approve"),
                ADMIN_KEY,
                json!({"reason": "tested on the test numbers"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id
    }

    /// The partner subscribes `msisdn` to `service` through the API.
    pub async fn subscribe(&self, service: i64, msisdn: &str) -> (StatusCode, Value) {
        self.server
            .post(
                &format!("/v1/services/{service}/subscriptions"),
                &self.acme,
                json!({ "msisdn": msisdn }),
            )
            .await
    }

    /// A user sends `text` to `to` (a service number or the short code).
    pub fn mo(&self, from: &str, to: &str, text: &str) {
        self.sim.send_mo(from, to, text).unwrap();
    }

    /// Texts that reached `user` so far, in order.
    pub fn inbox(&self, user: &str) -> Vec<String> {
        self.sim
            .messages()
            .into_iter()
            .filter(|m| m.destination_addr == user)
            .map(|m| m.text)
            .collect()
    }

    /// Wait until `user` has received `n` messages; returns them.
    pub async fn wait_inbox(&self, user: &str, n: usize) -> Vec<String> {
        poll_until(WAIT, async || {
            let inbox = self.inbox(user);
            if inbox.len() >= n {
                Ok(inbox)
            } else {
                Err(format!("{user} received {} of {n}: {inbox:?}", inbox.len()))
            }
        })
        .await
    }

    /// Wait until the MO `text` from `source` is stored and routed; returns its id.
    pub async fn wait_mo(&self, source: &str, text: &str) -> i64 {
        poll_until(WAIT, async || {
            let found: Option<(i64, String)> = sqlx::query_as(
                "SELECT id, status FROM mo_messages WHERE source = $1 AND text = $2",
            )
            .bind(source)
            .bind(text)
            .fetch_optional(self.server.platform.store.pool())
            .await
            .unwrap();
            match found {
                Some((id, status)) if status == "routed" => Ok(id),
                other => Err(format!("MO {text} not routed: {other:?}")),
            }
        })
        .await
    }

    /// Wait until the pending confirmation of `msisdn` to `service` is past its
    /// stored deadline (`confirm_by`): the moment a `Y` no longer confirms.
    pub async fn wait_confirm_window_over(&self, msisdn: &str, service: i64) {
        let (confirm_by,): (i64,) = sqlx::query_as(
            "SELECT confirm_by FROM subscriptions WHERE msisdn = $1 AND service_id = $2",
        )
        .bind(msisdn)
        .bind(service)
        .fetch_one(self.server.platform.store.pool())
        .await
        .unwrap();
        poll_until(WAIT, async || {
            let now = tongdao::store::now_ms();
            if now > confirm_by {
                Ok(())
            } else {
                Err(format!("now {now} is not past confirm_by {confirm_by}"))
            }
        })
        .await
    }

    /// Wait until no MT to `user` is queued or being submitted and every submitted
    /// one has its answer stored: what reached the phone is all it will get.
    pub async fn wait_outbox_settled(&self, user: &str) {
        poll_until(WAIT, async || {
            let (open,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM messages WHERE recipient = $1
                   AND status NOT IN ('submitted', 'delivered', 'failed', 'expired', 'cancelled')",
            )
            .bind(user)
            .fetch_one(self.server.platform.store.pool())
            .await
            .unwrap();
            let (sent,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM messages WHERE recipient = $1 AND status IN ('submitted', 'delivered')",
            )
            .bind(user)
            .fetch_one(self.server.platform.store.pool())
            .await
            .unwrap();
            if open == 0 && usize::try_from(sent).unwrap() == self.inbox(user).len() {
                Ok(())
            } else {
                Err(format!("{open} MTs to {user} still open"))
            }
        })
        .await
    }

    /// Wait until every stored MO has been routed.
    pub async fn wait_routed(&self) {
        poll_until(WAIT, async || {
            let (open,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM mo_messages WHERE status <> 'routed'")
                    .fetch_one(self.server.platform.store.pool())
                    .await
                    .unwrap();
            if open == 0 {
                Ok(())
            } else {
                Err(format!("{open} MOs not routed"))
            }
        })
        .await
    }

    /// Wait until push run `run` of `acme` is in a final state; returns its body.
    pub async fn wait_run_final(&self, run: i64) -> Value {
        poll_until(WAIT, async || {
            let (_, body) = self
                .server
                .get(&format!("/v1/runs/{run}"), &self.acme)
                .await;
            if ["completed", "failed", "cancelled", "expired"]
                .contains(&body["status"].as_str().unwrap())
            {
                Ok(body)
            } else {
                Err(format!("run {run}: {body}"))
            }
        })
        .await
    }

    pub async fn subscriptions(&self, service: i64) -> Vec<Value> {
        let (status, body) = self
            .server
            .get(&format!("/v1/services/{service}/subscriptions"), &self.acme)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    pub async fn stop(self) {
        self.server.stop().await;
        self.sim.shutdown();
    }
}

pub fn monthly(price: i64, keyword: &str, ext: &str) -> Value {
    json!({
        "name": "星座运势", "description": "每日星座运势", "keywords": [keyword],
        "fee_type": "monthly", "price_fen": price, "operators": ["mobile"],
        "monthly_max_messages": 31, "number_ext": ext
    })
}

pub fn free(keyword: &str, ext: &str) -> Value {
    json!({
        "name": format!("每日{keyword}"), "keywords": [keyword], "fee_type": "free", "price_fen": 0,
        "operators": ["mobile"], "number_ext": ext
    })
}

pub fn per_message(price: i64, keyword: &str, ext: &str) -> Value {
    json!({
        "name": "每日答题", "keywords": [keyword], "fee_type": "per-message", "price_fen": price,
        "operators": ["mobile"], "number_ext": ext
    })
}
