//! Shared by the host's integration tests: real stores (SQLite always, PostgreSQL
//! when `TONGDAO_TEST_DATABASE_URL` is set) and the compiled guest components.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tongdao::config::RuntimeConfig;
use tongdao::modules::Registry;
use tongdao::partners::{self, Partner};
use tongdao::runtime::Runtime;
use tongdao::store::Store;

/// A store under test, with what keeps it alive.
pub struct TestStore {
    pub name: &'static str,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh SQLite store in a temporary directory.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    TestStore {
        name: "sqlite",
        store,
        _dir: Some(dir),
    }
}

/// A fresh PostgreSQL database (one per call), if `TONGDAO_TEST_DATABASE_URL` is set.
pub async fn postgres() -> Option<TestStore> {
    let Ok(base) = std::env::var("TONGDAO_TEST_DATABASE_URL") else {
        skip(
            "the PostgreSQL half of this test: TONGDAO_TEST_DATABASE_URL is not set (.ci/run sets it)",
        );
        return None;
    };
    let name = format!("tongdao_test_{:016x}", rand_u64());
    let admin = Store::connect(&base, 1)
        .await
        .expect("connect to TONGDAO_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await
        .expect("create test database");
    admin.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("database url with a database name");
    let store = Store::connect(&format!("{prefix}/{name}"), 4)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some(TestStore {
        name: "postgres",
        store,
        _dir: None,
    })
}

/// Say that part of a test is skipped because an outside service (PostgreSQL, a
/// Python toolchain) is missing. Under `CI` a skip is a failure: CI provides them all.
pub fn skip(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide what this test needs, but it is missing: {what}"
    );
    // Written straight to stderr so it shows even when the harness captures output.
    let _ = writeln!(std::io::stderr(), "NOTE: SKIPPED {what}");
}

/// SQLite, plus PostgreSQL when configured: every store test runs on both.
pub async fn stores() -> Vec<TestStore> {
    let mut out = vec![sqlite().await];
    out.extend(postgres().await);
    out
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A compiled guest or fixture component, by crate name.
pub fn guest(name: &str) -> Vec<u8> {
    let path = tongdao_test_programs::artifact(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("guest {name} at {}: {e}", path.display()))
}

/// Test limits: the defaults, with a short deadline so loops end fast.
pub fn limits() -> RuntimeConfig {
    RuntimeConfig {
        call_timeout_ms: 50,
        max_concurrent_calls: 32,
        ..RuntimeConfig::default()
    }
}

pub fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new(limits(), None).unwrap())
}

pub fn registry(store: &Store) -> Registry {
    Registry::new(store.clone(), runtime())
}

/// Registry settings for tests that run hostile fixtures live to prove the
/// sandbox contains them at run time: admission reports (issue 17 item 1) but
/// does not keep them from being activated.
pub fn reporting() -> tongdao::modules::RegistryConfig {
    tongdao::modules::RegistryConfig {
        admission: tongdao::modules::AdmissionMode::Report,
        ..tongdao::modules::RegistryConfig::default()
    }
}

pub async fn partner(store: &Store, name: &str) -> Partner {
    partners::create(store, name, name).await.unwrap().0
}

/// Register an opaque subscriber id for a partner (what subscriptions will do).
pub async fn subscriber(store: &Store, partner: &Partner, id: &str) {
    sqlx::query("INSERT INTO subscribers (id, partner_id, created_at) VALUES ($1, $2, 0)")
        .bind(id)
        .bind(partner.id)
        .execute(store.pool())
        .await
        .unwrap();
}

/// How many MTs are in `status`.
pub async fn count_messages(store: &Store, status: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages WHERE status = $1")
        .bind(status)
        .fetch_one(store.pool())
        .await
        .unwrap();
    n
}

/// How many MTs match an SQL condition on `messages`.
pub async fn count_where(store: &Store, condition: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM messages WHERE {condition}"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    n
}

