//! Issue 14 item 3: the web console, end to end on the real platform (SMSC
//! simulator over SMPP, real modules, SQLite and PostgreSQL).
//!
//! - `item3_console_in_a_real_browser`: headless Chromium driven through
//!   chromedriver (fantoccini): a partner logs in, uploads a module through the
//!   file input, activates it, pushes now and watches the run's counters (htmx)
//!   reach "delivered", downloads the statement (the same bytes as the API's
//!   document); the admin logs in and approves a service. With
//!   `TONGDAO_SCREENSHOTS=DIR` it saves the main pages as PNGs there
//!   (`docs/screenshots/` in the repository). Skips without Chromium, fails
//!   under `CI`.
//! - `item3_console_tenant_walls_and_csrf`: plain HTTP; another partner's run,
//!   service, message, module and statement are 404; admin pages 403 for a
//!   partner; a form without this session's CSRF token is 403 and changes nothing
//!   (R-7.1).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::env::{Env, free};
use common::{ADMIN_KEY, databases, guest, poll_until, skip};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// A console session over plain HTTP: its cookie.
struct Session {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Session {
    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    async fn login(base: &str, key: &str) -> Self {
        let http = Self::client();
        let resp = http
            .post(format!("{base}/console/login"))
            .form(&[("key", key)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let set = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("td_session="))
            .unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        assert!(!cookie.contains(key), "the key never goes into a cookie");
        Self {
            http,
            base: base.to_string(),
            cookie,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    /// POST a form; (status, Location).
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (resp.status(), location)
    }

    /// The CSRF token the session's pages carry.
    async fn csrf(&self) -> String {
        let (status, page) = self.get("/console/dashboard").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let start = page.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
        page[start..][..64].to_string()
    }
}

/// Acme's free jokes service with a joke in its library and `n` subscribers.
async fn jokes_service(env: &Env, code: &str, ext: &str, n: usize) -> i64 {
    let (status, body) = env
        .server
        .post(
            "/v1/content/jokes",
            &env.acme,
            json!({"items": [{"text": "程序员的笑话：它在我的机器上能运行。"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let service = env
        .approved_service(&env.acme, code, "jokes", free(&format!("笑话{code}"), ext))
        .await;
    for i in 0..n {
        let (status, body) = env.subscribe(service, &format!("1380000{ext}{i:02}")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    service
}

async fn runs_of(env: &Env, service: i64) -> usize {
    let (status, body) = env
        .server
        .get(&format!("/v1/services/{service}/runs"), &env.acme)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_console_tenant_walls_and_csrf() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let base = env.server.base.clone();
        let rival_key = env.server.new_partner("rival").await;
        let service = jokes_service(&env, "XH", "02", 1).await;
        let (status, run) = env
            .server
            .post(
                &format!("/v1/services/{service}/push"),
                &env.acme,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run = run["id"].as_i64().unwrap();
        let final_run = env.wait_run_final(run).await;
        assert_eq!(final_run["status"], "completed", "{final_run}");
        let (_, messages) = env.server.get("/v1/messages", &env.acme).await;
        let message = messages["items"][0]["id"].as_i64().unwrap();

        // Not logged in: to the login page; a wrong key: 401.
        let anonymous = Session::client();
        let resp = anonymous
            .get(format!("{base}/console/dashboard"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()["location"], "/console/login");
        let resp = anonymous
            .post(format!("{base}/console/login"))
            .form(&[("key", "td_partner_not-a-key")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

        let acme = Session::login(&base, &env.acme).await;
        let rival = Session::login(&base, &rival_key).await;
        // Acme sees its own pages.
        for path in [
            format!("/console/runs/{run}"),
            format!("/console/runs/{run}/counters"),
            format!("/console/services/{service}"),
            format!("/console/messages/{message}"),
            "/console/modules/jokes".to_string(),
            "/console/statements".to_string(),
        ] {
            let (status, page) = acme.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
        }
        // The rival sees none of them: 404, as if they did not exist (R-7.1).
        for path in [
            format!("/console/runs/{run}"),
            format!("/console/runs/{run}/counters"),
            format!("/console/services/{service}"),
            format!("/console/messages/{message}"),
            "/console/modules/jokes".to_string(),
            "/console/statements/2026-11/document?format=csv&partner=acme".to_string(),
        ] {
            let (status, page) = rival.get(&path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {page}");
        }
        let (_, list) = rival.get("/console/messages").await;
        assert!(
            !list.contains(&format!("/console/messages/{message}\"")),
            "{list}"
        );
        // Admin pages refuse partners.
        for path in [
            "/console/admin/approvals",
            "/console/admin/partners",
            "/console/admin/relay",
        ] {
            let (status, _) = acme.get(path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        }
        // The rival cannot push acme's service even with its own valid token.
        let rival_token = rival.csrf().await;
        let push = format!("/console/services/{service}/push");
        let (status, _) = rival.post(&push, &[("csrf", &rival_token)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // CSRF: no token, a wrong one, another session's: 403 and no run.
        let runs_before = runs_of(&env, service).await;
        let token = acme.csrf().await;
        assert_ne!(token, rival_token);
        for form in [
            vec![],
            vec![("csrf", "0".repeat(64))],
            vec![("csrf", rival_token.clone())],
        ] {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _) = acme.post(&push, &form).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{form:?}");
        }
        let (status, _) = acme.post("/console/logout", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(runs_of(&env, service).await, runs_before);
        // With the session's token the same form works.
        let (status, location) = acme.post(&push, &[("csrf", &token)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(location.starts_with("/console/runs/"), "{location}");
        assert_eq!(runs_of(&env, service).await, runs_before + 1);

        // Logout ends the session.
        let (status, _) = acme.post("/console/logout", &[("csrf", &token)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, _) = acme.get("/console/dashboard").await;
        assert_eq!(status, StatusCode::SEE_OTHER);

        // A revoked key ends the sessions opened with it (SECURITY.md, stolen key):
        // the rival's key is rotated out, its open session goes to the login page at
        // its next request, and the new key logs in.
        let (status, _) = rival.get("/console/dashboard").await;
        assert_eq!(status, StatusCode::OK);
        let (status, issued) = env
            .server
            .post(
                "/v1/partners/rival/keys",
                ADMIN_KEY,
                json!({"revoke_others": true}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        let (status, location) = rival.get("/console/dashboard").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
        let (status, _) = rival.post(&push, &[("csrf", &rival_token)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "a form of the ended session");
        let renewed = Session::login(&base, issued["api_key"].as_str().unwrap()).await;
        let (status, _) = renewed.get("/console/dashboard").await;
        assert_eq!(status, StatusCode::OK);

        // Labels: Chinese by default, English on request (and remembered).
        let admin = Session::login(&base, ADMIN_KEY).await;
        let (_, zh) = admin.get("/console/admin/approvals").await;
        assert!(zh.contains("业务审批"), "{zh}");
        let (_, en) = admin.get("/console/admin/approvals?lang=en").await;
        assert!(en.contains("Approvals"), "{en}");
        // An admin form goes on the audit chain like the same request through the
        // API (R-3.6): the partner created in the console is a chained row with its
        // console path, and the chain verifies.
        let admin_token = admin.csrf().await;
        let (status, _) = admin
            .post(
                "/console/admin/partners",
                &[
                    ("csrf", admin_token.as_str()),
                    ("name", "kuaile"),
                    ("display_name", "快乐"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, audit) = env.server.get("/v1/admin/audit", ADMIN_KEY).await;
        assert_eq!(status, StatusCode::OK, "{audit}");
        let newest = &audit["items"][0];
        assert_eq!(newest["actor"], "admin", "{audit}");
        assert_eq!(newest["method"], "POST", "{audit}");
        assert_eq!(newest["detail"], "/console/admin/partners", "{audit}");
        let (_, verdict) = env.server.get("/v1/admin/audit/verify", ADMIN_KEY).await;
        assert_eq!(verdict["result"], "intact", "{verdict}");
        env.stop().await;
    }
}

/// Chromium and chromedriver from the Debian packages, if installed.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = PathBuf::from("/usr/bin/chromium");
    let driver = PathBuf::from("/usr/bin/chromedriver");
    (chromium.exists() && driver.exists()).then_some((chromium, driver))
}

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: std::process::Child,
    url: String,
}

impl Driver {
    async fn start(driver: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        poll_until(WAIT, async || {
            match http.get(format!("{url}/status")).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                other => Err(format!("chromedriver not ready: {other:?}")),
            }
        })
        .await;
        Self { child, url }
    }

    async fn browser(&self, chromium: &Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=zh-CN"],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the first element matching `css`, once there is one.
async fn text_of(c: &Client, css: &str) -> String {
    poll_until(WAIT, async || match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.map_err(|e| format!("{css}: {e}")),
        Err(e) => Err(format!("{css}: {e}")),
    })
    .await
}

/// Wait until the element `css` reads something `ok` accepts.
async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    poll_until(WAIT, async || {
        let text = match c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.map_err(|e| e.to_string())?,
            Err(e) => return Err(format!("{css}: {e}")),
        };
        if ok(&text) {
            Ok(text)
        } else {
            Err(format!("{css} reads {text:?}"))
        }
    })
    .await
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Save a screenshot of the page when `TONGDAO_SCREENSHOTS` names a folder.
async fn screenshot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("TONGDAO_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// Fetch `href` inside the page (the browser's own session cookie) as text: the
/// body, decoded keeping a byte-order mark (the CSV statement starts with one for
/// spreadsheets), so it compares byte for byte with the API's answer.
async fn fetch_in_page(c: &Client, href: &str) -> String {
    let script = "const done = arguments[arguments.length - 1];
                  fetch(arguments[0], {credentials: 'same-origin'})
                    .then(r => r.arrayBuffer())
                    .then(b => new TextDecoder('utf-8', {ignoreBOM: true}).decode(b))
                    .then(done, e => done('ERROR ' + e));";
    let value = c.execute_async(script, vec![json!(href)]).await.unwrap();
    value.as_str().unwrap().to_string()
}

async fn login(c: &Client, base: &str, key: &str) {
    c.goto(&format!("{base}/console/login")).await.unwrap();
    c.wait()
        .for_element(Locator::Id("key"))
        .await
        .unwrap()
        .send_keys(key)
        .await
        .unwrap();
    click(c, "#login").await;
    c.wait().for_element(Locator::Id("logout")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_console_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser() else {
        skip(
            "the browser test: /usr/bin/chromium and /usr/bin/chromedriver are missing (apt-get install chromium chromium-driver)",
        );
        return;
    };
    let driver = Driver::start(&chromedriver).await;
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let base = env.server.base.clone();
        let subscribers = 3;
        let service = jokes_service(&env, "XH", "02", subscribers).await;
        let (status, body) = env
            .server
            .put(
                "/v1/admin/partners/acme/agreement",
                ADMIN_KEY,
                json!({"start_date": "2026-07-01", "term_months": 24, "notice_months": 3, "remedy_days": 10}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = env
            .server
            .put(
                "/v1/admin/operators/mobile/billing",
                ADMIN_KEY,
                json!({"imbalance_min_fen": 3, "imbalance_max_fen": 8, "calendar": "cn"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for (path, body) in [
            (
                "terms",
                json!({"effective_from": "2026-07", "tier_mode": "whole", "t1_fen": 5000, "t2_fen": 10000,
                       "tiers": [{"platform_bp": 5000, "partner_bp": 5000}, {"platform_bp": 4000, "partner_bp": 6000},
                                 {"platform_bp": 3000, "partner_bp": 7000}],
                       "tax_bp": 600, "discrepancy_bp": 200, "payment_days": 5, "activation_rule": "pro-rata"}),
            ),
            (
                "operator-terms",
                json!({"operator": "mobile", "effective_from": "2026-07", "collection_bp": 1500,
                       "imbalance_rate_fen": 5, "balance_mt": 2, "balance_mo": 1, "schedule": "M+2 day 15"}),
            ),
        ] {
            let (status, answer) = env
                .server
                .post(&format!("/v1/admin/partners/acme/{path}"), ADMIN_KEY, body)
                .await;
            assert_eq!(status, StatusCode::CREATED, "{answer}");
        }
        let c = driver.browser(&chromium).await;

        // The partner logs in with its key.
        login(&c, &base, &env.acme).await;
        assert_eq!(text_of(&c, "h1").await, "概览");
        screenshot(&c, "dashboard-zh").await;
        c.goto(&format!("{base}/console/dashboard?lang=en"))
            .await
            .unwrap();
        assert_eq!(text_of(&c, "h1").await, "Dashboard");
        c.wait()
            .for_element(Locator::Id("chart-volume"))
            .await
            .unwrap();
        screenshot(&c, "dashboard").await;

        // Upload a new version of `jokes` through the file input; it waits for
        // activation (the first version is live).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jokes-v2.wasm");
        std::fs::write(
            &file,
            tongdao_test_programs::byte_different_copy(&guest("jokes"), 2, 64),
        )
        .unwrap();
        c.goto(&format!("{base}/console/modules")).await.unwrap();
        c.wait()
            .for_element(Locator::Id("module-file"))
            .await
            .unwrap()
            .send_keys(file.to_str().unwrap())
            .await
            .unwrap();
        click(&c, "#upload").await;
        wait_text(&c, "#flash", |t| t.starts_with("jokes v2")).await;
        let row = text_of(&c, "#version-2").await;
        assert!(!row.contains("active"), "{row}");
        screenshot(&c, "modules").await;
        // Activate it.
        click(&c, "#activate-2").await;
        wait_text(&c, "#version-2", |t| t.contains("active")).await;
        let (_, module) = env.server.get("/v1/modules/jokes", &env.acme).await;
        assert_eq!(module["active_version"], 2, "{module}");

        // Push now and watch the counters (htmx, every 2 s) reach delivered.
        c.goto(&format!("{base}/console/services/{service}"))
            .await
            .unwrap();
        click(&c, "#push-now").await;
        c.wait().for_element(Locator::Id("counters")).await.unwrap();
        let url = c.current_url().await.unwrap();
        let run: i64 = url.path().rsplit('/').next().unwrap().parse().unwrap();
        let delivered = wait_text(&c, "#delivered", |t| t == subscribers.to_string()).await;
        assert_eq!(delivered, "3");
        wait_text(&c, "#run-status", |t| t == "completed").await;
        poll_until(WAIT, async || {
            let e = c
                .find(Locator::Id("counters"))
                .await
                .map_err(|e| e.to_string())?;
            match e.attr("data-settled").await.map_err(|e| e.to_string())? {
                Some(s) if s == "yes" => Ok(()),
                other => Err(format!("settled: {other:?}")),
            }
        })
        .await;
        let (_, api_run) = env.server.get(&format!("/v1/runs/{run}"), &env.acme).await;
        assert_eq!(api_run["delivery"]["delivered"], 3, "{api_run}");
        screenshot(&c, "run").await;

        // The statement: the console's downloads are the API's documents.
        c.goto(&format!("{base}/console/statements")).await.unwrap();
        let month = tongdao::clock::month_key(tongdao::store::now_ms());
        for (id, format) in [("#download-csv", "csv"), ("#download-html", "html")] {
            let link = c.wait().for_element(Locator::Css(id)).await.unwrap();
            let href = link.attr("href").await.unwrap().unwrap();
            let in_browser = fetch_in_page(&c, &href).await;
            let api = env
                .server
                .http
                .get(
                    env.server
                        .url(&format!("/v1/statements/{month}?format={format}")),
                )
                .bearer_auth(&env.acme)
                .send()
                .await
                .unwrap();
            let status = api.status();
            let api = api.text().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{api}");
            assert_eq!(in_browser, api, "{format}");
        }
        screenshot(&c, "statement").await;
        click(&c, "#logout").await;
        c.wait().for_element(Locator::Id("key")).await.unwrap();

        // The admin approves a service acme submitted.
        let mut terms = free("段子", "05");
        terms["code"] = json!("DZ");
        terms["module"] = json!("jokes");
        let (status, created) = env.server.post("/v1/services", &env.acme, terms).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let pending = created["id"].as_i64().unwrap();
        let (status, body) = env
            .server
            .post(
                &format!("/v1/services/{pending}/submit"),
                &env.acme,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        login(&c, &base, ADMIN_KEY).await;
        c.goto(&format!("{base}/console/admin/approvals?lang=en"))
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Id(&format!("approve-reason-{pending}")))
            .await
            .unwrap()
            .send_keys("checked on the test numbers")
            .await
            .unwrap();
        screenshot(&c, "approvals").await;
        click(&c, &format!("#approve-{pending}")).await;
        c.wait()
            .for_element(Locator::Id("no-pending"))
            .await
            .unwrap();
        let (_, approved): (StatusCode, Value) = env
            .server
            .get(&format!("/v1/services/{pending}"), ADMIN_KEY)
            .await;
        assert_eq!(approved["status"], "approved", "{approved}");
        let (_, audit) = env
            .server
            .get(&format!("/v1/services/{pending}/audit"), ADMIN_KEY)
            .await;
        assert!(
            audit.to_string().contains("checked on the test numbers"),
            "{audit}"
        );
        c.goto(&format!("{base}/console/admin/relay?lang=en"))
            .await
            .unwrap();
        c.wait().for_element(Locator::Id("binds")).await.unwrap();
        screenshot(&c, "relay").await;
        c.close().await.unwrap();
        env.stop().await;
    }
}
