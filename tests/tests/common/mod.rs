//! The harness the end-to-end tests share: a real platform serving HTTP on a
//! loopback port (SQLite or PostgreSQL), and its clients.

#![allow(dead_code, clippy::unwrap_used)]

pub mod env;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tongdao::config::Config;
use tongdao::server::{Platform, serve_until};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// How often a waiting test looks at the state again.
pub const POLL: Duration = Duration::from_millis(20);

/// Wait for a state, never for a time: `check` is asked every [`POLL`] until it
/// returns `Ok`; after `timeout` the test fails with the last `Err`, which
/// describes the state seen.
pub async fn poll_until<T>(
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                started.elapsed() < timeout,
                "timed out after {timeout:?}: {seen}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

pub struct Server {
    pub platform: Platform,
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(database_url: Option<String>) -> Self {
        Self::start_with(database_url, |_| {}).await
    }

    pub async fn start_with(
        database_url: Option<String>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.store.data_dir = dir.path().to_path_buf();
        if let Some(url) = database_url {
            config.store.url = url;
        }
        config.admin.key = Some(ADMIN_KEY.into());
        config.http.max_module_bytes = 4 * 1024 * 1024;
        config.http.max_json_bytes = 64 * 1024;
        config.runtime.call_timeout_ms = 50;
        adjust(&mut config);
        let platform = Platform::open(&config).await.unwrap();
        let served = platform.clone();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_until(&config, &served, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            platform,
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let req = match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON body ({status}): {text}"));
        (status, body)
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.send(self.http.get(self.url(path)), Some(key)).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path)).json(&body), Some(key))
            .await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.put(self.url(path)).json(&body), Some(key))
            .await
    }

    pub async fn delete(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(self.url(path)), Some(key)).await
    }

    pub async fn upload(&self, key: &str, wasm: Vec<u8>) -> (StatusCode, Value) {
        let req = self
            .http
            .post(self.url("/v1/modules"))
            .header("content-type", "application/wasm")
            .body(wasm);
        self.send(req, Some(key)).await
    }

    /// Announce a body over the limit and send only its start: the server must answer
    /// 413 from the length alone. (A client sending the whole body may instead see
    /// the connection close under it, which is a race of the test, not an answer.)
    pub async fn oversize_upload(&self, key: &str, length: usize) -> (StatusCode, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/modules HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/wasm\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[0u8; 1024]).await.unwrap();
        // Read the head, then as much body as it announces: the server may keep the
        // connection open to drain the rest of the announced body.
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, body) = loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a full response");
            response.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&response).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break (head.to_string(), body.to_string());
                }
            }
        };
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        (
            StatusCode::from_u16(status).unwrap(),
            serde_json::from_str(&body).unwrap_or(Value::Null),
        )
    }

    /// Declare a service for the partner of `key` (`terms`: the body of `POST
    /// /v1/services`), submit it and have the admin approve it; returns its id.
    pub async fn approved_service(&self, key: &str, terms: Value) -> i64 {
        let (status, created) = self.post("/v1/services", key, terms).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_i64().unwrap();
        let (status, body) = self
            .post(&format!("/v1/services/{id}/submit"), key, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = self
            .post(
                &format!("/v1/admin/services/{id}/approve"),
                ADMIN_KEY,
                json!({"reason": "tested on the test numbers"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id
    }

    pub async fn new_partner(&self, name: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/partners",
                ADMIN_KEY,
                json!({"name": name, "display_name": name}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["api_key"].as_str().unwrap().to_string()
    }
}

/// The operator `mobile` on an SMSC simulator at `address`: numbers `13…`, one
/// bind, short code `10661234`.
pub fn sim_operator(address: String) -> tongdao::config::OperatorConfig {
    tongdao::config::OperatorConfig {
        name: "mobile".into(),
        address,
        system_id: "td".into(),
        password: "pw".into(),
        system_type: String::new(),
        binds: 1,
        window: 10,
        tps: 0,
        prefixes: vec!["13".into()],
        source_addr: "10661234".into(),
        concat: tongdao::config::ConcatMode::Udh,
        ..Default::default()
    }
}

pub fn guest(name: &str) -> Vec<u8> {
    std::fs::read(tongdao_test_programs::artifact(name)).unwrap()
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

/// Database URLs to run against: SQLite (the server's default) and PostgreSQL.
pub async fn databases() -> Vec<Option<String>> {
    let mut out = vec![None];
    match std::env::var("TONGDAO_TEST_DATABASE_URL") {
        Ok(base) => {
            // 64 random bits: tests of one binary run at once, and databases of
            // earlier runs (on a server that outlives them) keep their names.
            let name = format!("tongdao_api_{:016x}", rand_u64());
            let admin = tongdao::store::Store::connect(&base, 1).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(admin.pool())
                .await
                .unwrap();
            admin.close().await;
            let (prefix, _) = base.rsplit_once('/').unwrap();
            out.push(Some(format!("{prefix}/{name}")));
        }
        Err(_) => skip("the PostgreSQL half of this test: TONGDAO_TEST_DATABASE_URL is not set"),
    }
    out
}

/// Say that part of a test is skipped because an outside service (PostgreSQL) is
/// missing. Under `CI` a skip is a failure: CI provides them all.
pub fn skip(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide what this test needs, but it is missing: {what}"
    );
    // Written straight to stderr so it shows even when the harness captures output.
    let _ = writeln!(std::io::stderr(), "NOTE: SKIPPED {what}");
}

/// 64 random bits (std's per-instance random hash keys over the clock).
pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
