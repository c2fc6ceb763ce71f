//! Console sessions: log in with an API key, checked exactly as the API checks it
//! ([`crate::api::authenticate`]); the browser gets an opaque random session id in
//! an `HttpOnly; SameSite=Strict` cookie, kept here in memory with its CSRF token
//! and the digest of the key it was opened with. Every form carries that token; a
//! POST without it is refused with 403. A partner's session lives only as long as
//! its key: every page re-checks the digest, so a revoked (or rotated-out) key ends
//! the sessions opened with it at their next request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rand::RngCore;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ConsoleState;
use super::i18n::Lang;
use super::page::{self, PageError};
use crate::api::Caller;

const SESSION_COOKIE: &str = "td_session";
/// A session lasts this long after login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// A message shown once on the next page (the outcome of a form).
#[derive(Debug, Clone)]
pub enum Flash {
    Done(String),
    Failed(String),
    /// A partner key, shown once right after it was issued.
    Key(String),
}

#[derive(Debug)]
struct Session {
    caller: Caller,
    /// [`crate::partners::hash_key`] of the key the session was opened with.
    key_hash: String,
    csrf: String,
    expires: Instant,
    flash: Vec<Flash>,
}

/// The open sessions of this process (a restart logs everyone out).
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    fn open(&self, caller: Caller, key_hash: String) -> String {
        let id = random_hex();
        if let Ok(mut map) = self.0.lock() {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
            map.insert(
                id.clone(),
                Session {
                    caller,
                    key_hash,
                    csrf: random_hex(),
                    expires: now + SESSION_TTL,
                    flash: Vec::new(),
                },
            );
        }
        id
    }

    fn close(&self, id: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(id);
        }
    }

    /// (caller, key digest, CSRF token, flash messages if `take_flash`) of a live
    /// session.
    fn find(&self, id: &str, take_flash: bool) -> Option<(Caller, String, String, Vec<Flash>)> {
        let mut map = self.0.lock().ok()?;
        let session = map.get_mut(id).filter(|s| s.expires > Instant::now())?;
        let flash = if take_flash {
            std::mem::take(&mut session.flash)
        } else {
            Vec::new()
        };
        Some((
            session.caller.clone(),
            session.key_hash.clone(),
            session.csrf.clone(),
            flash,
        ))
    }

    /// Whether `id` is a live session opened with the admin key.
    fn is_admin(&self, id: &str) -> bool {
        self.0.lock().ok().is_some_and(|map| {
            map.get(id)
                .is_some_and(|s| s.expires > Instant::now() && matches!(s.caller, Caller::Admin))
        })
    }

    /// Show `flash` on the session's next page.
    pub fn flash(&self, id: &str, flash: Flash) {
        if let Ok(mut map) = self.0.lock()
            && let Some(session) = map.get_mut(id)
        {
            session.flash.push(flash);
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Who is looking at a page: a logged-in session, its language and CSRF token.
#[derive(Debug)]
pub struct Viewer {
    pub sid: String,
    pub caller: Caller,
    pub csrf: String,
    pub lang: Lang,
    pub flash: Vec<Flash>,
    /// The page's path and query, for the language switch.
    pub path: String,
    pub query: String,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        matches!(self.caller, Caller::Admin)
    }

    /// The partner's id for a partner, `None` (everyone) for the admin: the API's
    /// tenant rule.
    pub fn scope(&self) -> Option<i64> {
        match &self.caller {
            Caller::Admin => None,
            Caller::Partner(p) => Some(p.id),
        }
    }

    /// The caller may reach data of `partner_id`.
    pub fn reaches(&self, partner_id: i64) -> bool {
        self.scope().is_none_or(|p| p == partner_id)
    }

    /// A form's token must be this session's (403 otherwise).
    pub fn check_csrf(&self, token: &str) -> Result<(), PageError> {
        let expected = self.csrf.as_bytes();
        let given = token.as_bytes();
        let same = expected.len() == given.len()
            && expected
                .iter()
                .zip(given)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(PageError::new(StatusCode::FORBIDDEN, self.lang.t("csrf")))
        }
    }
}

/// Not logged in: to the login page.
#[derive(Debug)]
pub struct LoginFirst;

