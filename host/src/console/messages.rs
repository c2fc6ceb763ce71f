//! MTs with their segments, operator ids and status history, read through
//! `relay::messages` like `GET /v1/messages`: a partner its own, the admin all.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::ConsoleState;
use super::page::{self, PageError, status, when, when_opt};
use super::session::Viewer;
use crate::relay::messages::{self, MessageFilter};

/// Page size of the list.
const PAGE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    before: Option<String>,
}

/// `GET /console/messages?status=&recipient=&before=`.
pub async fn list(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Query(q): Query<ListQuery>,
) -> Result<Markup, PageError> {
    let lang = viewer.lang;
    let nonempty = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
    let filter = MessageFilter {
        status: nonempty(q.status.clone()),
        recipient: nonempty(q.recipient.clone()),
        before: q.before.as_deref().and_then(|b| b.parse().ok()),
        limit: Some(PAGE),
    };
    let list = messages::list(&state.app.store, viewer.scope(), &filter).await?;
    let older = (list.len() == usize::try_from(PAGE).unwrap_or(50))
        .then(|| list.last().map(|m| m.id))
        .flatten()
        .map(|before| {
            let mut href = format!("/console/messages?before={before}");
            for (name, value) in [("status", &filter.status), ("recipient", &filter.recipient)] {
                if let Some(v) = value {
                    href.push_str(&format!("&{name}={}", form_escape(v)));
                }
            }
            href
        });
    let body = html! {
        form.inline method="get" action="/console/messages" {
            input type="text" name="status" value=(q.status.as_deref().unwrap_or("")) placeholder=(lang.t("status"));
            input type="text" name="recipient" value=(q.recipient.as_deref().unwrap_or("")) placeholder=(lang.t("recipient"));
            button type="submit" { (lang.t("filter")) }
        }
        table #messages {
            thead { tr { th { "ID" } th { (lang.t("service")) } th { (lang.t("recipient")) } th { (lang.t("operator")) } th { (lang.t("text")) } th { (lang.t("status")) } th { (lang.t("created")) } } }
            tbody {
                @for m in &list {
                    tr {
                        td { a href={"/console/messages/" (m.id)} { (m.id) } }
                        td { (m.service.as_deref().unwrap_or("—")) }
                        td { (m.recipient) } td { (m.operator) }
                        td { (m.text.chars().take(40).collect::<String>()) }
                        td { (status(&m.status)) }
                        td { (when(m.created_at)) }
                    }
                }
            }
        }
        @if let Some(href) = &older {
            a #older href=(href) { (lang.t("older")) " →" }
        }
    };
    Ok(page::frame(&viewer, lang.t("messages"), body))
}

/// `GET /console/messages/{id}`: one MT, its segments and history.
pub async fn detail(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let lang = viewer.lang;
    let id = page::id(&id)?;
    let m = messages::get(&state.app.store, id, viewer.scope())
        .await?
        .ok_or_else(PageError::not_found)?;
    let s = &m.message;
    let body = html! {
        table {
            tbody {
                tr { th { (lang.t("service")) } td { (s.service.as_deref().unwrap_or("—")) } }
                tr { th { (lang.t("recipient")) } td { (s.recipient) } }
                tr { th { (lang.t("operator")) } td { (s.operator) } }
                tr { th { (lang.t("text")) } td { (s.text) } }
                tr { th { (lang.t("status")) } td #message-status { (status(&s.status)) @if let Some(r) = &s.failure_reason { " " (r) } } }
                tr { th { (lang.t("created")) } td { (when(s.created_at)) } }
                tr { th { (lang.t("finished")) } td { (when_opt(s.done_at)) } }
            }
        }
        h2 { (lang.t("segments")) }
        table {
            thead { tr { th { "#" } th { (lang.t("operator-id")) } th { (lang.t("status")) } th { (lang.t("sent")) } th { (lang.t("finished")) } } }
            tbody {
                @for seg in &m.segment_status {
                    tr { td { (seg.seq) } td { (seg.operator_message_id.as_deref().unwrap_or("—")) } td { (status(&seg.status)) @if let Some(e) = &seg.error { " " (e) } } td { (when_opt(seg.submitted_at)) } td { (when_opt(seg.done_at)) } }
                }
            }
        }
        h2 { (lang.t("history")) }
        table #history {
            thead { tr { th { (lang.t("at")) } th { (lang.t("status")) } th { (lang.t("detail")) } } }
            tbody {
                @for e in &m.history {
                    tr { td { (when(e.at)) } td { (status(&e.status)) } td { (e.detail.as_deref().unwrap_or("")) } }
                }
            }
        }
    };
    Ok(page::frame(
        &viewer,
        &format!("{} #{}", lang.t("messages"), s.id),
        body,
    ))
}

/// A query value with the characters that would break the link escaped.
fn form_escape(v: &str) -> String {
    v.chars()
        .flat_map(|c| match c {
            '&' => "%26".chars().collect::<Vec<_>>(),
            '#' => "%23".chars().collect(),
            '+' => "%2B".chars().collect(),
            ' ' => "+".chars().collect(),
            c => vec![c],
        })
        .collect()
}
