//! A partner's modules: versions, upload (through the registry's
//! own upload path with every check the API's upload has), activate, roll back,
//! and the faults recorded against each version.

use axum::extract::{Multipart, Path, State};
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
        format!(
            "{} v{}{}",
            u.module,
            u.version,
            if u.activated { " ✓" } else { "" }
        )
    });
    Ok(after(&state, &viewer, &to, outcome))
}

/// `GET /console/modules/{name}`: versions with activate buttons, faults.
pub async fn detail(
    viewer: Viewer,
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
) -> Result<Markup, PageError> {
    let partner = page::partner_only(&viewer)?;
    let lang = viewer.lang;
    let registry = &state.app.registry;
    let module = registry.get(partner, &name).await?;
    let faults = registry.faults(partner, &name, 20).await?;
    let windows = registry.fault_windows(partner, &name, 20).await?;
    let body = html! {
        table #versions {
            thead { tr { th { (lang.t("version")) } th { "label" } th { (lang.t("description")) } th { (lang.t("services")) } th.num { (lang.t("size")) } th { (lang.t("uploaded")) } th.num { (lang.t("faults")) } th {} } }
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
                        td {
                            @if !v.active && !v.pruned {
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
        .activate(partner, &name, form.version, &viewer.caller.actor())
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
