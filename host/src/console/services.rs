//! Services and their terms, schedules and push runs with live counters,
//! push now; for the admin the approval queue with revision diffs (live terms
//! beside the pending draft) and suspend/resume.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::ConsoleState;
use super::charts::{self, Kind};
use super::i18n::Lang;
use super::page::{self, PageError, after, csrf, status, when, when_opt};
use super::session::{Form, Viewer};
use crate::api::ApiError;
use crate::schedule::runs::{self, RunView};
use crate::schedule::{ScheduleError, schedules};
use crate::services::{self, Revision, ServiceView};

/// Partner names by id, for the admin's lists.
async fn partner_names(
    state: &ConsoleState,
) -> Result<std::collections::HashMap<i64, String>, PageError> {
    Ok(crate::partners::list(&state.app.store)
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect())
}

/// `GET /console/services`: the partner's services (the admin: everyone's, with
/// suspend and resume).
pub async fn list(viewer: Viewer, State(state): State<ConsoleState>) -> Result<Markup, PageError> {
    let lang = viewer.lang;
    let list = services::list(&state.app.store, viewer.scope(), None).await?;
    let names = partner_names(&state).await?;
    let body = html! {
        table #services {
            thead { tr {
                th { "ID" } @if viewer.is_admin() { th { (lang.t("partner")) } }
                th { (lang.t("code")) } th { (lang.t("name")) } th { (lang.t("module")) } th { (lang.t("fee-type")) }
                th.num { (lang.t("price")) } th { (lang.t("status")) } th { (lang.t("pending-terms")) }
                @if viewer.is_admin() { th {} }
            } }
            tbody {
                @for s in &list {
                    @let terms = s.live.as_ref().or(s.pending.as_ref());
                    tr id={"service-" (s.id)} {
                        td { a href={"/console/services/" (s.id)} { (s.id) } }
                        @if viewer.is_admin() { td { (names.get(&s.partner_id).map(String::as_str).unwrap_or("?")) } }
                        td { a href={"/console/services/" (s.id)} { (s.code) } }
                        td { (terms.map(|t| t.name.as_str()).unwrap_or("")) }
                        td { (s.module.as_deref().unwrap_or("—")) }
                        td { (terms.map(|t| t.fee_type.as_str()).unwrap_or("")) }
                        td.num { (terms.map(|t| page::yuan(t.price_fen)).unwrap_or_default()) }
                        td { (status(s.status.as_str())) }
                        td { @if let Some(p) = &s.pending { (status(&p.status)) } }
                        @if viewer.is_admin() {
                            td { (service_actions(&viewer, s)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page::frame(&viewer, lang.t("services"), body))
}

/// Suspend or resume forms with a reason (admin).
fn service_actions(viewer: &Viewer, s: &ServiceView) -> Markup {
    let lang = viewer.lang;
    let (action, class) = match s.status {
        services::ServiceStatus::Approved => ("suspend", "warn"),
        services::ServiceStatus::Suspended => ("resume", ""),
        _ => return html! {},
    };
    html! {
        form.inline method="post" action={"/console/admin/services/" (s.id) "/" (action)} {
            (csrf(viewer))
            input type="text" name="reason" placeholder=(lang.t("reason")) required;
            button class=(class) id={(action) "-" (s.id)} type="submit" { (lang.t(action)) }
        }
    }
}

/// A revision's terms as people read them: (label key, value).
fn term_values(r: &Revision) -> [(&'static str, String); 8] {
    [
        ("name", r.name.clone()),
        ("description", r.description.clone()),
        ("keywords", r.keywords.join(", ")),
        ("fee-type", r.fee_type.as_str().to_string()),
        (
            "price",
            crate::subscriptions::price_text(r.fee_type, r.price_fen),
        ),
        ("operators", r.operators.join(", ")),
        (
            "monthly-max",
            r.monthly_max_messages
                .map(|n| n.to_string())
                .unwrap_or_else(|| "—".into()),
        ),
        ("number-ext", r.number_ext.clone()),
    ]
}

/// The rows of a terms comparison: (label key, live value, pending value).
fn term_rows(
    live: Option<&Revision>,
    pending: Option<&Revision>,
) -> Vec<(&'static str, String, String)> {
    let live = live.map(term_values);
    let pending = pending.map(term_values);
    let keys = live
        .as_ref()
        .or(pending.as_ref())
        .map(|v| v.clone().map(|(k, _)| k));
    let value = |side: &Option<[(&'static str, String); 8]>, i: usize| {
        side.as_ref().map(|v| v[i].1.clone()).unwrap_or_default()
    };
    keys.map(|keys| {
        keys.iter()
            .enumerate()
            .map(|(i, k)| (*k, value(&live, i), value(&pending, i)))
            .collect()
    })
    .unwrap_or_default()
}

/// Live terms beside the pending draft; changed rows are marked.
fn terms_diff(lang: Lang, s: &ServiceView) -> Markup {
    let rows = term_rows(s.live.as_ref(), s.pending.as_ref());
    html! {
        table.diff id={"diff-" (s.id)} {
            thead { tr {
                th { (lang.t("field")) }
                th { (lang.t("live-terms")) @if let Some(l) = &s.live { " (#" (l.seq) ")" } }
                th { (lang.t("pending-terms")) @if let Some(p) = &s.pending { " (#" (p.seq) ", " (p.status) ")" } }
            } }
            tbody {
                @for (key, live, pending) in &rows {
                    @let changed = s.pending.is_some() && live != pending;
                    tr {
                        th { (lang.t(key)) }
                        td class=(if changed { "changed" } else { "" }) { (live) }
                        td class=(if changed { "changed" } else { "" }) { @if s.pending.is_some() { (pending) } }
                    }
                }
            }
        }
    }
}

/// `GET /console/services/{id}`: terms, schedules, runs, subscribers, audit.
pub async fn detail(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let lang = viewer.lang;
    let id = page::id(&id)?;
    let store = &state.app.store;
    let service = services::get(store, viewer.scope(), id).await?;
    let schedules = schedules::list(store, id).await?;
    let mut views = Vec::new();
    for run in runs::list(store, id, None, 20).await? {
        views.push(runs::view(store, run).await?);
    }
    let audit = services::audit(store, viewer.scope(), id).await?;
    let (days, _) = crate::relay::messages::last_days(14);
    let subscribers =
        crate::subscriptions::active_by_day(store, Some(service.partner_id), Some(id), &days)
            .await?;
    let title = format!(
        "{} {} · {}",
        lang.t("service"),
        service.code,
        service
            .live
            .as_ref()
            .or(service.pending.as_ref())
            .map(|r| r.name.as_str())
            .unwrap_or("")
    );
    let body = html! {
        p { (status(service.status.as_str())) " " (lang.t("module")) ": " (service.module.as_deref().unwrap_or("—")) }
        form.inline method="post" action={"/console/services/" (id) "/push"} {
            (csrf(&viewer))
            button #push-now type="submit" { (lang.t("push-now")) }
        }
        h2 { (lang.t("terms")) }
        (terms_diff(lang, &service))
        h2 { (lang.t("runs")) }
        (runs_table(lang, &views))
        h2 { (lang.t("schedules")) }
        table #schedules {
            thead { tr { th { "ID" } th { (lang.t("kind")) } th { "cron" } th { (lang.t("at")) } th { (lang.t("enabled")) } th { (lang.t("next-fire")) } } }
            tbody {
                @for s in &schedules {
                    tr { td { (s.id) } td { (s.kind) } td { code { (s.cron.as_deref().unwrap_or("")) } } td { (when_opt(s.at)) " " (s.time_zone) } td { (s.enabled) } td { (when_opt(s.next_fire_at)) } }
                }
            }
        }
        (charts::chart("chart-service-subscribers", lang.t("subscribers"), Kind::Line, &subscribers, "#7a4fb5", |v| v.to_string()))
        h2 { (lang.t("audit")) }
        table #audit {
            thead { tr { th { (lang.t("at")) } th { (lang.t("status")) } th { (lang.t("actor")) } th { (lang.t("reason")) } } }
            tbody {
                @for a in &audit {
                    tr { td { (when(a.at)) } td { (a.action) ": " (a.from_status.as_deref().unwrap_or("—")) " → " (a.to_status) } td { (a.actor) } td { (a.reason.as_deref().unwrap_or("")) } }
                }
            }
        }
    };
    Ok(page::frame(&viewer, &title, body))
}

fn runs_table(lang: Lang, views: &[RunView]) -> Markup {
    html! {
        table #runs {
            thead { tr {
                th { "ID" } th { (lang.t("origin")) } th { (lang.t("push-date")) } th { (lang.t("status")) }
                th.num { (lang.t("subscribers-now")) } th.num { (lang.t("queued")) } th.num { (lang.t("delivered")) }
                th.num { (lang.t("failed")) } th.num { (lang.t("pending")) } th { (lang.t("created")) }
            } }
            tbody {
                @for v in views {
                    tr {
                        td { a href={"/console/runs/" (v.run.id)} { (v.run.id) } }
                        td { (v.run.origin) } td { (v.run.push_date) } td { (status(&v.run.status)) }
                        td.num { (v.run.subscribers) } td.num { (v.run.queued) } td.num { (v.delivery.delivered) }
                        td.num { (v.delivery.failed) } td.num { (v.delivery.pending) } td { (when(v.run.created_at)) }
                    }
                }
            }
        }
    }
}

/// `POST /console/services/{id}/push`: push now, then follow the run.
pub async fn push(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Form(form): Form<super::session::CsrfOnly>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let id = page::id(&id)?;
    let service = services::get(&state.app.store, viewer.scope(), id).await?;
    let pushed = state
        .app
        .scheduler
        .push_now(service.partner_id, id, None, &viewer.caller.actor())
        .await;
    Ok(match pushed {
        Ok(run) => after(
            &state,
            &viewer,
            &format!("/console/runs/{}", run.id),
            Ok(format!("{} #{}", viewer.lang.t("run"), run.id)),
        ),
        Err(e) => after(
            &state,
            &viewer,
            &format!("/console/services/{id}"),
            Err(ApiError::from(e)),
        ),
    })
}

/// The run `raw` names, if the viewer reaches it (another partner's: 404).
async fn run_of(state: &ConsoleState, viewer: &Viewer, raw: &str) -> Result<RunView, PageError> {
    let id = page::id(raw)?;
    match runs::get(&state.app.store, id).await {
        Ok(run) if viewer.reaches(run.partner_id) => Ok(runs::view(&state.app.store, run).await?),
        Ok(_) | Err(ScheduleError::RunNotFound(_)) => Err(PageError::not_found()),
        Err(e) => Err(e.into()),
    }
}

/// A run is over and every MT it queued has its final status.
fn settled(v: &RunView) -> bool {
    ["completed", "failed", "cancelled", "expired", "skipped"].contains(&v.run.status.as_str())
        && v.delivery.pending == 0
}

/// The live counters; while the run is not settled, htmx asks again every 2 s.
fn counters(lang: Lang, v: &RunView) -> Markup {
    let url = format!("/console/runs/{}/counters", v.run.id);
    let live = !settled(v);
    html! {
        div #counters hx-get=[live.then_some(&url)] hx-trigger=[live.then_some("every 2s")] hx-swap="outerHTML" data-settled=(if live { "no" } else { "yes" }) {
            p { (lang.t("status")) ": " span #run-status { (status(&v.run.status)) } }
            div.counters {
                div { span.muted { (lang.t("subscribers-now")) } b #subscribers { (v.run.subscribers) } }
                div { span.muted { (lang.t("queued")) } b #queued { (v.run.queued) } }
                div { span.muted { (lang.t("sent")) } b #sent { (v.delivery.sent) } }
                div { span.muted { (lang.t("delivered")) } b #delivered { (v.delivery.delivered) } }
                div { span.muted { (lang.t("failed")) } b #failed { (v.delivery.failed) } }
                div { span.muted { (lang.t("pending")) } b #pending { (v.delivery.pending) } }
                div { span.muted { (lang.t("blocked")) } b { (v.run.blocked) } }
                div { span.muted { (lang.t("held")) } b { (v.run.held) } }
            }
        }
    }
}

/// `GET /console/runs/{id}`.
pub async fn run(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let lang = viewer.lang;
    let v = run_of(&state, &viewer, &id).await?;
    let body = html! {
        p {
            a href={"/console/services/" (v.run.service_id)} { "← " (lang.t("service")) " " (v.run.service_id) }
            " · " (lang.t("origin")) ": " (v.run.origin) " · " (lang.t("push-date")) ": " (v.run.push_date)
            " · " (lang.t("created")) ": " (when(v.run.created_at)) " · " (lang.t("finished")) ": " (when_opt(v.run.finished_at))
        }
        (counters(lang, &v))
        @if let Some(reason) = &v.run.reason { p.muted { (lang.t("reason")) ": " (reason) } }
        @if !v.faults.is_empty() {
            h2 { (lang.t("faults")) }
            table { tbody { @for f in &v.faults { tr { td { "#" (f.attempt) } td { (when(f.at)) } td { (f.kind) } td { (f.message) } td { (when_opt(f.retry_at)) } } } } }
        }
    };
    Ok(page::frame(
        &viewer,
        &format!("{} #{}", lang.t("run"), v.run.id),
        body,
    ))
}

/// `GET /console/runs/{id}/counters`: the fragment htmx swaps in.
pub async fn run_counters(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let v = run_of(&state, &viewer, &id).await?;
    Ok(counters(viewer.lang, &v))
}

/// `GET /console/admin/approvals`: submitted revisions, live beside draft.
pub async fn approvals(
    viewer: Viewer,
    State(state): State<ConsoleState>,
) -> Result<Markup, PageError> {
    page::admin_only(&viewer)?;
    let lang = viewer.lang;
    let waiting: Vec<ServiceView> = services::list(&state.app.store, None, None)
        .await?
        .into_iter()
        .filter(|s| s.pending.as_ref().is_some_and(|p| p.status == "submitted"))
        .collect();
    let names = partner_names(&state).await?;
    let activations = super::platform::pending_activations(&viewer, &state).await?;
    let body = html! {
        (activations)
        h2 { (lang.t("services")) }
        @if waiting.is_empty() { p.muted #no-pending { (lang.t("no-pending")) } }
        @for s in &waiting {
            div.card id={"approval-" (s.id)} {
                h2 {
                    a href={"/console/services/" (s.id)} { (s.code) } " · "
                    (names.get(&s.partner_id).map(String::as_str).unwrap_or("?")) " · " (status(s.status.as_str()))
                    @if let Some(p) = &s.pending { " " (lang.t("at")) " " (when_opt(p.submitted_at)) }
                }
                (terms_diff(lang, s))
                @for action in ["approve", "reject"] {
                    form.inline method="post" action={"/console/admin/services/" (s.id) "/" (action)} {
                        (csrf(&viewer))
                        input type="text" name="reason" id={(action) "-reason-" (s.id)} placeholder=(lang.t("reason")) required;
                        button class=(if action == "reject" { "warn" } else { "" }) id={(action) "-" (s.id)} type="submit" { (lang.t(action)) }
                    }
                    " "
                }
            }
        }
    };
    Ok(page::frame(&viewer, lang.t("approvals"), body))
}

#[derive(Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/admin/services/{id}/{approve|reject|suspend|resume}`.
pub async fn decide(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    page::admin_only(&viewer)?;
    let id = page::id(&id)?;
    let app = &state.app;
    let actor = viewer.caller.actor();
    let outcome: Result<String, ApiError> = async {
        let reason = crate::api::check_reason(&form.reason)?;
        match action.as_str() {
            "approve" | "reject" => {
                let view =
                    services::decide(&app.store, id, action == "approve", &actor, &reason).await?;
                Ok(format!(
                    "{} {}: {}",
                    view.code,
                    action,
                    view.status.as_str()
                ))
            }
            "suspend" => {
                let held = app.compliance.suspend_service(id, &actor, &reason).await?;
                Ok(format!("{id} suspended ({held} held)"))
            }
            "resume" => {
                let released = app.compliance.resume_service(id, &actor, &reason).await?;
                app.relay.wake();
                Ok(format!("{id} resumed ({released} released)"))
            }
            _ => Err(ApiError::not_found("no such action")),
        }
    }
    .await;
    if outcome
        .as_ref()
        .is_err_and(|e| e.status == StatusCode::NOT_FOUND && e.message == "no such action")
    {
        return Err(PageError::not_found());
    }
    let back = if matches!(action.as_str(), "approve" | "reject") {
        "/console/admin/approvals"
    } else {
        "/console/services"
    };
    Ok(after(&state, &viewer, back, outcome))
}
