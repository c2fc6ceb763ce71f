//! A partner's modules: versions, upload (through the registry's
//! own upload path with every check the API's upload has), activate, roll back,
//! and the faults recorded against each version.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::ConsoleState;
use super::page::{self, PageError, after, csrf, when, when_opt};
use super::session::{Form, Viewer};
use crate::api::ApiError;

/// `GET /console/modules`: the partner's modules and the upload form.
pub async fn list(viewer: Viewer, State(state): State<ConsoleState>) -> Result<Markup, PageError> {
    let partner = page::partner_only(&viewer)?;
    let lang = viewer.lang;
    let modules = state.app.registry.list(partner).await?;
    let body = html! {
        div.card {
            h2 { (lang.t("upload")) }
            form #upload-form method="post" action="/console/modules" enctype="multipart/form-data" {
                (csrf(&viewer))
                input #module-file type="file" name="module" accept=".wasm,application/wasm" required;
                " "
                button #upload type="submit" { (lang.t("upload-button")) }
            }
        }
        table #modules {
            thead { tr { th { (lang.t("name")) } th { (lang.t("active")) } th.num { (lang.t("versions")) } th.num { (lang.t("faults")) } th { (lang.t("created")) } } }
            tbody {
                @for m in &modules {
                    tr {
                        td { a href={"/console/modules/" (m.name)} { (m.name) } }
                        td { (m.active_version.map(|v| format!("v{v}")).unwrap_or_else(|| "—".into())) }
                        td.num { (m.versions.len()) }
                        td.num { (m.fault_count) }
                        td { (when(m.created_at)) }
                    }
                }
            }
        }
    };
    Ok(page::frame(&viewer, lang.t("modules"), body))
}

/// `POST /console/modules` (multipart: `csrf`, `module`): upload a version.
pub async fn upload(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    mut form: Multipart,
) -> Result<Response, PageError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        PageError::new(StatusCode::BAD_REQUEST, e.body_text())
    };
    let mut token = String::new();
    let mut wasm = None;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().map(str::to_owned);
        match name.as_deref() {
            Some("csrf") => token = field.text().await.map_err(bad)?,
            Some("module") => wasm = Some(field.bytes().await.map_err(bad)?),
            _ => {}
        }
    }
    viewer.check_csrf(&token)?;
    let partner = page::partner_only(&viewer)?;
    let limit = state.app.max_module_bytes;
    let outcome = match wasm {
        None => Err(ApiError::bad_request("empty-body", "choose a .wasm file")),
        Some(bytes) if bytes.is_empty() => {
            Err(ApiError::bad_request("empty-body", "the file is empty"))
        }
        Some(bytes) if bytes.len() > limit => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("a module may be at most {limit} bytes"),
        )),
        Some(bytes) => state
            .app
            .registry
            .upload(partner, &bytes, &viewer.caller.actor())
            .await
            .map_err(ApiError::from),
    };
    let to = match &outcome {
        Ok(u) => format!("/console/modules/{}", u.module),
        Err(_) => "/console/modules".to_string(),
    };
    let outcome = outcome.map(|u| {
        let verdict = match &u.admission {
            Some(r) if r.passed => " · admission ✓",
            Some(_) => " · admission ✗",
            None => "",
        };
        format!(
            "{} v{}{}{verdict}",
            u.module,
            u.version,
            if u.activated { " ✓" } else { "" }
        )
    });
    Ok(after(&state, &viewer, &to, outcome))
}

/// Which admission report the module page shows.
#[derive(Deserialize, Default)]
pub struct DetailQuery {
    /// A version number; default the newest.
    report: Option<i64>,
}