impl IntoResponse for LoginFirst {
    fn into_response(self) -> Response {
        Redirect::to("/console/login").into_response()
    }
}

impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = LoginFirst;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let sid = cookie(&parts.headers, SESSION_COOKIE).ok_or(LoginFirst)?;
        let take_flash = parts.method == Method::GET && !is_htmx(&parts.headers);
        let (caller, key_hash, csrf, flash) =
            state.sessions.find(&sid, take_flash).ok_or(LoginFirst)?;
        // A partner's key may have been revoked since login: the session ends with
        // it. The partner is read afresh, so a status change shows at once. (The
        // admin key is configuration: changing it means a restart, which ends every
        // session.)
        let caller = match caller {
            Caller::Admin => Caller::Admin,
            Caller::Partner(_) => {
                match crate::partners::authenticate_hash(&state.app.store, &key_hash).await {
                    Ok(Some(partner)) => Caller::Partner(partner),
                    Ok(None) => {
                        state.sessions.close(&sid);
                        return Err(LoginFirst);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "console: cannot re-check the session's key");
                        return Err(LoginFirst);
                    }
                }
            }
        };
        Ok(Self {
            sid,
            caller,
            csrf,
            lang: Lang::of(parts.uri.query(), &parts.headers),
            flash,
            // Nested under `/console`, the router sees the path without it.
            path: format!("/console{}", parts.uri.path()),
            query: parts.uri.query().unwrap_or("").to_string(),
        })
    }
}

/// The console's audit layer: a form an admin session posts (approve a
/// service, create a partner, issue a key, suspend…) goes on the audit chain as the
/// same request through the API would, with its real `/console/…` path. The login
/// form is not an admin action (no session yet) and is not recorded: its body is
/// the key.
pub async fn audit_admin_forms(
    State(state): State<ConsoleState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let admin = request.method() == Method::POST
        && cookie(request.headers(), SESSION_COOKIE)
            .is_some_and(|sid| state.sessions.is_admin(&sid));
    if admin {
        crate::api::record_admin_request(&state.app.store, "/console", request, next).await
    } else {
        next.run(request).await
    }
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// A form body (`application/x-www-form-urlencoded`); a body that does not fit is
/// a 400 page.
#[derive(Debug)]
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| Self(v))
            .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// The login page.
pub async fn login_page(uri: axum::http::Uri, headers: HeaderMap) -> Markup {
    let lang = Lang::of(uri.query(), &headers);
    login_form(lang, None)
}

fn login_form(lang: Lang, error: Option<&str>) -> Markup {
    page::bare(
        lang,
        lang.t("login"),
        html! {
            form.login method="post" action="/console/login" {
                h1 { (lang.t("console")) }
                p.hint { (lang.t("login-hint")) }
                @if let Some(e) = error { p.flash.failed #login-error { (e) } }
                label for="key" { (lang.t("api-key")) }
                input #key type="password" name="key" autocomplete="off" required;
                input type="hidden" name="lang" value=(lang.code());
                button #login type="submit" { (lang.t("login")) }
                p.langs { a href="/console/login?lang=zh" { "中文" } " · " a href="/console/login?lang=en" { "English" } }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    lang: String,
}

/// Check the key as the API does; open a session and set its cookie.
pub async fn login(
    State(state): State<ConsoleState>,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let lang = if form.lang == "en" {
        Lang::En
    } else {
        Lang::Zh
    };
    let key = form.key.trim();
    let caller = match crate::api::authenticate(&state.app, key).await {
        Ok(caller) if !key.is_empty() => caller,
        Ok(_) => {
            return Ok((
                StatusCode::UNAUTHORIZED,
                login_form(lang, Some(lang.t("bad-key"))),
            )
                .into_response());
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return Ok((
                StatusCode::UNAUTHORIZED,
                login_form(lang, Some(lang.t("bad-key"))),
            )
                .into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let sid = state.sessions.open(caller, crate::partners::hash_key(key));
    let mut response = Redirect::to("/console/dashboard").into_response();
    let cookie = format!(
        "{SESSION_COOKIE}={sid}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// End the session (CSRF-checked like every form).
pub async fn logout(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    state.sessions.close(&viewer.sid);
    let mut response = Redirect::to("/console/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
