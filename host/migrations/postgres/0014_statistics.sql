-- Statistics per partner (issue 15 item 2, R-2.8, R-3.1): hourly aggregates kept
-- by one roll-up that reads each source by a durable cursor and adds to the rows in
-- the transaction that moves the cursor (`host/src/stats/`).

-- Every activation and cancellation of a subscription, appended by
-- `subscriptions.rs` in the transaction of the change: the roll-up's source for new
-- and cancelled subscriptions (a subscription row changes in place; this does not).
CREATE TABLE subscription_changes (
    id              BIGSERIAL PRIMARY KEY,
    subscription_id BIGINT  NOT NULL,
    partner_id      BIGINT  NOT NULL,
    service_id      BIGINT  NOT NULL,
    msisdn          TEXT    NOT NULL,
    -- 'activated' | 'cancelled' (an active subscription ended by its user or an admin)
    kind            TEXT    NOT NULL,
    at              BIGINT  NOT NULL
);
-- What happened before this table existed, in time order.
INSERT INTO subscription_changes (subscription_id, partner_id, service_id, msisdn, kind, at)
    SELECT id, partner_id, service_id, msisdn, kind, at FROM (
        SELECT id, partner_id, service_id, msisdn, 'activated' AS kind, activated_at AS at
            FROM subscriptions WHERE activated_at IS NOT NULL
        UNION ALL
        SELECT id, partner_id, service_id, msisdn, 'cancelled' AS kind, ended_at AS at
            FROM subscriptions WHERE status = 'cancelled' AND activated_at IS NOT NULL AND ended_at IS NOT NULL
    ) changes ORDER BY at, id;

-- One row per UTC hour, platform day, partner, service, operator, metric and reason.
-- `day` is the platform day (`[platform] time_zone`) of the records counted, so an
-- hour that a day boundary splits (zones with half-hour offsets) is two rows and days
-- and months sum exactly. service_id 0: no service; operator '': none known.
CREATE TABLE stats_hourly (
    partner_id BIGINT NOT NULL,
    hour_ms    BIGINT NOT NULL,
    day        TEXT   NOT NULL,
    service_id BIGINT NOT NULL,
    operator   TEXT   NOT NULL,
    -- mt_queued | mt_sent | mt_delivered | mt_failed | mo | subscriptions_new |
    -- subscriptions_cancelled | revenue | complaints
    metric     TEXT   NOT NULL,
    -- for mt_failed: the failure's reason code; else ''
    reason     TEXT   NOT NULL,
    count      BIGINT NOT NULL,
    amount_fen BIGINT NOT NULL,
    PRIMARY KEY (partner_id, hour_ms, day, service_id, operator, metric, reason)
);
CREATE INDEX stats_hourly_day ON stats_hourly(partner_id, day);

-- How far the roll-up has read each source (the highest id counted).
CREATE TABLE stats_cursors (
    source     TEXT   PRIMARY KEY,
    last_id    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO stats_cursors (source, last_id, updated_at) VALUES
    ('message_events', 0, 0), ('mo_messages', 0, 0), ('charge_events', 0, 0),
    ('complaints', 0, 0), ('subscription_changes', 0, 0);
