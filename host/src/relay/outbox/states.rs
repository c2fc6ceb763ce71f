//! State changes of waiting MTs that other parts decide and the outbox makes, in
//! the caller's transaction so they commit with the decision: a suspension holds
//! and a resumption releases, an unsubscription withdraws, a
//! terminated agreement fails what can no longer leave.

/// A `sqlx` transaction of the caller.
type Tx<'t> = sqlx::Transaction<'t, sqlx::Any>;

/// Whose MTs a suspension holds or a resumption releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Every MT of the partner (releasing skips those of its suspended services).
    Partner(i64),
    /// Every MT of one service.
    Service(i64),
}

impl Holder {
    /// The `messages` filter, with the id at `$1`.
    fn filter(self, releasing: bool) -> &'static str {
        match (self, releasing) {
            (Self::Partner(_), false) => "partner_id = $1",
            (Self::Partner(_), true) => {
                "partner_id = $1 AND (service_id IS NULL OR service_id NOT IN (SELECT id FROM services WHERE status = 'suspended'))"
            }
            (Self::Service(_), _) => "service_id = $1",
        }
    }

    fn id(self) -> i64 {
        match self {
            Self::Partner(id) | Self::Service(id) => id,
        }
    }
}

/// queued MTs of `holder` become `held` (nothing of a suspended partner
/// leaves). Returns how many.
pub async fn hold_in(tx: &mut Tx<'_>, holder: Holder, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(&format!(
        "UPDATE messages SET status = 'held', updated_at = $2 WHERE {} AND status = 'queued'",
        holder.filter(false)
    ))
    .bind(holder.id())
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Held MTs of `holder` go back to the queue; the sweeper expires those past their
/// validity. Returns how many.
pub async fn release_in(tx: &mut Tx<'_>, holder: Holder, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(&format!(
        "UPDATE messages SET status = 'queued', updated_at = $2 WHERE {} AND status = 'held'",
        holder.filter(true)
    ))
    .bind(holder.id())
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// the user `recipient` left `service_id`: everything of that service still
/// waiting for them (pushes and module replies alike; host notices have no
/// service) is withdrawn, `cancelled` with `reason`. Returns how many.
pub async fn withdraw_in(
    tx: &mut Tx<'_>,
    service_id: i64,
    recipient: &str,
    reason: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let withdrawn: Vec<(i64,)> = sqlx::query_as(
        "UPDATE messages SET status = 'cancelled', failure_reason = $4, done_at = $1, updated_at = $1
         WHERE service_id = $2 AND recipient = $3 AND status IN ('queued', 'held')
         RETURNING id",
    )
    .bind(now)
    .bind(service_id)
    .bind(recipient)
    .bind(reason)
    .fetch_all(&mut **tx)
    .await?;
    // Each withdrawal is in the history (the statistics count it from there).
    for (id,) in &withdrawn {
        sqlx::query(
            "INSERT INTO message_events (message_id, status, detail, at) VALUES ($1, 'cancelled', $2, $3)",
        )
        .bind(id)
        .bind(reason)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(u64::try_from(withdrawn.len()).unwrap_or(u64::MAX))
}

/// What was still waiting to leave for `partner_id` never will (its agreement
/// ended): it ends `failed` with `reason`, visible per message and in its history,
/// not silently dropped. Returns how many.
pub async fn fail_queued_in(
    tx: &mut Tx<'_>,
    partner_id: i64,
    reason: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO message_events (message_id, status, detail, at)
         SELECT id, 'failed', $2, $3 FROM messages WHERE partner_id = $1 AND status IN ('queued', 'held')",
    )
    .bind(partner_id)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(sqlx::query(
        "UPDATE messages SET status = 'failed', failure_reason = $2, done_at = $3, updated_at = $3
         WHERE partner_id = $1 AND status IN ('queued', 'held')",
    )
    .bind(partner_id)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}
