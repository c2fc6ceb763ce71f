//! The gate for a push: one slice of a run's
//! subscriptions admitted set-based, in SQL, with no row passing through the host.
//!
//! In the caller's write transaction (the fan-out's, which moves the run's cursor
//! with the rows):
//! 1. the partner and service may send, under lock;
//! 2. the slice is bounded: the next `limit` active subscriptions of the service by
//!    id (being `active` is the opt-in basis, R-3.2);
//! 3. one `INSERT … SELECT` writes the MTs: the variant is chosen by `CASE` on the
//!    subscriber's attribute (`text_for` semantics: the variant of the value, else
//!    the fallback) or, for a per-operator bulletin, on the operator of the
//!    number's block ([`crate::relay::numbering`]), the operator by `CASE` on the number's prefix (longest first),
//!    subscriptions whose variant the content policy refused, that have no variant,
//!    or whose number is not routable are left out, and so are those over the
//!    monthly cap (the same SQL predicate a reply is checked with) and, past the
//!    partner's daily room, the rest (`LIMIT`);
//! 4. segments, first events and the cap counters are written set-based from the
//!    rows just written (`push_run_id` and the slice's id range, on the unique
//!    index `(push_run_id, subscription_id)`);
//! 5. refusals by a cap are recorded as one violation per slice and rule.
//!
//! Under a canary (issue 17 item 4) the slice carries the canary's variants too:
//! a subscription in the cohort (`subscriptions::cohort`) gets the
//! canary's text and the canary's version digest, the others the active
//! version's; both sets are judged, capped and counted the same way.
//!
//! `UNIQUE (push_run_id, subscription_id)` is the last guard (`ON CONFLICT DO
//! NOTHING`): a subscription never gets a run's MT twice.

use std::fmt::Write;

use tongdao_link::Alphabet;

use super::{ChargePlan, Gate, OutboxError, content_key, fingerprint};
use crate::compliance::{Blocked, Counted, NewViolation, day_key, month_key};
use crate::services::LiveService;
use crate::store::{Backend, Store};

/// A `sqlx` write transaction.
type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// One text of a push as the gate writes it.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The attribute value it is for (or a reserved key for the fallback or the
    /// single text).
    pub key: String,
    pub text: String,
    pub sha256: String,
    /// `messages.content_key` (the fee-only detector groups by it).
    pub content_key: String,
    /// Segments under SMPP's [`Alphabet::Auto`] (GSM 7-bit 160 / 153, else UCS-2).
    pub segments: i64,
    /// Segments under CMPP's [`Alphabet::Ascii`] (ASCII 159 / 153, else UCS-2): what
    /// MTs to CMPP operators are sent in (issue 16 item 3).
    pub ascii_segments: i64,
    /// Refused by the content policy (R-3.1, checked when the run took its
    /// bulletin): its subscribers get nothing.
    pub blocked: bool,
}

impl Variant {
    pub fn new(key: &str, text: &str, blocked: bool) -> Self {
        let (segments, sha256) = fingerprint(text);
        let ascii = tongdao_link::encode::segment_count_in(text, Alphabet::Ascii);
        Self {
            key: key.to_string(),
            text: text.to_string(),
            sha256,
            content_key: content_key(text),
            segments: i64::try_from(segments).unwrap_or(i64::MAX),
            ascii_segments: i64::try_from(ascii).unwrap_or(i64::MAX),
            blocked,
        }
    }
}

/// The canary's part of a push slice: the subscriptions of its cohort get its
/// variants (issue 17 item 4).
#[derive(Debug, Clone, Copy)]
pub struct CanarySlice<'a> {
    /// The canary's `module_versions.id`.
    pub module_version_id: i64,
    /// The cohort: `subscriptions::cohort::in_cohort(subscription id, percent)`.
    pub percent: u32,
    pub attribute: Option<&'a str>,
    /// Keyed by the operator of the number block, as [`PushSlice::by_operator`].
    pub by_operator: bool,
    pub variants: &'a [Variant],
    pub fallback: Option<usize>,
}

