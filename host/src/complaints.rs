//! The complaints register and the partners' contact points.
//!
//! A complaint names the number that complained, the partner, optionally the
//! service and the MT, the channel it came by (`10086` hotline, `miit`
//! regulator, `app`, `email`…) and its cause (`content`, `channel`, `billing`,
//! `unsubscribe`). It is routed to the partner first (the first line for its
//! users, agreement 5.1), and to the platform when the cause is the channel
//! (agreement 5.2). Status: `open` → `acknowledged` → `resolved` | `rejected`
//! (both final, with a resolution text); every change is a `complaint_events`
//! row (who, when, what they wrote). Each cause has a due time
//! (`[complaints] due_hours`); an open or acknowledged complaint past it is
//! overdue. The rate of complaints per 10,000 MTs is the input of the
//! complaint-spike detector ([`crate::compliance::detectors`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, now_ms};

/// Causes of a complaint.
pub const CAUSES: [&str; 4] = ["content", "channel", "billing", "unsubscribe"];

/// `[complaints]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplaintsConfig {
    /// Hours from filing until a complaint of each cause is due (resolved or
    /// rejected). Every cause in [`CAUSES`] needs one.
    pub due_hours: BTreeMap<String, u64>,
    /// The channels a complaint may come by.
    pub channels: Vec<String>,
    /// The platform's own contacts, shown on complaints routed to the platform.
    pub platform_contacts: Contacts,
}

impl Default for ComplaintsConfig {
    fn default() -> Self {
        Self {
            // Channel faults: coordinate with the operator "in the shortest time"
            // (agreement 5.2); the partner answers its users within a day.
            due_hours: [
                ("content", 24),
                ("channel", 4),
                ("billing", 48),
                ("unsubscribe", 24),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            channels: [
                "10086", "10010", "10000", "12321", "miit", "app", "email", "web", "phone", "other",
            ]
            .map(String::from)
            .to_vec(),
            platform_contacts: Contacts::default(),
        }
    }
}

impl ComplaintsConfig {
    /// # Errors
    /// The key and why it is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for cause in CAUSES {
            match self.due_hours.get(cause) {
                Some(h) if *h > 0 => {}
                _ => {
                    return Err((
                        "complaints.due_hours",
                        format!("`{cause}` needs a due time of at least 1 hour"),
                    ));
                }
            }
        }
        if let Some(unknown) = self
            .due_hours
            .keys()
            .find(|k| !CAUSES.contains(&k.as_str()))
        {
            return Err((
                "complaints.due_hours",
                format!("`{unknown}` is not a cause (content, channel, billing, unsubscribe)"),
            ));
        }
        if self.channels.is_empty() || self.channels.iter().any(String::is_empty) {
            return Err((
                "complaints.channels",
                "list at least one non-empty channel".into(),
            ));
        }
        Ok(())
    }
}

/// One contact point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Contact {
    pub name: String,
    pub phone: String,
    pub email: String,
}

/// A party's customer-service and technical-support contacts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Contacts {
    pub customer_service: Contact,
    pub technical_support: Contact,
}

/// Why a complaint operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ComplaintError {
    /// Bad input: the code names what (`invalid-cause`, `invalid-channel`…).
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error("{0}")]
    NotFound(String),
    /// The complaint is not in a state, or not routed to a party, that allows it.
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ComplaintError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Who handles a complaint first.
pub fn routed_to(cause: &str) -> &'static str {
    if cause == "channel" {
        "platform"
    } else {
        "partner"
    }
}

/// A complaint to file. Ids are checked by the caller (they belong to `partner_id`).
#[derive(Debug, Clone)]
pub struct NewComplaint {
    pub partner_id: i64,
    pub service_id: Option<i64>,
    pub msisdn: Option<String>,
    pub message_id: Option<i64>,
    pub channel: String,
    pub cause: String,
    pub note: String,
}