/// Compliance settings for relay-level tests: no quiet hours, no signature added,
/// long texts allowed (those rules have their own tests).
/// One operator, `mobile`, for every `13…` number, with `binds` binds (window 50)
/// to the simulator at `address`; the platform's short code is its source address.
pub fn sim_operator(address: String, binds: u32) -> tongdao::config::OperatorConfig {
    tongdao::config::OperatorConfig {
        name: "mobile".into(),
        address,
        system_id: "td-mobile".into(),
        password: "pw".into(),
        system_type: String::new(),
        binds,
        window: 50,
        tps: 0,
        prefixes: vec!["13".into()],
        source_addr: tongdao::mo::DialogueConfig::default().short_code,
        concat: tongdao::config::ConcatMode::Udh,
        ..Default::default()
    }
}

pub fn relay_compliance(store: &Store) -> tongdao::compliance::Compliance {
    tongdao::compliance::Compliance::new(
        store.clone(),
        tongdao::compliance::ComplianceConfig {
            quiet_hours: String::new(),
            signature: tongdao::compliance::settings::SignatureMode::Off,
            max_segments: 255,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Service `code` of `partner_id` on `terms`, served by `module`, declared,
/// submitted and approved through the product's workflow (`services`). Returns its id.
pub async fn approved(
    store: &Store,
    partner_id: i64,
    code: &str,
    module: Option<&str>,
    terms: &tongdao::services::ServiceTerms,
) -> i64 {
    use tongdao::services;
    let view = services::create(
        store,
        partner_id,
        "test",
        code,
        module,
        terms,
        &terms.operators,
    )
    .await
    .unwrap();
    services::submit(store, partner_id, view.id, "test")
        .await
        .unwrap();
    services::decide(store, view.id, true, "admin", "test")
        .await
        .unwrap();
    view.id
}

/// Recipients who opted in: a free service of partner `audience`, approved
/// through the product's workflow; [`Audience::mt`] gives a number an active
/// subscription (inserted with SQL: the opt-in dialogue has its own end-to-end
/// tests) and returns a push to it under that subscription.
pub struct Audience {
    pub partner_id: i64,
    pub service_id: i64,
}

impl Audience {
    pub async fn new(store: &Store, operators: &[&str]) -> Self {
        use tongdao::services::{FeeType, ServiceTerms};
        let partner = partner(store, "audience").await;
        let terms = ServiceTerms {
            name: "relay test".into(),
            description: String::new(),
            keywords: vec!["测试".into()],
            fee_type: FeeType::Free,
            price_fen: 0,
            operators: operators.iter().map(|s| (*s).to_string()).collect(),
            monthly_max_messages: None,
            number_ext: "99".into(),
        };
        Self {
            partner_id: partner.id,
            service_id: approved(store, partner.id, "RT", None, &terms).await,
        }
    }

    /// The active subscription of `number` (created if it has none).
    pub async fn subscribe(&self, store: &Store, number: &str) -> i64 {
        let number =
            tongdao::relay::routing::normalize_msisdn(number).unwrap_or(number.to_string());
        let found: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM subscriptions WHERE service_id = $1 AND msisdn = $2 AND status = 'active'",
        )
        .bind(self.service_id)
        .bind(&number)
        .fetch_optional(store.pool())
        .await
        .unwrap();
        if let Some((id,)) = found {
            return id;
        }
        let subscriber = format!("s{number}");
        sqlx::query(
            "INSERT INTO subscribers (id, partner_id, msisdn, created_at) VALUES ($1, $2, $3, 0)",
        )
        .bind(&subscriber)
        .bind(self.partner_id)
        .bind(&number)
        .execute(store.pool())
        .await
        .unwrap();
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO subscriptions (partner_id, service_id, subscriber_id, msisdn, status, source, fee_type, price_fen, requested_at, activated_at)
             VALUES ($1, $2, $3, $4, 'active', 'api', 'free', 0, 0, 0) RETURNING id",
        )
        .bind(self.partner_id)
        .bind(self.service_id)
        .bind(&subscriber)
        .bind(&number)
        .fetch_one(store.pool())
        .await
        .unwrap();
        id
    }

    /// A push of `text` to `number`, under its subscription.
    pub async fn mt(
        &self,
        store: &Store,
        number: impl AsRef<str>,
        text: String,
    ) -> tongdao::relay::NewMessage {
        let number = number.as_ref();
        let subscription = self.subscribe(store, number).await;
        tongdao::relay::NewMessage {
            partner_id: Some(self.partner_id),
            service: Some("RT".into()),
            service_id: Some(self.service_id),
            recipient: number.to_string(),
            text,
            charge_plan: tongdao::relay::ChargePlan::Free,
            price_fen: 0,
            basis: tongdao::relay::Basis::Subscription(subscription),
            sender: None,
            module_version_id: None,
            input_sha256: None,
            operator: None,
        }
    }
}

/// How often [`wait_until`] looks again.
pub const POLL: Duration = Duration::from_millis(20);

/// `POST url` as `key` (bearer) with the JSON `body`; the answer's JSON, whatever
/// its status (the caller reads an `error` or the object).
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    http.post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Wait until `check` holds, looking every [`POLL`]; panics naming `what` after
/// `timeout`. For states only: a test never waits for time itself.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// What the duplicate check of found: the extra copies the SMSC got, the
/// numbers among them with no MT marked `resent_unknown`, and how many MTs are marked.
#[derive(Debug, Clone, Default)]
pub struct Duplicates {
    pub duplicates: usize,
    pub unmarked_numbers: Vec<String>,
    pub marked: usize,
}

impl Duplicates {
    /// Every duplicate is covered: each number the SMSC got more than once has a
    /// marked MT, and there are no more duplicates than marked MTs.
    pub fn all_marked(&self) -> bool {
        self.unmarked_numbers.is_empty() && self.duplicates <= self.marked
    }
}

/// The duplicate check of, per number, without judging: see
/// [`assert_duplicates_are_marked`].
pub async fn duplicates_at_smsc(
    store: &Store,
    per_destination: &HashMap<String, usize>,
) -> Duplicates {
    let marked: Vec<(String,)> =
        sqlx::query_as("SELECT recipient FROM messages WHERE resent_unknown = 1")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let marked_numbers: HashSet<String> = marked.iter().map(|(r,)| r.clone()).collect();
    let mut unmarked_numbers: Vec<String> = per_destination
        .iter()
        .filter(|(number, count)| **count > 1 && !marked_numbers.contains(*number))
        .map(|(number, _)| number.clone())
        .collect();
    unmarked_numbers.sort();
    Duplicates {
        duplicates: per_destination.values().map(|&c| c.saturating_sub(1)).sum(),
        unmarked_numbers,
        marked: marked.len(),
    }
}

/// The duplicate check of, per number: every number the SMSC got more than
/// once is the recipient of an MT the relay marked `resent_unknown` (its
/// unknown-outcome rule), and the duplicates are no more than those MTs. Returns the
/// duplicates seen.
pub async fn assert_duplicates_are_marked(
    store: &Store,
    per_destination: &HashMap<String, usize>,
) -> usize {
    let found = duplicates_at_smsc(store, per_destination).await;
    if let Some(number) = found.unmarked_numbers.first() {
        panic!(
            "{number} got {} MTs at the SMSC but none of its MTs is marked resent_unknown",
            per_destination[number]
        );
    }
    assert!(
        found.duplicates <= found.marked,
        "{} duplicates at the SMSC but only {} MTs resent after an unknown outcome",
        found.duplicates,
        found.marked
    );
    found.duplicates
}

/// `tongdao smsc-sim` (SMPP 3.4) as a process of its own, on free loopback ports,
/// with its HTTP hook (`POST /mo` sends an MO as a handset would, `GET /stats` reads
/// its counters, `POST /faults` changes its faults, `GET /destinations` counts what
/// each number got). Killed when dropped. One launcher for the fault suite and the
/// process benchmarks.
pub struct SimProcess {
    child: std::process::Child,
    /// The gateway's listener (SMPP, CMPP or SGIP, as `--protocol` says),
    /// `host:port`, for `[[operators]] address`.
    pub address: String,
    /// The hook's base URL, `http://host:port`.
    pub hook: String,
    http: reqwest::Client,
}

impl SimProcess {
    /// Start the simulator with `args` (its command-line flags). Its later output is
    /// drained so a late line never meets a closed pipe.
    pub fn start(args: &[String]) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let mut child = Command::new(env!("CARGO_BIN_EXE_tongdao"))
            .args([
                "smsc-sim",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut address = None;
        let hook = loop {
            let line = lines
                .next()
                .expect("the simulator exited before it listened")
                .unwrap();
            // "SMSC simulator (SMPP 3.4) on …", "ISMG simulator (…) on …", "SMG …".
            if let Some((_, addr)) = line.split_once(") on ")
                && line.contains(" simulator (")
            {
                address = Some(addr.trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("MO hook on ") {
                break rest.split(':').take(3).collect::<Vec<_>>().join(":");
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            address: address.expect("the simulator printed its address first"),
            hook,
            http: reqwest::Client::new(),
        }
    }

    /// The process id (for `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send an MO from `from` to `to` through the hook.
    ///
    /// # Errors
    /// The hook refused it or could not be reached.
    pub async fn mo(&self, from: &str, to: &str, text: &str) -> Result<(), String> {
        let response = self
            .http
            .post(format!("{}/mo", self.hook))
            .json(&serde_json::json!({ "from": from, "to": to, "text": text }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "{}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ))
        }
    }

    /// `GET path` on the hook, its JSON answer.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(format!("{}{path}", self.hook))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET /stats`: the counters (`accepted`, `receipts_acked`, `mos_sent`, …).
    pub async fn stats(&self) -> HashMap<String, u64> {
        self.get("/stats").await
    }

    /// One counter of [`Self::stats`] (0 if absent).
    pub async fn counter(&self, name: &str) -> u64 {
        self.stats().await.get(name).copied().unwrap_or(0)
    }

    /// `POST /faults`: the faults from now on (absent shares are 0).
    pub async fn set_faults(&self, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .http
            .post(format!("{}/faults", self.hook))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "POST /faults {body}");
        response.json().await.unwrap()
    }

    /// `GET /destinations`: accepted submits per number.
    pub async fn destinations(&self) -> HashMap<String, usize> {
        self.get("/destinations").await
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the real `tongdao serve` binary with `dir/tongdao.toml`, wait until it
/// listens, and return the process and its API base URL. Its standard output keeps
/// being drained, so a late print never meets a closed pipe; its log (warnings and
/// errors) is appended to `dir/server.log`, for whoever reads a failure.
pub fn start_server(dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tongdao"))
        .args(["serve", "--config"])
        .arg(dir.join("tongdao.toml"))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("server.log"))
                .map_or_else(|_| Stdio::null(), Stdio::from),
        )
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server exited before it listened")
            .unwrap();
        if let Some(url) = line.strip_prefix("tongdao listening on ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

/// The URL of a fresh PostgreSQL database (one per call) for a `tongdao serve`
/// process, if `TONGDAO_TEST_DATABASE_URL` is set (otherwise the skip is reported).
pub async fn postgres_url() -> Option<String> {
    let Ok(base) = std::env::var("TONGDAO_TEST_DATABASE_URL") else {
        skip(
            "the PostgreSQL half of this test: TONGDAO_TEST_DATABASE_URL is not set (.ci/run sets it)",
        );
        return None;
    };
    let name = format!("tongdao_test_{:016x}", rand_u64());
    let admin = Store::connect(&base, 1)
        .await
        .expect("connect to TONGDAO_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await
        .expect("create test database");
    admin.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("database url with a database name");
    Some(format!("{prefix}/{name}"))
}