/// A slice of a push run handed to the gate: the active subscriptions of
/// `service` with `after < id <= up_to`, at most `limit`, by id.
#[derive(Debug, Clone, Copy)]
pub struct PushSlice<'a> {
    pub run_id: i64,
    pub service: &'a LiveService,
    pub charge_plan: ChargePlan,
    /// Charged per MT (per-message services), in fen.
    pub price_fen: i64,
    /// Source address (the service's number).
    pub sender: Option<&'a str>,
    /// The module version that wrote the bulletin, for violations.
    pub module_version_id: Option<i64>,
    /// The subscriber attribute the variants are keyed on (None: `variants[0]`
    /// for everyone).
    pub attribute: Option<&'a str>,
    /// The variants are keyed by the operator of the subscriber's number block
    /// (`tongdao:partner@1.1.0`), not by an attribute.
    pub by_operator: bool,
    pub variants: &'a [Variant],
    /// The variant of subscribers whose attribute has no variant of its own.
    pub fallback: Option<usize>,
    /// A canary's variants for its cohort (None: everyone gets `variants`).
    pub canary: Option<CanarySlice<'a>>,
    pub after: i64,
    pub up_to: i64,
    pub limit: u32,
    /// Unix ms of the admission (quiet hours, month and day keys, `created_at`).
    pub now: i64,
}

/// What the gate did with a slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushAdmitted {
    /// The highest subscription id of the slice (the run's next cursor); `None`:
    /// no active subscription was left.
    pub last_id: Option<i64>,
    /// Active subscriptions in the slice.
    pub subscribers: i64,
    /// MTs written.
    pub queued: i64,
    /// Their variant was refused by the content policy.
    pub blocked: i64,
    /// Over the subscription's monthly cap or the partner's daily cap.
    pub held: i64,
    /// No variant for their attribute and no fallback, or an unroutable number.
    pub skipped: i64,
    /// When the MTs may leave (the end of quiet hours, R-8.4).
    pub release_at: i64,
}

/// Text parameters of a statement, numbered as they are added.
#[derive(Default)]
struct Params(Vec<Option<String>>);

impl Params {
    fn add(&mut self, value: Option<&str>) -> String {
        self.0.push(value.map(str::to_string));
        format!("${}", self.0.len())
    }

    fn bind<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let mut query = sqlx::query(sql).persistent(false);
        for value in &self.0 {
            query = query.bind(value.as_deref());
        }
        query
    }
}

