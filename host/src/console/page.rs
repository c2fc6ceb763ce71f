//! The console's page frame (navigation by role, language switch, flash messages),
//! its error page, and how values are shown to people: times in the platform time
//! zone, money in yuan from integer fen.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::ConsoleState;
use super::i18n::Lang;
use super::session::{Flash, Viewer};
use crate::api::ApiError;

const STYLE: &str = r#"
*{box-sizing:border-box}body{margin:0;font:14px/1.5 system-ui,"Noto Sans CJK SC","PingFang SC",sans-serif;color:#1d2733;background:#f4f6f8}
header{background:#14324a;color:#fff;padding:0 24px;display:flex;align-items:center;gap:18px;flex-wrap:wrap}
header .brand{font-weight:700;font-size:16px;padding:12px 0}header nav a{color:#cfe0ee;text-decoration:none;padding:14px 6px;display:inline-block}
header nav a.on{color:#fff;border-bottom:3px solid #5fb3f0}header .me{margin-left:auto;display:flex;gap:10px;align-items:center}
header .me a{color:#cfe0ee}header form{display:inline}header button{background:none;border:1px solid #5d7d96;color:#fff;border-radius:4px;padding:2px 8px;cursor:pointer}
main{padding:20px 24px;max-width:1200px}h1{font-size:20px;margin:4px 0 16px}h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:12px}th,td{border-bottom:1px solid #e3e8ed;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eef2f5;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.card{background:#fff;border:1px solid #e3e8ed;border-radius:6px;padding:12px 16px;margin-bottom:16px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
.flash{padding:8px 12px;border-radius:4px;margin:0 0 12px}.flash.done{background:#e3f4e6;border:1px solid #9ccfa5}.flash.failed{background:#fbe7e7;border:1px solid #e3a3a3}
.flash.key{background:#fff6da;border:1px solid #e6cd7a}.flash code{font-size:13px;word-break:break-all}
.diff td.changed{background:#fff3c4}.status{display:inline-block;padding:0 6px;border-radius:3px;background:#e6ebf0;font-size:12px}
.status.approved,.status.active,.status.completed,.status.delivered,.status.bound{background:#d9f0dd}.status.suspended,.status.failed,.status.rejected{background:#f6d6d6}
.status.submitted,.status.pending,.status.running{background:#fdf0c8}
form.inline{display:inline-flex;gap:6px;align-items:center;margin:2px 0}input,select,button{font:inherit}input[type=text],input[type=password]{padding:4px 6px;border:1px solid #b9c4ce;border-radius:4px}
button{background:#1f6fb2;color:#fff;border:0;border-radius:4px;padding:5px 12px;cursor:pointer}button.warn{background:#b7472a}
.counters{display:flex;gap:12px;flex-wrap:wrap}.counters div{background:#fff;border:1px solid #e3e8ed;border-radius:6px;padding:8px 14px;min-width:110px}
.counters b{display:block;font-size:22px}.muted{color:#6b7b8a}form.login{max-width:420px;margin:80px auto;background:#fff;padding:24px;border-radius:8px;border:1px solid #e3e8ed}
form.login input[type=password]{width:100%;margin:6px 0 12px}.hint{color:#6b7b8a}svg text{font-size:10px;fill:#51606e}
iframe.doc{width:100%;height:560px;border:1px solid #e3e8ed;background:#fff}
"#;

/// A page in the frame: navigation for the viewer's role, the language switch,
/// logout, and the flash messages of the last form.
pub fn frame(viewer: &Viewer, title: &str, body: Markup) -> Markup {
    let lang = viewer.lang;
    let nav: &[(&str, &str)] = if viewer.is_admin() {
        &[
            ("/console/dashboard", "dashboard"),
            ("/console/admin/approvals", "approvals"),
            ("/console/services", "services"),
            ("/console/admin/partners", "partners"),
            ("/console/admin/relay", "relay"),
            ("/console/messages", "messages"),
            ("/console/violations", "violations"),
            ("/console/admin/complaints", "complaints"),
            ("/console/admin/billing", "billing"),
        ]
    } else {
        &[
            ("/console/dashboard", "dashboard"),
            ("/console/modules", "modules"),
            ("/console/services", "services"),
            ("/console/messages", "messages"),
            ("/console/statements", "statements"),
            ("/console/violations", "violations"),
        ]
    };
    let who = match (&viewer.caller, lang) {
        (crate::api::Caller::Admin, Lang::Zh) => "平台管理员".to_string(),
        (crate::api::Caller::Admin, Lang::En) => "platform admin".to_string(),
        (crate::api::Caller::Partner(p), _) => format!("{} ({})", p.display_name, p.name),
    };
    let switch = |code: &str| {
        let rest: Vec<&str> = viewer
            .query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("lang="))
            .collect();
        let mut q = rest.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        format!("{}?{q}lang={code}", viewer.path)
    };
    document(
        lang,
        title,
        html! {
            header {
                span.brand { "通道 Tongdao" }
                nav {
                    @for (href, key) in nav {
                        a class=(if viewer.path.starts_with(href) { "on" } else { "" }) href=(href) { (lang.t(key)) }
                    }
                }
                span.me {
                    span #who { (who) }
                    a #lang-zh href=(switch("zh")) { "中文" }
                    a #lang-en href=(switch("en")) { "EN" }
                    form method="post" action="/console/logout" {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button #logout type="submit" { (lang.t("logout")) }
                    }
                }
            }
            main {
                @for f in &viewer.flash {
                    @match f {
                        Flash::Done(m) => p.flash.done #flash { (m) },
                        Flash::Failed(m) => p.flash.failed #flash { (m) },
                        Flash::Key(k) => p.flash.key { (lang.t("key-once")) ": " code #new-key { (k) } },
                    }
                }
                h1 { (title) }
                (body)
            }
        },
    )
}

/// A page without the frame (login, errors).
pub fn bare(lang: Lang, title: &str, body: Markup) -> Markup {
    document(lang, title, html! { main { (body) } })
}

fn document(lang: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(if lang == Lang::Zh { "zh-CN" } else { "en" }) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Tongdao" }
                style { (PreEscaped(STYLE)) }
                script src="/console/assets/htmx.min.js" defer {}
            }
            body { (body) }
        }
    }
}

/// A refused or failed page: the status and a message, as HTML.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found / 未找到")
    }
}

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(e: E) -> Self {
        let e = e.into();
        Self::new(e.status, e.message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = bare(
            Lang::Zh,
            "出错了 / Error",
            html! {
                div.card {
                    h1 { (self.status.as_u16()) " · 出错了 / Error" }
                    p #error { (self.message) }
                    p { a href="/console/dashboard" { "← 控制台 / console" } }
                }
            },
        );
        (self.status, page).into_response()
    }
}

/// The console's 404 for paths it does not have.
pub async fn not_found() -> PageError {
    PageError::not_found()
}

/// The outcome of a form: a flash message on the next page, then back to `to`
/// (303). A refusal by the domain (its API error) is shown, not thrown.
pub fn after(
    state: &ConsoleState,
    viewer: &Viewer,
    to: &str,
    outcome: Result<String, ApiError>,
) -> Response {
    let flash = match outcome {
        Ok(m) => Flash::Done(m),
        Err(e) => Flash::Failed(format!("{} ({})", e.message, e.code)),
    };
    state.sessions.flash(&viewer.sid, flash);
    Redirect::to(to).into_response()
}

/// A moment for people: `YYYY-MM-DD HH:MM:SS` in the platform time zone.
pub fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(crate::clock::time_zone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

pub fn when_opt(ms: Option<i64>) -> String {
    ms.map(when).unwrap_or_else(|| "—".into())
}

/// Integer fen as yuan with two decimals (`1234` → `12.34`), never through floats.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A status as a coloured tag.
pub fn status(s: &str) -> Markup {
    html! { span class={"status " (s)} { (s) } }
}

/// The hidden CSRF field every form carries.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// Admin-only pages refuse partners with 403.
pub fn admin_only(viewer: &Viewer) -> Result<(), PageError> {
    if viewer.is_admin() {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            viewer.lang.t("admin-only"),
        ))
    }
}

/// The partner of a partner-only page (the admin gets 403).
pub fn partner_only(viewer: &Viewer) -> Result<&crate::partners::Partner, PageError> {
    match &viewer.caller {
        crate::api::Caller::Partner(p) => Ok(p),
        crate::api::Caller::Admin => Err(PageError::new(
            StatusCode::FORBIDDEN,
            viewer.lang.t("partners-only"),
        )),
    }
}

/// A path id: positive integer, else 404 (as the console has no such page).
pub fn id(raw: &str) -> Result<i64, PageError> {
    raw.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(PageError::not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_is_exact() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(1234), "12.34");
        assert_eq!(yuan(-5), "-0.05");
        assert_eq!(yuan(i64::MIN), "-92233720368547758.08");
    }
}