/// A stored complaint (times in Unix ms).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Complaint {
    pub id: i64,
    pub partner_id: i64,
    pub partner: String,
    pub service_id: Option<i64>,
    pub msisdn: Option<String>,
    pub message_id: Option<i64>,
    pub channel: String,
    pub cause: String,
    pub note: String,
    pub routed_to: String,
    pub status: String,
    pub due_at: i64,
    pub resolution: Option<String>,
    pub at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
}

impl Complaint {
    /// Still open or acknowledged after its due time.
    pub fn overdue(&self, now: i64) -> bool {
        matches!(self.status.as_str(), "open" | "acknowledged") && now > self.due_at
    }
}

/// One status change.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ComplaintEvent {
    pub status: String,
    pub actor: String,
    pub note: String,
    pub at: i64,
}

const COLUMNS: &str = "c.id, c.partner_id, p.name AS partner, c.service_id, c.msisdn, c.message_id,
    c.channel, c.cause, c.note, c.routed_to, c.status, c.due_at, c.resolution, c.at, c.updated_at,
    c.closed_at";

/// File a complaint: routed by its cause, due after `due_hours` of its cause.
///
/// # Errors
/// `invalid-cause`, `invalid-channel`, `invalid-note`; a store failure.
pub async fn file(
    store: &Store,
    config: &ComplaintsConfig,
    new: NewComplaint,
    actor: &str,
) -> Result<Complaint, ComplaintError> {
    let Some(hours) = config.due_hours.get(&new.cause).copied() else {
        return Err(ComplaintError::Invalid(
            "invalid-cause",
            format!("cause is one of {}", CAUSES.join(", ")),
        ));
    };
    if !config.channels.contains(&new.channel) {
        return Err(ComplaintError::Invalid(
            "invalid-channel",
            format!("channel is one of {}", config.channels.join(", ")),
        ));
    }
    check_text("invalid-note", "note", &new.note)?;
    let now = now_ms();
    let due = i64::try_from(hours.saturating_mul(3_600_000))
        .ok()
        .and_then(|d| now.checked_add(d))
        .unwrap_or(i64::MAX);
    let mut tx = store.begin_write().await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO complaints (partner_id, service_id, msisdn, message_id, cause, note, at,
            channel, routed_to, status, due_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', $10, $7) RETURNING id",
    )
    .bind(new.partner_id)
    .bind(new.service_id)
    .bind(&new.msisdn)
    .bind(new.message_id)
    .bind(&new.cause)
    .bind(&new.note)
    .bind(now)
    .bind(&new.channel)
    .bind(routed_to(&new.cause))
    .bind(due)
    .fetch_one(&mut *tx)
    .await?;
    event(&mut tx, id, "open", actor, &new.note, now).await?;
    tx.commit().await?;
    get(store, id, None).await
}

fn check_text(code: &'static str, field: &str, text: &str) -> Result<(), ComplaintError> {
    if text.chars().count() > 2000 {
        return Err(ComplaintError::Invalid(
            code,
            format!("{field} is at most 2000 characters"),
        ));
    }
    Ok(())
}

async fn event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: i64,
    status: &str,
    actor: &str,
    note: &str,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO complaint_events (complaint_id, status, actor, note, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(status)
    .bind(actor)
    .bind(note)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One complaint; with `partner_id`, only that partner's (another's is not found).
///
/// # Errors
/// Not found; a store failure.
pub async fn get(
    store: &Store,
    id: i64,
    partner_id: Option<i64>,
) -> Result<Complaint, ComplaintError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM complaints c JOIN partners p ON p.id = c.partner_id
         WHERE c.id = $1 AND ($2 IS NULL OR c.partner_id = $2)"
    ))
    .bind(id)
    .bind(partner_id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| ComplaintError::NotFound(format!("no complaint {id}")))
}

/// A complaint's status history, oldest first.
///
/// # Errors
/// A store failure.
pub async fn history(store: &Store, id: i64) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    Ok(sqlx::query_as(
        "SELECT status, actor, note, at FROM complaint_events WHERE complaint_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await?)
}

/// Which complaints a list shows.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    pub partner_id: Option<i64>,
    pub status: Option<&'a str>,
    pub cause: Option<&'a str>,
    pub routed_to: Option<&'a str>,
    /// Only those open or acknowledged past their due time.
    pub overdue: bool,
    /// Ids below this (the cursor), newest first.
    pub before: Option<i64>,
    pub limit: i64,
}