/// Admit one slice of a push (see the module docs). A refusal of the whole slice
/// (the partner or service may not send) is `Err(OutboxError::Blocked)`; the
/// caller rolls back.
pub async fn admit_push_in(
    store: &Store,
    tx: &mut Tx,
    gate: Gate<'_>,
    slice: &PushSlice<'_>,
) -> Result<PushAdmitted, OutboxError> {
    let service = slice.service;
    gate.compliance
        .may_send_in(tx, service.partner_id, service.id)
        .await?;
    let now = slice.now;
    let release_at = gate.compliance.push_release_at(now);
    let mut admitted = PushAdmitted {
        release_at,
        ..PushAdmitted::default()
    };

    let (subscribers, last_id): (i64, Option<i64>) = sqlx::query_as(&format!(
        "SELECT COUNT(*), MAX(id) FROM (SELECT id FROM subscriptions
           WHERE service_id = {} AND status = 'active' AND id > {} AND id <= {}
           ORDER BY id LIMIT {}) b",
        service.id, slice.after, slice.up_to, slice.limit
    ))
    .persistent(false)
    .fetch_one(&mut **tx)
    .await?;
    let Some(last_id) = last_id else {
        return Ok(admitted);
    };
    admitted.last_id = Some(last_id);
    admitted.subscribers = subscribers;
    // Every text of the slice: the active version's, then the canary's.
    let all: Vec<&Variant> = slice
        .variants
        .iter()
        .chain(slice.canary.iter().flat_map(|c| c.variants.iter()))
        .collect();
    if all.is_empty() {
        // A keyed bulletin with no text at all: nobody has a variant.
        admitted.skipped = subscribers;
        return Ok(admitted);
    }

    let caps = gate.compliance.caps(service);
    let month = month_key(now);
    let day = day_key(now);
    let daily_left = caps.daily_left_in(tx, service.partner_id, &day).await?;

    // The subscriptions of the slice with their variant (`v`) and operator (`op`).
    let mut params = Params::default();
    let source = source_sql(store.backend(), gate, slice, last_id, &mut params);
    let blocked: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(_, v)| v.blocked)
        .map(|(i, _)| i.to_string())
        .collect();
    let not_blocked = if blocked.is_empty() {
        String::new()
    } else {
        format!(" AND x.v NOT IN ({})", blocked.join(","))
    };
    // Bound only when used: PostgreSQL refuses parameters a statement lacks.
    let room = caps
        .monthly
        .and_then(|_| caps.monthly_room_sql("x.id", &params.add(Some(&month))));

    // Why subscriptions are left out, counted only when something but routing can
    // leave them out (the common case, one text for all and no caps, needs none).
    let may_leave_out = !blocked.is_empty()
        || room.is_some()
        || daily_left.is_some()
        || ((slice.attribute.is_some() || slice.by_operator) && slice.fallback.is_none())
        || slice
            .canary
            .is_some_and(|c| (c.attribute.is_some() || c.by_operator) && c.fallback.is_none());
    let mut eligible = None;
    if may_leave_out {
        let is_blocked = if blocked.is_empty() {
            "0 = 1".to_string()
        } else {
            format!("x.v IN ({})", blocked.join(","))
        };
        let over = room
            .as_deref()
            .map_or_else(|| "0 = 1".to_string(), |room| format!("NOT ({room})"));
        let (skipped, blocked_n, over_month): (i64, i64, i64) = params
            .bind(&format!(
                "SELECT
                   COALESCE(SUM(CASE WHEN x.v IS NULL OR x.op IS NULL THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN x.v IS NOT NULL AND x.op IS NOT NULL AND {is_blocked} THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN x.v IS NOT NULL AND x.op IS NOT NULL AND NOT ({is_blocked}) AND {over} THEN 1 ELSE 0 END), 0)
                 FROM ({source}) x"
            ))
            .try_map(|row: sqlx::any::AnyRow| {
                use sqlx::Row;
                Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
            })
            .fetch_one(&mut **tx)
            .await?;
        admitted.skipped = skipped;
        admitted.blocked = blocked_n;
        admitted.held = over_month;
        eligible = Some(subscribers - skipped - blocked_n - over_month);
        if over_month > 0
            && let Some(cap) = caps.monthly
        {
            refused(tx, gate, slice, over_month, &Blocked::MonthlyCap(cap)).await?;
        }
    }
    let limit = match daily_left {
        Some(left) => {
            let over_day = eligible.map_or(0, |e| e.saturating_sub(left).max(0));
            admitted.held += over_day;
            if over_day > 0
                && let Some(cap) = caps.daily
            {
                refused(tx, gate, slice, over_day, &Blocked::DailyCap(cap)).await?;
            }
            format!(" LIMIT {left}")
        }
        None => String::new(),
    };

    let code = params.add(Some(&service.code));
    let plan = params.add(Some(slice.charge_plan.as_str()));
    let sender = params.add(slice.sender);
    let text = variant_case(&all, &mut params, |v| Some(v.text.clone()), &[]);
    let sha = variant_case(&all, &mut params, |v| Some(v.sha256.clone()), &[]);
    let key = variant_case(&all, &mut params, |v| Some(v.content_key.clone()), &[]);
    // Segment counts are integers: written as literals, per the operator's alphabet
    // where it makes a difference (a CMPP operator's ASCII holds 159, not 160).
    let differs = all.iter().any(|v| v.ascii_segments != v.segments);
    let ascii_operators: Vec<String> = if differs {
        gate.routes
            .operators_with(Alphabet::Ascii)
            .iter()
            .map(|name| params.add(Some(name.as_str())))
            .collect()
    } else {
        Vec::new()
    };
    let segments = variant_case(&all, &mut params, |_| None, &ascii_operators);
    // The module version's digest, kept on every MT for the regulator, and
    // the hash of the bulletin call's inputs the run stored (issue 17 item 6).
    let (mut version, mut version_sha) = match slice.module_version_id {
        Some(v) => (
            v.to_string(),
            format!("(SELECT v.sha256 FROM module_versions v WHERE v.id = {v})"),
        ),
        None => ("NULL".to_string(), "NULL".to_string()),
    };
    if let Some(canary) = slice.canary {
        // The canary's texts are the variants from `slice.variants.len()` on.
        let first = slice.variants.len();
        let c = canary.module_version_id;
        version = format!("CASE WHEN x.v >= {first} THEN {c} ELSE {version} END");
        version_sha = format!(
            "CASE WHEN x.v >= {first} THEN (SELECT v.sha256 FROM module_versions v WHERE v.id = {c}) ELSE {version_sha} END"
        );
    }
    let room_filter = room.map(|r| format!(" AND {r}")).unwrap_or_default();
    let expires_at = gate.expires_at(release_at);
    let sql = format!(
        "INSERT INTO messages (partner_id, service, recipient, operator, text, content_sha256, segments,
            charge_plan, is_test, status, attempts, next_attempt_at, expires_at, created_at, updated_at,
            service_id, subscription_id, price_fen, sender, basis, push_run_id, content_key,
            module_version_id, module_sha256, input_sha256)
         SELECT {partner}, {code}, x.msisdn, x.op, {text}, {sha}, {segments},
            {plan}, 0, 'queued', 0, {release_at}, {expires_at}, {now}, {now},
            {service_id}, x.id, {price}, {sender}, 'subscription', {run}, {key},
            {version}, {version_sha}, (SELECT r.input_sha256 FROM push_runs r WHERE r.id = {run})
         FROM ({source}) x
         WHERE x.v IS NOT NULL AND x.op IS NOT NULL{not_blocked}{room_filter}
         ORDER BY x.id{limit}
         ON CONFLICT DO NOTHING",
        partner = service.partner_id,
        service_id = service.id,
        price = slice.price_fen,
        run = slice.run_id,
    );
    let queued = i64::try_from(params.bind(&sql).execute(&mut **tx).await?.rows_affected())
        .unwrap_or(i64::MAX);
    admitted.queued = queued;
    if eligible.is_none() {
        // Nothing but routing (or a race on the unique key) left them out.
        admitted.skipped = subscribers - queued;
    }
    if queued == 0 {
        return Ok(admitted);
    }

    // The rows just written: this run's, in the slice's id range (the claim on the
    // run keeps every other writer out of it until commit).
    let written_by = |alias: &str| {
        format!(
            "{alias}push_run_id = {} AND {alias}subscription_id > {} AND {alias}subscription_id <= {last_id}",
            slice.run_id, slice.after
        )
    };
    let written = written_by("");
    let max_segments = all
        .iter()
        .map(|v| v.segments.max(v.ascii_segments))
        .max()
        .unwrap_or(1)
        .max(1);
    let segment_sql = if max_segments == 1 {
        format!(
            "INSERT INTO message_segments (message_id, seq, operator, status)
             SELECT id, 1, operator, 'queued' FROM messages WHERE {written}"
        )
    } else {
        let seqs: Vec<String> = (1..=max_segments)
            .map(|n| format!("SELECT {n} AS seq"))
            .collect();
        format!(
            "INSERT INTO message_segments (message_id, seq, operator, status)
             SELECT m.id, n.seq, m.operator, 'queued'
             FROM messages m JOIN ({}) n ON n.seq <= m.segments WHERE {}",
            seqs.join(" UNION ALL "),
            written_by("m.")
        )
    };
    sqlx::query(&segment_sql)
        .persistent(false)
        .execute(&mut **tx)
        .await?;
    let detail = if release_at > now {
        format!("push run {}; held for quiet hours", slice.run_id)
    } else {
        format!("push run {}", slice.run_id)
    };
    sqlx::query(&format!(
        "INSERT INTO message_events (message_id, status, detail, at)
         SELECT id, 'queued', $1, {now} FROM messages WHERE {written}"
    ))
    .persistent(false)
    .bind(&detail)
    .execute(&mut **tx)
    .await?;
    caps.count_in(
        tx,
        service.partner_id,
        queued,
        Some(Counted::Written(&written)),
        &month,
        &day,
    )
    .await?;
    Ok(admitted)
}

