//! The dashboard of each role: volume, delivery rate and revenue by day, and
//! subscribers over time (the partner's own, or the whole platform's for the
//! admin), with a few headline figures.

use axum::extract::State;
use maud::{Markup, html};

use super::ConsoleState;
use super::charts::{self, Kind};
use super::page::{self, PageError};
use super::session::Viewer;
use crate::relay::messages;

/// Days the charts cover.
const DAYS: u16 = 14;

/// `GET /console/dashboard`.
pub async fn page(viewer: Viewer, State(state): State<ConsoleState>) -> Result<Markup, PageError> {
    let lang = viewer.lang;
    let store = &state.app.store;
    let scope = viewer.scope();
    let volume = messages::daily_volume(store, scope, DAYS).await?;
    let (days, since) = messages::last_days(DAYS);
    let revenue = crate::billing::charges::revenue_by_day(store, scope, &days, since).await?;
    let subscribers = crate::subscriptions::active_by_day(store, scope, None, &days).await?;
    let services = crate::services::list(store, scope, None).await?;
    let totals: Vec<(String, i64)> = volume.iter().map(|d| (d.day.clone(), d.total)).collect();
    let rate: Vec<(String, i64)> = volume
        .iter()
        .map(|d| {
            let finished = d.delivered + d.failed;
            let bp = if finished == 0 {
                0
            } else {
                d.delivered.saturating_mul(10_000) / finished
            };
            (d.day.clone(), bp)
        })
        .collect();
    let today = volume.last().cloned().unwrap_or_default();
    let pending_approvals = services
        .iter()
        .filter(|s| s.pending.as_ref().is_some_and(|r| r.status == "submitted"))
        .count();
    let body = html! {
        div.counters {
            div { span.muted { (lang.t("services")) } b #services-count { (services.len()) } }
            div { span.muted { (lang.t("volume")) } b { (today.total) } }
            div { span.muted { (lang.t("delivered")) } b { (today.delivered) } }
            div { span.muted { (lang.t("subscribers")) } b { (subscribers.last().map(|s| s.1).unwrap_or(0)) } }
            @if viewer.is_admin() {
                div { span.muted { (lang.t("approvals")) } b { a href="/console/admin/approvals" { (pending_approvals) } } }
            }
        }
        p.muted { (lang.t("last-14-days")) " · " (crate::clock::time_zone_name()) }
        div.grid {
            (charts::chart("chart-volume", lang.t("volume"), Kind::Bars, &totals, "#1f6fb2", |v| v.to_string()))
            (charts::chart("chart-delivery", lang.t("delivery-rate"), Kind::Line, &rate, "#2e8b57", charts::percent))
            (charts::chart("chart-revenue", lang.t("revenue"), Kind::Bars, &revenue, "#c77d12", page::yuan))
            (charts::chart("chart-subscribers", lang.t("subscribers"), Kind::Line, &subscribers, "#7a4fb5", |v| v.to_string()))
        }
    };
    Ok(page::frame(&viewer, lang.t("dashboard"), body))
}