/// Complaints newest first.
///
/// # Errors
/// A store failure.
pub async fn list(store: &Store, f: &Filter<'_>) -> Result<Vec<Complaint>, ComplaintError> {
    let overdue = if f.overdue {
        " AND c.status IN ('open', 'acknowledged') AND c.due_at < $7"
    } else {
        " AND $7 = $7"
    };
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM complaints c JOIN partners p ON p.id = c.partner_id
         WHERE ($1 IS NULL OR c.partner_id = $1) AND ($2 IS NULL OR c.status = $2)
           AND ($3 IS NULL OR c.cause = $3) AND ($4 IS NULL OR c.routed_to = $4)
           AND c.id < $5{overdue}
         ORDER BY c.id DESC LIMIT $6"
    ))
    .bind(f.partner_id)
    .bind(f.status)
    .bind(f.cause)
    .bind(f.routed_to)
    .bind(f.before.unwrap_or(i64::MAX))
    .bind(f.limit)
    .bind(now_ms())
    .fetch_all(store.pool())
    .await?)
}

/// Who acts on a complaint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// The platform (admin): complaints routed to the platform.
    Platform,
    /// A partner: its own complaints routed to it.
    Partner(i64),
}

/// Acknowledge (`acknowledged`), resolve (`resolved`) or reject (`rejected`) a
/// complaint. Resolving and rejecting need a resolution text; acknowledging
/// takes an optional note. Only the party it is routed to may act; a partner's
/// attempt on another partner's complaint is not found.
///
/// # Errors
/// `invalid-action`, `resolution-required`, `invalid-resolution`,
/// 409 `routed-to-platform` / `routed-to-partner`, `complaint-closed`,
/// `already-acknowledged`; not found; a store failure.
pub async fn act(
    store: &Store,
    id: i64,
    handler: Handler,
    action: &str,
    text: &str,
    actor: &str,
) -> Result<Complaint, ComplaintError> {
    let status = match action {
        "acknowledge" => "acknowledged",
        "resolve" => "resolved",
        "reject" => "rejected",
        _ => {
            return Err(ComplaintError::Invalid(
                "invalid-action",
                format!("`{action}` is not acknowledge, resolve or reject"),
            ));
        }
    };
    let text = text.trim();
    check_text("invalid-resolution", "resolution", text)?;
    let closing = status != "acknowledged";
    if closing && text.is_empty() {
        return Err(ComplaintError::Invalid(
            "resolution-required",
            format!("to {action} a complaint, say how in `resolution`"),
        ));
    }
    let scope = match handler {
        Handler::Partner(p) => Some(p),
        Handler::Platform => None,
    };
    let current = get(store, id, scope).await?;
    match (handler, current.routed_to.as_str()) {
        (Handler::Partner(_), "platform") => {
            return Err(ComplaintError::Conflict(
                "routed-to-platform",
                format!("complaint {id} has a channel cause: the platform handles it"),
            ));
        }
        (Handler::Platform, "partner") => {
            return Err(ComplaintError::Conflict(
                "routed-to-partner",
                format!(
                    "complaint {id} is routed to partner {} first; it acts on it",
                    current.partner
                ),
            ));
        }
        _ => {}
    }
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    // The status read and changed in one statement: two handlers cannot both close it.
    let allowed = if closing {
        "('open', 'acknowledged')"
    } else {
        "('open')"
    };
    let changed = sqlx::query(&format!(
        "UPDATE complaints SET status = $1, updated_at = $2,
            resolution = CASE WHEN $3 = 1 THEN $4 ELSE resolution END,
            closed_at = CASE WHEN $3 = 1 THEN $2 ELSE closed_at END
         WHERE id = $5 AND status IN {allowed}"
    ))
    .bind(status)
    .bind(now)
    .bind(i64::from(closing))
    .bind(text)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        let (code, why) = if current.status == "acknowledged" {
            ("already-acknowledged", "is already acknowledged")
        } else {
            ("complaint-closed", "is closed")
        };
        return Err(ComplaintError::Conflict(
            code,
            format!("complaint {id} {why} ({})", current.status),
        ));
    }
    event(&mut tx, id, status, actor, text, now).await?;
    tx.commit().await?;
    get(store, id, scope).await
}