/// The slice's subscriptions with `v` (variant index or NULL) and `op` (operator
/// or NULL when unroutable).
fn source_sql(
    backend: Backend,
    gate: Gate<'_>,
    slice: &PushSlice<'_>,
    last_id: i64,
    params: &mut Params,
) -> String {
    let (mut join, mut variant) = keyed_variant(
        ("a", 0),
        (
            slice.attribute,
            slice.by_operator,
            slice.variants,
            slice.fallback,
        ),
        params,
    );
    if let Some(canary) = slice.canary {
        let (canary_join, canary_variant) = keyed_variant(
            ("ca", slice.variants.len()),
            (
                canary.attribute,
                canary.by_operator,
                canary.variants,
                canary.fallback,
            ),
            params,
        );
        join.push_str(&canary_join);
        variant = format!(
            "CASE WHEN {} THEN {canary_variant} ELSE {variant} END",
            crate::subscriptions::cohort::cohort_sql("s.id", canary.percent)
        );
    }
    // Routed numbers are 11 digits starting with 1, longest prefix first.
    let well_formed = match backend {
        Backend::Sqlite => format!("s.msisdn GLOB '1{}'", "[0-9]".repeat(10)),
        Backend::Postgres => "s.msisdn ~ '^1[0-9]{10}$'".to_string(),
    };
    let mut operator = format!("CASE WHEN NOT ({well_formed}) THEN NULL");
    for (prefix, name) in gate.routes.table() {
        let p = params.add(Some(prefix));
        let o = params.add(Some(name));
        let _ = write!(
            operator,
            " WHEN substr(s.msisdn, 1, {}) = {p} THEN {o}",
            prefix.chars().count()
        );
    }
    operator.push_str(" ELSE NULL END");
    format!(
        "SELECT s.id, s.msisdn, {variant} AS v, {operator} AS op
         FROM subscriptions s{join}
         WHERE s.service_id = {} AND s.status = 'active' AND s.id > {} AND s.id <= {last_id}",
        slice.service.id, slice.after
    )
}

