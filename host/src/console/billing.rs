//! Statements (the very documents `GET /v1/statements/{month}` serves, in HTML
//! and CSV), reconciliation cases and obligations due. A partner sees
//! its own; the admin picks a partner.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::ConsoleState;
use super::i18n::Lang;
use super::page::{self, PageError, status, when, when_opt};
use super::session::Viewer;
use crate::billing::calendar::Month;
use crate::partners::{self, Partner};
use crate::settlement::cases::Case;
use crate::settlement::obligations::{self, Alert};
use crate::settlement::render::{self, Format};
use crate::settlement::{cases, statement};

#[derive(Deserialize, Default)]
pub struct MonthQuery {
    #[serde(default)]
    month: Option<String>,
    #[serde(default)]
    partner: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    download: Option<String>,
}

fn month_of(raw: Option<&str>) -> Result<Month, PageError> {
    match raw.filter(|m| !m.is_empty()) {
        None => Ok(Month::of_ms(crate::store::now_ms())),
        Some(m) => m.parse().map_err(|_| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                format!("`{m}` is not a month (YYYY-MM)"),
            )
        }),
    }
}

/// The partner whose statement is asked for: a partner itself (naming another is
/// 404), the admin the one named by `?partner=`.
async fn statement_partner(
    state: &ConsoleState,
    viewer: &Viewer,
    named: Option<&str>,
) -> Result<Option<Partner>, PageError> {
    match (&viewer.caller, named.filter(|n| !n.is_empty())) {
        (crate::api::Caller::Partner(p), None) => Ok(Some(p.clone())),
        (crate::api::Caller::Partner(p), Some(n)) if n == p.name => Ok(Some(p.clone())),
        (crate::api::Caller::Partner(_), Some(_)) => Err(PageError::not_found()),
        (crate::api::Caller::Admin, Some(n)) => Ok(Some(partners::get(&state.app.store, n).await?)),
        (crate::api::Caller::Admin, None) => Ok(None),
    }
}

/// `GET /console/statements/{month}/document?format=html|csv[&partner=][&download=1]`:
/// the statement document, byte for byte what the API renders.
pub async fn document(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(month): Path<String>,
    Query(q): Query<MonthQuery>,
) -> Result<Response, PageError> {
    let m = month_of(Some(&month))?;
    let format = match q.format.as_deref().unwrap_or("html") {
        "html" => Format::Html,
        "csv" => Format::Csv,
        other => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("`{other}` is not html or csv"),
            ));
        }
    };
    let partner = statement_partner(&state, &viewer, q.partner.as_deref())
        .await?
        .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, "name the partner (?partner=)"))?;
    let s = statement::generate(&state.app.store, partner.id, &partner.name, m).await?;
    let body = render::render(&s, format);
    let filename = format!("statement-{}-{m}.{}", partner.name, format.extension());
    let disposition = if q.download.is_some() || matches!(format, Format::Csv) {
        "attachment"
    } else {
        "inline"
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("{disposition}; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

fn statement_card(lang: Lang, partner: &Partner, m: Month, admin: bool) -> Markup {
    let extra = if admin {
        format!("&partner={}", partner.name)
    } else {
        String::new()
    };
    let base = format!("/console/statements/{m}/document?");
    html! {
        div.card {
            h2 { (lang.t("statements")) " " (m) " · " (partner.display_name) }
            p {
                a #download-html href={(base) "format=html&download=1" (extra)} { (lang.t("download-html")) }
                " · "
                a #download-csv href={(base) "format=csv" (extra)} { (lang.t("download-csv")) }
            }
            iframe.doc title=(lang.t("document")) src={(base) "format=html" (extra)} {}
        }
    }
}

fn month_form(
    lang: Lang,
    action: &str,
    m: Month,
    partners: Option<(&[Partner], Option<&str>)>,
) -> Markup {
    html! {
        form.inline method="get" action=(action) {
            @if let Some((list, chosen)) = partners {
                select name="partner" {
                    @for p in list {
                        option value=(p.name) selected[chosen == Some(p.name.as_str())] { (p.display_name) " (" (p.name) ")" }
                    }
                }
            }
            label { (lang.t("month")) " " input type="month" name="month" value=(m.to_string()); }
            button type="submit" { (lang.t("show")) }
        }
    }
}

fn cases_table(lang: Lang, cases: &[Case]) -> Markup {
    html! {
        table #cases {
            thead { tr { th { "ID" } th { (lang.t("month")) } th { (lang.t("status")) } th { (lang.t("opened")) } th { (lang.t("resolution")) } th { (lang.t("detail")) } } }
            tbody {
                @for c in cases {
                    tr {
                        td { (c.id) } td { (c.month) } td { (status(&c.status)) } td { (when(c.opened_at)) }
                        td { (c.resolution.as_deref().unwrap_or("—")) " " (when_opt(c.resolved_at)) }
                        td { details { summary { (lang.t("detail")) } pre { (serde_json::to_string_pretty(&c.detail).unwrap_or_default()) } } }
                    }
                }
            }
        }
        @if cases.is_empty() { p.muted { (lang.t("none")) } }
    }
}

fn alerts_table(lang: Lang, alerts: &[Alert]) -> Markup {
    html! {
        table #alerts {
            thead { tr { th { (lang.t("kind")) } th { (lang.t("subject")) } th { (lang.t("due")) } th { (lang.t("detail")) } th { (lang.t("at")) } } }
            tbody {
                @for a in alerts {
                    tr { td { (a.kind) } td { (a.subject) } td { (a.due_on) } td { (a.detail) } td { (when(a.raised_at)) } }
                }
            }
        }
        @if alerts.is_empty() { p.muted { (lang.t("none")) } }
    }
}

