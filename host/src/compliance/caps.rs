//! The caps on how many MTs may leave, in one place for every path
//! into the outbox: a push fanned out to a million subscribers and a module's reply
//! to one MO count against the same counters with the same rule.
//!
//! - **Monthly, per subscription**: at most [`Caps::monthly`] MTs under one
//!   subscription per platform month (`subscription_usage`). Pushes count under
//!   their subscription; a reply of a capped service counts under the recipient's
//!   active subscription to it, if they hold one.
//! - **Daily, per partner**: at most [`Caps::daily`] MTs of one partner queued per
//!   platform day (`partner_daily_usage`).
//!
//! The outbox's gate asks for room and counts inside the write transaction that
//! queues the MTs, so racing writers cannot both spend the last of an allowance: on
//! SQLite the transaction holds the write lock; on PostgreSQL the partner's day row
//! is locked first ([`Caps::daily_left_in`]). Counters are written only for a cap
//! that is set.

use super::Blocked;

/// A `sqlx` write transaction.
type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The caps one service's MTs are under (see [`super::Compliance::caps`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Most MTs one subscription may get per platform month.
    pub monthly: Option<i64>,
    /// Most MTs the partner may queue per platform day.
    pub daily: Option<i64>,
}

impl Caps {
    /// The monthly rule as an SQL predicate over the subscription id in `column`:
    /// true while it has room in the month bound at placeholder `month` (`$n`).
    /// `None` when no monthly cap applies. Used by the single-MT check and by the
    /// set-based push alike.
    pub fn monthly_room_sql(&self, column: &str, month: &str) -> Option<String> {
        self.monthly.map(|cap| {
            format!(
                "COALESCE((SELECT u.messages FROM subscription_usage u
                   WHERE u.subscription_id = {column} AND u.month = {month}), 0) < {cap}"
            )
        })
    }

    /// How many more MTs the partner may queue on `day` (`None`: no daily cap). On
    /// PostgreSQL the no-op upsert locks the partner's row until commit.
    pub async fn daily_left_in(
        &self,
        tx: &mut Tx,
        partner_id: i64,
        day: &str,
    ) -> Result<Option<i64>, Blocked> {
        let Some(cap) = self.daily else {
            return Ok(None);
        };
        let (used,): (i64,) = sqlx::query_as(
            "INSERT INTO partner_daily_usage (partner_id, day, messages) VALUES ($1, $2, 0)
             ON CONFLICT (partner_id, day) DO UPDATE SET messages = partner_daily_usage.messages
             RETURNING messages",
        )
        .bind(partner_id)
        .bind(day)
        .fetch_one(&mut **tx)
        .await?;
        Ok(Some(cap.saturating_sub(used).max(0)))
    }

    /// Whether one more MT may go to `subscription` (the monthly cap, if it is
    /// under one) and from `partner_id` (the daily cap); counts it when it may.
    pub async fn take_one_in(
        &self,
        tx: &mut Tx,
        partner_id: i64,
        subscription: Option<i64>,
        month: &str,
        day: &str,
    ) -> Result<(), Blocked> {
        if let (Some(subscription_id), Some(cap), Some(room)) = (
            subscription,
            self.monthly,
            self.monthly_room_sql("$1", "$2"),
        ) {
            let (has_room,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) WHERE {room}"))
                .bind(subscription_id)
                .bind(month)
                .fetch_one(&mut **tx)
                .await?;
            if has_room == 0 {
                return Err(Blocked::MonthlyCap(cap));
            }
        }
        if let (Some(cap), Some(left)) =
            (self.daily, self.daily_left_in(tx, partner_id, day).await?)
            && left == 0
        {
            return Err(Blocked::DailyCap(cap));
        }
        let counted = subscription.filter(|_| self.monthly.is_some());
        self.count_in(tx, partner_id, 1, counted.map(Counted::One), month, day)
            .await
    }

    /// Count `queued` MTs just written: against the partner's day, and (monthly
    /// cap) each against its subscription's month.
    pub async fn count_in(
        &self,
        tx: &mut Tx,
        partner_id: i64,
        queued: i64,
        subscriptions: Option<Counted<'_>>,
        month: &str,
        day: &str,
    ) -> Result<(), Blocked> {
        if queued == 0 {
            return Ok(());
        }
        if self.monthly.is_some() {
            match subscriptions {
                Some(Counted::One(subscription_id)) => {
                    sqlx::query(
                        "INSERT INTO subscription_usage (subscription_id, month, messages) VALUES ($1, $2, 1)
                         ON CONFLICT (subscription_id, month) DO UPDATE SET messages = subscription_usage.messages + 1",
                    )
                    .bind(subscription_id)
                    .bind(month)
                    .execute(&mut **tx)
                    .await?;
                }
                Some(Counted::Written(filter)) => {
                    // One MT per subscription and run (the unique key), so no
                    // subscription appears twice in the SELECT.
                    sqlx::query(&format!(
                        "INSERT INTO subscription_usage (subscription_id, month, messages)
                         SELECT subscription_id, $1, 1 FROM messages WHERE {filter}
                         ON CONFLICT (subscription_id, month) DO UPDATE SET messages = subscription_usage.messages + 1"
                    ))
                    .persistent(false)
                    .bind(month)
                    .execute(&mut **tx)
                    .await?;
                }
                None => {}
            }
        }
        if self.daily.is_some() {
            sqlx::query(
                "INSERT INTO partner_daily_usage (partner_id, day, messages) VALUES ($1, $2, $3)
                 ON CONFLICT (partner_id, day) DO UPDATE SET messages = partner_daily_usage.messages + $3",
            )
            .bind(partner_id)
            .bind(day)
            .bind(queued)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// Which subscriptions MTs just written count under.
#[derive(Debug, Clone, Copy)]
pub enum Counted<'a> {
    /// One MT under this subscription.
    One(i64),
    /// The `messages` rows matching this SQL filter (integer literals only), each
    /// under its `subscription_id`, at most one per subscription.
    Written(&'a str),
}