/// The join and the expression giving a subscription's variant index among
/// `variants` (numbered from `first`): keyed on `attribute` through the join
/// alias `alias` (`text_for` semantics: the value's variant, else the fallback),
/// or, `by_operator`, on the operator of the number's block; else `first`.
fn keyed_variant(
    (alias, first): (&str, usize),
    (attribute, by_operator, variants, fallback): (Option<&str>, bool, &[Variant], Option<usize>),
    params: &mut Params,
) -> (String, String) {
    let otherwise = fallback.map_or_else(|| "NULL".to_string(), |f| (first + f).to_string());
    let Some(attribute) = attribute else {
        if by_operator {
            return (String::new(), operator_variant(first, variants, fallback));
        }
        return (String::new(), first.to_string());
    };
    let name = params.add(Some(attribute));
    let join = format!(
        " LEFT JOIN subscriber_attributes {alias} ON {alias}.partner_id = s.partner_id
           AND {alias}.subscriber_id = s.subscriber_id AND {alias}.name = {name}"
    );
    let mut case = String::new();
    for (i, v) in variants.iter().enumerate() {
        if Some(i) == fallback {
            continue;
        }
        // The first of duplicate keys wins, as `CASE` takes the first match.
        let key = params.add(Some(&v.key));
        let _ = write!(case, " WHEN {key} THEN {}", first + i);
    }
    let variant = if case.is_empty() {
        otherwise
    } else {
        format!("CASE {alias}.value{case} ELSE {otherwise} END")
    };
    (join, variant)
}

/// The variant of a per-operator bulletin (indices from `first`): `CASE` on the
/// number's three-digit block, each block of an operator with a text giving that
/// text's index, the rest the fallback. Blocks are digits: written as literals.
fn operator_variant(first: usize, variants: &[Variant], fallback: Option<usize>) -> String {
    let otherwise = fallback.map_or_else(|| "NULL".to_string(), |f| (first + f).to_string());
    let mut case = String::new();
    for (i, v) in variants.iter().enumerate() {
        if Some(i) == fallback {
            continue;
        }
        for block in crate::relay::numbering::blocks(&v.key) {
            let _ = write!(case, " WHEN '{block}' THEN {}", first + i);
        }
    }
    if case.is_empty() {
        otherwise
    } else {
        format!("CASE substr(s.msisdn, 1, 3){case} ELSE {otherwise} END")
    }
}

/// `CASE x.v WHEN 0 THEN … END` over the variants: a bound text from `text`, or
/// (when it gives `None`) the variant's segment count as a literal.
fn variant_case(
    variants: &[&Variant],
    params: &mut Params,
    text: impl Fn(&Variant) -> Option<String>,
    ascii_operators: &[String],
) -> String {
    let mut case = String::from("CASE x.v");
    for (i, v) in variants.iter().enumerate() {
        let value = match text(v) {
            Some(t) => params.add(Some(&t)),
            None if v.ascii_segments == v.segments || ascii_operators.is_empty() => {
                v.segments.to_string()
            }
            None => format!(
                "(CASE WHEN x.op IN ({}) THEN {} ELSE {} END)",
                ascii_operators.join(", "),
                v.ascii_segments,
                v.segments
            ),
        };
        let _ = write!(case, " WHEN {i} THEN {value}");
    }
    case.push_str(" END");
    case
}

/// Record `count` subscriptions of the slice refused by `blocked` (a cap) as one
/// violation of the partner, with the same reason a single MT gets.
async fn refused(
    tx: &mut Tx,
    gate: Gate<'_>,
    slice: &PushSlice<'_>,
    count: i64,
    blocked: &Blocked,
) -> Result<(), OutboxError> {
    let Some((kind, rule)) = super::admit::violation_rule(blocked) else {
        return Ok(());
    };
    let detail = format!(
        "{blocked} ({count} subscriber(s) of push run {} not sent)",
        slice.run_id
    );
    gate.compliance
        .record_violation_in(
            tx,
            NewViolation {
                partner_id: slice.service.partner_id,
                service_id: Some(slice.service.id),
                module_version_id: slice.module_version_id,
                kind,
                rule,
                detail: &detail,
                excerpt: None,
            },
        )
        .await?;
    Ok(())
}