/// A partner's contacts; empty fields when none were set.
///
/// # Errors
/// A store failure.
pub async fn contacts(store: &Store, partner_id: i64) -> Result<Contacts, StoreError> {
    type Row = (String, String, String, String, String, String);
    let row: Option<Row> = sqlx::query_as(
        "SELECT cs_name, cs_phone, cs_email, tech_name, tech_phone, tech_email
         FROM partner_contacts WHERE partner_id = $1",
    )
    .bind(partner_id)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.map_or_else(Contacts::default, |r| Contacts {
        customer_service: Contact {
            name: r.0,
            phone: r.1,
            email: r.2,
        },
        technical_support: Contact {
            name: r.3,
            phone: r.4,
            email: r.5,
        },
    }))
}

/// Set a partner's contacts. Each field at most 200 characters, and a
/// customer-service phone or e-mail is required: users must be able to reach it.
///
/// # Errors
/// `invalid-contacts`; a store failure.
pub async fn set_contacts(
    store: &Store,
    partner_id: i64,
    c: &Contacts,
    actor: &str,
) -> Result<Contacts, ComplaintError> {
    let fields = [
        &c.customer_service.name,
        &c.customer_service.phone,
        &c.customer_service.email,
        &c.technical_support.name,
        &c.technical_support.phone,
        &c.technical_support.email,
    ];
    if fields
        .iter()
        .any(|f| f.chars().count() > 200 || f.chars().any(char::is_control))
    {
        return Err(ComplaintError::Invalid(
            "invalid-contacts",
            "each contact field is at most 200 characters, without control characters".into(),
        ));
    }
    if c.customer_service.phone.trim().is_empty() && c.customer_service.email.trim().is_empty() {
        return Err(ComplaintError::Invalid(
            "invalid-contacts",
            "customer_service needs a phone or an email".into(),
        ));
    }
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO partner_contacts (partner_id, cs_name, cs_phone, cs_email, tech_name, tech_phone,
            tech_email, updated_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (partner_id) DO UPDATE SET cs_name = excluded.cs_name,
            cs_phone = excluded.cs_phone, cs_email = excluded.cs_email,
            tech_name = excluded.tech_name, tech_phone = excluded.tech_phone,
            tech_email = excluded.tech_email, updated_by = excluded.updated_by,
            updated_at = excluded.updated_at",
    )
    .bind(partner_id)
    .bind(fields[0].trim())
    .bind(fields[1].trim())
    .bind(fields[2].trim())
    .bind(fields[3].trim())
    .bind(fields[4].trim())
    .bind(fields[5].trim())
    .bind(actor)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(contacts(store, partner_id).await?)
}

/// History retention: delete at most `batch` complaints closed
/// (`resolved` or `rejected`) before `cutoff_ms` (Unix ms), with their
/// `complaint_events`, in one transaction; returns how many complaints went. An
/// open or acknowledged complaint stays however old it is: it is still being
/// handled.
///
/// # Errors
/// A store failure; the batch is then left whole.
pub async fn purge_closed_batch(
    store: &Store,
    cutoff_ms: i64,
    batch: i64,
) -> Result<u64, StoreError> {
    let mut tx = store.begin_write().await?;
    let ids: Vec<(i64,)> = sqlx::query_as(
        "SELECT id FROM complaints
         WHERE status IN ('resolved', 'rejected') AND closed_at < $1 ORDER BY id LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(batch.max(1))
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    // Integers from the store.
    let ids = ids
        .iter()
        .map(|(id,)| id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    sqlx::query(&format!(
        "DELETE FROM complaint_events WHERE complaint_id IN ({ids})"
    ))
    .execute(&mut *tx)
    .await?;
    let gone = sqlx::query(&format!("DELETE FROM complaints WHERE id IN ({ids})"))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(gone)
}