/// `GET /console/statements?month=`: the partner's statement, reconciliation
/// cases and obligations.
pub async fn statements(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Query(q): Query<MonthQuery>,
) -> Result<Markup, PageError> {
    let partner = page::partner_only(&viewer)?.clone();
    let lang = viewer.lang;
    let m = month_of(q.month.as_deref())?;
    let store = &state.app.store;
    let cases = cases::cases(store, partner.id).await?;
    let alerts = obligations::alerts(store, Some(partner.id)).await?;
    let body = html! {
        (month_form(lang, "/console/statements", m, None))
        (statement_card(lang, &partner, m, false))
        h2 { (lang.t("reconciliation")) }
        (cases_table(lang, &cases))
        h2 { (lang.t("alerts")) }
        (alerts_table(lang, &alerts))
    };
    Ok(page::frame(&viewer, lang.t("statements"), body))
}

/// `GET /console/admin/billing?partner=&month=`: any partner's statement, every
/// discrepancy case and obligation alert.
pub async fn admin(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Query(q): Query<MonthQuery>,
) -> Result<Markup, PageError> {
    page::admin_only(&viewer)?;
    let lang = viewer.lang;
    let m = month_of(q.month.as_deref())?;
    let store = &state.app.store;
    let list = partners::list(store).await?;
    let chosen = match statement_partner(&state, &viewer, q.partner.as_deref()).await? {
        Some(p) => Some(p),
        None => list.first().cloned(),
    };
    let cases = cases::all_cases(store, None, None).await?;
    let alerts = obligations::alerts(store, None).await?;
    let body = html! {
        (month_form(lang, "/console/admin/billing", m, Some((list.as_slice(), chosen.as_ref().map(|p| p.name.as_str())))))
        @if let Some(p) = &chosen { (statement_card(lang, p, m, true)) }
        h2 { (lang.t("alerts")) }
        (alerts_table(lang, &alerts))
        h2 { (lang.t("reconciliation")) }
        (cases_table(lang, &cases))
    };
    Ok(page::frame(&viewer, lang.t("billing"), body))
}