/// The admission report of one version: checks, figures, policy hits with the
/// text that hit, and every corpus call (issue 17 item 1).
fn admission_report(
    lang: super::i18n::Lang,
    version: i64,
    report: &crate::modules::AdmissionReport,
) -> Markup {
    let f = &report.figures;
    html! {
        div.card #admission-report {
            h2 { (lang.t("admission-report")) " · v" (version) " · "
                (page::status(if report.passed { "passed" } else { "failed" })) }
            table #admission-checks {
                thead { tr { th { (lang.t("check")) } th { (lang.t("result")) } th { (lang.t("detail")) } } }
                tbody {
                    @for c in &report.checks {
                        tr { td { (c.name) } td { (if c.passed { "✓" } else { "✗" }) } td { (c.detail) } }
                    }
                }
            }
            p.muted {
                "calls " (f.calls) " · skipped " (f.skipped) " · faults " (f.faults)
                " · module-errors " (f.module_errors) " · texts " (f.texts)
                " · CPU p50 " (f.cpu_us_p50) " µs, max " (f.cpu_us_max) " µs"
                " · wall max " (f.wall_us_max) " µs · output max " (f.output_bytes_max) " B"
                " · " (f.took_ms) " ms"
            }
            @if !report.policy_hits.is_empty() {
                h2 { (lang.t("policy-hits")) }
                table #policy-hits {
                    thead { tr { th { (lang.t("export")) } th { (lang.t("input")) } th { (lang.t("rule")) } th { (lang.t("text")) } } }
                    tbody {
                        @for h in &report.policy_hits {
                            tr { td { (h.export) } td { (h.input) } td { (h.rule) } td { (h.text) } }
                        }
                    }
                }
            }
            details {
                summary { (lang.t("corpus-calls")) " (" (report.calls.len()) ")" }
                table #corpus-calls {
                    thead { tr { th { (lang.t("export")) } th { (lang.t("input")) } th { (lang.t("outcome")) } th.num { "CPU µs" } th.num { "bytes" } } }
                    tbody {
                        @for c in &report.calls {
                            tr { td { (c.export) } td { (c.input) } td { (c.outcome) } td.num { (c.cpu_us) } td.num { (c.output_bytes) } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/modules/{name}?report=N`: versions with their admission verdict
/// and activate buttons, the admission report of one version, faults.
pub async fn detail(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Markup, PageError> {
    let partner = page::partner_only(&viewer)?;
    let lang = viewer.lang;
    let registry = &state.app.registry;
    let module = registry.get(partner, &name).await?;
    let faults = registry.faults(partner, &name, 20).await?;
    let windows = registry.fault_windows(partner, &name, 20).await?;
    let shown = query
        .report
        .or_else(|| module.versions.iter().map(|v| v.number).max());
    let report = match shown {
        Some(v) => registry.admission(partner, &name, v).await?.map(|r| (v, r)),
        None => None,
    };
    let body = html! {
        @if let Some(request) = &module.pending_activation {
            p.notice #pending-activation {
                (lang.t("pending-activation")) ": v" (request.version) " · " (request.requested_by) " · " (when(request.requested_at))
            }
        }
        table #versions {
            thead { tr { th { (lang.t("version")) } th { "label" } th { (lang.t("description")) } th { (lang.t("services")) } th.num { (lang.t("size")) } th { (lang.t("uploaded")) } th.num { (lang.t("faults")) } th { (lang.t("admission")) } th {} } }
            tbody {
                @for v in &module.versions {
                    tr id={"version-" (v.number)} {
                        td { "v" (v.number) @if v.active { " " (page::status("active")) } }
                        td { (v.label) }
                        td { (v.description) }
                        td { (v.services.join(", ")) }
                        td.num { (v.size_bytes) }
                        td { (when(v.uploaded_at)) }
                        td.num { (v.fault_count) }
                        td.admission {
                            a href={"/console/modules/" (module.name) "?report=" (v.number)} {
                                @match v.admission_passed {
                                    Some(true) => { "✓ " (lang.t("admission-passed")) }
                                    Some(false) => { "✗ " (lang.t("admission-failed")) }
                                    None => { "—" }
                                }
                            }
                        }
                        td {
                            @if !v.active && !v.pruned && v.admission_passed != Some(false) {
                                form.inline method="post" action={"/console/modules/" (module.name) "/activate"} {
                                    (csrf(&viewer))
                                    input type="hidden" name="version" value=(v.number);
                                    button id={"activate-" (v.number)} type="submit" { (lang.t("activate")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        form.inline method="post" action={"/console/modules/" (module.name) "/rollback"} {
            (csrf(&viewer))
            button.warn #rollback type="submit" { (lang.t("rollback")) }
        }
        @if let Some((version, report)) = &report {
            (admission_report(lang, *version, report))
        }
        h2 { (lang.t("fault-windows")) }
        table {
            thead { tr { th { (lang.t("version")) } th { (lang.t("export")) } th { (lang.t("kind")) } th { (lang.t("since")) } th.num { (lang.t("count")) } th { (lang.t("message")) } } }
            tbody {
                @for w in &windows {
                    tr { td { "v" (w.version) } td { (w.export) } td { (w.kind) } td { (when(w.window_start)) } td.num { (w.count) } td { (w.last_message) } }
                }
            }
        }
        h2 { (lang.t("faults")) }
        table #faults {
            thead { tr { th { (lang.t("at")) } th { (lang.t("version")) } th { (lang.t("export")) } th { (lang.t("kind")) } th { (lang.t("message")) } } }
            tbody {
                @for f in &faults {
                    tr { td { (when(f.at)) } td { "v" (f.version) } td { (f.export) } td { (f.kind) } td { (f.message) } }
                }
            }
        }
        p.muted { (lang.t("created")) ": " (when_opt(Some(module.created_at))) }
    };
    Ok(page::frame(
        &viewer,
        &format!("{} · {}", lang.t("module"), module.name),
        body,
    ))
}

#[derive(Deserialize)]
pub struct ActivateForm {
    #[serde(default)]
    csrf: String,
    version: i64,
}

/// `POST /console/modules/{name}/activate`.
pub async fn activate(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Form(form): Form<ActivateForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let partner = page::partner_only(&viewer)?;
    let outcome = state
        .app
        .registry
        .request_activation(partner, &name, form.version, &viewer.caller.actor())
        .await
        .map(|a| match a {
            crate::modules::Activation::Live(m) => {
                format!("{} v{}", m.name, m.active_version.unwrap_or(0))
            }
            crate::modules::Activation::Pending(r) => {
                format!(
                    "{} v{}: {}",
                    r.module,
                    r.version,
                    viewer.lang.t("pending-activation")
                )
            }
        })
        .map_err(ApiError::from);
    Ok(after(
        &state,
        &viewer,
        &format!("/console/modules/{name}"),
        outcome,
    ))
}

/// `POST /console/modules/{name}/rollback`.
pub async fn rollback(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Form(form): Form<super::session::CsrfOnly>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let partner = page::partner_only(&viewer)?;
    let outcome = state
        .app
        .registry
        .rollback(partner, &name, &viewer.caller.actor())
        .await
        .map(|m| format!("{} v{}", m.name, m.active_version.unwrap_or(0)))
        .map_err(ApiError::from);
    Ok(after(
        &state,
        &viewer,
        &format!("/console/modules/{name}"),
        outcome,
    ))
}
