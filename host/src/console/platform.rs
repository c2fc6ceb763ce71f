//! The platform's pages (admin): partners and keys (a new key shown once),
//! partner suspension and whether their module activations need approval,
//! pending module activations (on the approvals page), operator binds with queue
//! depth (live), complaints; and violations (the admin all, a partner its own).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::ConsoleState;
use super::i18n::Lang;
use super::page::{self, PageError, after, csrf, status, when, when_opt};
use super::session::{Flash, Form, Viewer};
use crate::api::ApiError;
use crate::partners;

/// `GET /console/admin/partners`.
pub async fn partners(
    viewer: Viewer,
    State(state): State<ConsoleState>,
) -> Result<Markup, PageError> {
    page::admin_only(&viewer)?;
    let lang = viewer.lang;
    let list = partners::list(&state.app.store).await?;
    let mut approval = std::collections::HashMap::new();
    for p in &list {
        approval.insert(
            p.id,
            crate::modules::approval::is_required(&state.app.store, p.id)
                .await
                .map_err(ApiError::from)?,
        );
    }
    let body = html! {
        div.card {
            h2 { (lang.t("create-partner")) }
            form.inline method="post" action="/console/admin/partners" {
                (csrf(&viewer))
                input #partner-name type="text" name="name" placeholder=(lang.t("name")) required;
                input #partner-display type="text" name="display_name" placeholder=(lang.t("display-name")) required;
                button #create-partner type="submit" { (lang.t("create")) }
            }
        }
        table #partners {
            thead { tr { th { (lang.t("name")) } th { (lang.t("display-name")) } th { (lang.t("status")) } th { (lang.t("created")) } th { (lang.t("issue-key")) } th { (lang.t("activation-approval")) } th {} } }
            tbody {
                @for p in &list {
                    tr id={"partner-" (p.name)} {
                        td { (p.name) } td { (p.display_name) } td { (status(&p.status)) } td { (when(p.created_at)) }
                        td {
                            form.inline method="post" action={"/console/admin/partners/" (p.name) "/keys"} {
                                (csrf(&viewer))
                                label { input type="checkbox" name="revoke_others" value="true"; " " (lang.t("revoke-others")) }
                                button type="submit" { (lang.t("issue-key")) }
                            }
                        }
                        td {
                            @let required = approval.get(&p.id).copied().unwrap_or(false);
                            form.inline method="post" action={"/console/admin/partners/" (p.name) "/activation-approval"} {
                                (csrf(&viewer))
                                input type="hidden" name="required" value=(if required { "false" } else { "true" });
                                (if required { "✓ " } else { "— " })
                                button id={"approval-" (p.name)} type="submit" {
                                    (lang.t(if required { "approval-off" } else { "approval-on" }))
                                }
                            }
                        }
                        td {
                            @let (action, class) = if p.status == "suspended" { ("resume", "") } else { ("suspend", "warn") };
                            form.inline method="post" action={"/console/admin/partners/" (p.name) "/" (action)} {
                                (csrf(&viewer))
                                input type="text" name="reason" placeholder=(lang.t("reason")) required;
                                button class=(class) type="submit" { (lang.t(action)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::frame(&viewer, lang.t("partners"), body))
}

#[derive(Deserialize)]
pub struct NewPartner {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
}

/// `POST /console/admin/partners`: create; the key is shown once.
pub async fn create_partner(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Form(form): Form<NewPartner>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    page::admin_only(&viewer)?;
    match partners::create(&state.app.store, form.name.trim(), &form.display_name).await {
        Ok((partner, key)) => {
            state.sessions.flash(&viewer.sid, Flash::Key(key.key));
            state
                .sessions
                .flash(&viewer.sid, Flash::Done(partner.name.clone()));
            Ok(Redirect::to("/console/admin/partners").into_response())
        }
        Err(e) => Ok(after(
            &state,
            &viewer,
            "/console/admin/partners",
            Err(ApiError::from(e)),
        )),
    }
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    revoke_others: Option<String>,
}

/// `POST /console/admin/partners/{name}/keys`.
pub async fn issue_key(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Form(form): Form<KeyForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    page::admin_only(&viewer)?;
    let revoke = form.revoke_others.is_some();
    match partners::issue_key(&state.app.store, &name, revoke).await {
        Ok(key) => {
            state.sessions.flash(&viewer.sid, Flash::Key(key.key));
            Ok(Redirect::to("/console/admin/partners").into_response())
        }
        Err(e) => Ok(after(
            &state,
            &viewer,
            "/console/admin/partners",
            Err(ApiError::from(e)),
        )),
    }
}

#[derive(Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/admin/partners/{name}/{suspend|resume}`.
pub async fn partner_action(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    page::admin_only(&viewer)?;
    if !matches!(action.as_str(), "suspend" | "resume") {
        return Err(PageError::not_found());
    }
    let app = &state.app;
    let actor = viewer.caller.actor();
    let outcome: Result<String, ApiError> = async {
        let reason = crate::api::check_reason(&form.reason)?;
        let partner = partners::get(&app.store, &name).await?;
        if action == "suspend" {
            let held = app
                .compliance
                .suspend_partner(partner.id, &actor, &reason)
                .await?;
            Ok(format!("{name} suspended ({held} held)"))
        } else {
            let released = app
                .compliance
                .resume_partner(partner.id, &actor, &reason)
                .await?;
            app.relay.wake();
            Ok(format!("{name} resumed ({released} released)"))
        }
    }
    .await;
    Ok(after(&state, &viewer, "/console/admin/partners", outcome))
}

fn relay_tables(
    lang: Lang,
    state: &ConsoleState,
    depth: &[crate::relay::messages::QueueDepth],
) -> Markup {
    let binds = state.app.relay.binds();
    html! {
        div #relay-live hx-get="/console/admin/relay/live" hx-trigger="every 2s" hx-swap="outerHTML" {
            h2 { (lang.t("binds")) }
            table #binds {
                thead { tr { th { (lang.t("operator")) } th { (lang.t("bind")) } th { (lang.t("state")) } th.num { (lang.t("attempts")) } th.num { "binds" } th { (lang.t("since")) } th { (lang.t("last-error")) } } }
                tbody {
                    @for b in &binds {
                        tr { td { (b.operator) } td { (b.bind) } td { (status(b.state)) } td.num { (b.attempts) } td.num { (b.binds) } td { (when_opt(b.bound_since)) } td { (b.last_error.as_deref().unwrap_or("")) } }
                    }
                }
            }
            h2 { (lang.t("queue-depth")) }
            table #queue {
                thead { tr { th { (lang.t("operator")) } th { (lang.t("status")) } th.num { (lang.t("count")) } } }
                tbody {
                    @for d in depth {
                        tr { td { (d.operator) } td { (status(&d.status)) } td.num { (d.count) } }
                    }
                }
            }
            @if depth.is_empty() { p.muted { "0" } }
        }
    }
}

/// `GET /console/admin/relay`: binds and queue depth, refreshed every 2 s.
pub async fn relay(viewer: Viewer, State(state): State<ConsoleState>) -> Result<Markup, PageError> {
    page::admin_only(&viewer)?;
    let depth = crate::relay::messages::queue_depth(&state.app.store).await?;
    let body = relay_tables(viewer.lang, &state, &depth);
    Ok(page::frame(&viewer, viewer.lang.t("relay"), body))
}

/// `GET /console/admin/relay/live`: the fragment htmx swaps in.
pub async fn relay_live(
    viewer: Viewer,
    State(state): State<ConsoleState>,
) -> Result<Markup, PageError> {
    page::admin_only(&viewer)?;
    let depth = crate::relay::messages::queue_depth(&state.app.store).await?;
    Ok(relay_tables(viewer.lang, &state, &depth))
}

/// `GET /console/violations`: a partner's own, or everyone's for the admin.
pub async fn violations(
    viewer: Viewer,
    State(state): State<ConsoleState>,
) -> Result<Markup, PageError> {
    let lang = viewer.lang;
    let list = state
        .app
        .compliance
        .violations(viewer.scope(), None, 200)
        .await?;
    let body = html! {
        table #violations {
            thead { tr { th { (lang.t("at")) } @if viewer.is_admin() { th { (lang.t("partner")) } } th { (lang.t("service")) } th { (lang.t("kind")) } th { (lang.t("rule")) } th { (lang.t("detail")) } th { (lang.t("excerpt")) } } }
            tbody {
                @for v in &list {
                    tr {
                        td { (when(v.at)) } @if viewer.is_admin() { td { (v.partner_id) } }
                        td { (v.service_id.map(|s| s.to_string()).unwrap_or_default()) }
                        td { (v.kind) } td { (v.rule) } td { (v.detail) } td { (v.excerpt.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        @if list.is_empty() { p.muted { (lang.t("none")) } }
    };
    Ok(page::frame(&viewer, lang.t("violations"), body))
}

/// `GET /console/admin/complaints`.
pub async fn complaints(
    viewer: Viewer,
    State(state): State<ConsoleState>,
) -> Result<Markup, PageError> {
    page::admin_only(&viewer)?;
    let lang = viewer.lang;
    let list = state.app.compliance.complaints(None, 200).await?;
    let body = html! {
        table #complaints {
            thead { tr { th { (lang.t("at")) } th { (lang.t("partner")) } th { (lang.t("service")) } th { (lang.t("msisdn")) } th { (lang.t("cause")) } th { (lang.t("note")) } } }
            tbody {
                @for c in &list {
                    tr {
                        td { (when(c.at)) } td { (c.partner_id) }
                        td { (c.service_id.map(|s| s.to_string()).unwrap_or_default()) }
                        td { (c.msisdn.as_deref().unwrap_or("")) } td { (c.cause) } td { (c.note) }
                    }
                }
            }
        }
        @if list.is_empty() { p.muted { (lang.t("none")) } }
    };
    Ok(page::frame(&viewer, lang.t("complaints"), body))
}

#[derive(Deserialize)]
pub struct ApprovalForm {
    #[serde(default)]
    csrf: String,
    required: bool,
}

/// `POST /console/admin/partners/{name}/activation-approval` `required`: whether
/// the partner's module activations wait for the admin (issue 17 item 1).
pub async fn activation_approval(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Form(form): Form<ApprovalForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    page::admin_only(&viewer)?;
    let outcome = match crate::modules::approval::set_required(
        &state.app.store,
        &name,
        form.required,
    )
    .await
    {
        Ok(true) => Ok(format!(
            "{name}: activation approval {}",
            if form.required { "on" } else { "off" }
        )),
        Ok(false) => Err(ApiError::not_found(format!("no partner `{name}`"))),
        Err(e) => Err(ApiError::from(e)),
    };
    Ok(after(&state, &viewer, "/console/admin/partners", outcome))
}

/// The pending module activations, each with approve and refuse forms: part of
/// the approvals page.
pub async fn pending_activations(
    viewer: &Viewer,
    state: &ConsoleState,
) -> Result<Markup, PageError> {
    let lang = viewer.lang;
    let requests = crate::modules::approval::list(&state.app.store, Some("pending"), None, 100)
        .await
        .map_err(ApiError::from)?;
    Ok(html! {
        h2 { (lang.t("activation-requests")) }
        @if requests.is_empty() { p.muted #no-pending-activations { (lang.t("no-pending")) } }
        @for r in &requests {
            div.card id={"activation-" (r.id)} {
                p {
                    (r.partner) " · " (r.module) " v" (r.version) " · " (lang.t("requested-by")) " " (r.requested_by)
                    " · " (when(r.requested_at))
                }
                @for action in ["approve", "refuse"] {
                    form.inline method="post" action={"/console/admin/activations/" (r.id) "/" (action)} {
                        (csrf(viewer))
                        input type="text" name="reason" id={"activation-" (action) "-reason-" (r.id)} placeholder=(lang.t("reason")) required[action == "refuse"];
                        button class=(if action == "refuse" { "warn" } else { "" }) id={"activation-" (action) "-" (r.id)} type="submit" { (lang.t(action)) }
                    }
                    " "
                }
            }
        }
    })
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/admin/activations/{id}/{approve|refuse}` `reason`.
pub async fn decide_activation(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    page::admin_only(&viewer)?;
    let id = page::id(&id)?;
    let approve = match action.as_str() {
        "approve" => true,
        "refuse" => false,
        _ => return Err(PageError::not_found()),
    };
    let reason = form.reason.trim();
    let outcome = if !approve && reason.is_empty() {
        Err(ApiError::bad_request(
            "reason-required",
            "a refusal needs a reason the partner reads",
        ))
    } else {
        state
            .app
            .registry
            .decide_activation(
                id,
                approve,
                &viewer.caller.actor(),
                Some(reason).filter(|r| !r.is_empty()),
            )
            .await
            .map(|r| format!("{} v{}: {}", r.module, r.version, r.status))
            .map_err(ApiError::from)
    };
    Ok(after(&state, &viewer, "/console/admin/approvals", outcome))
}
