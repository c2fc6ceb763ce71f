-- Consent cannot be turned into a loudspeaker (issue 10 item 3).

-- When the platform last texted a pending subscription's confirmation request: a
-- request asked for again within `[dialogue] confirm_resend_secs` is not re-sent.
ALTER TABLE subscriptions ADD COLUMN confirm_sent_at BIGINT;

-- `Idempotency-Key` of POST requests (Stripe's rule): the same key with the same
-- request answers the stored response; with a different request it is refused.
-- `scope` is the caller (`partner:<id>` or `admin`); `fingerprint` the SHA-256 of
-- method, path and the parsed body; `status_code` NULL while the first request runs.
CREATE TABLE idempotency_keys (
    scope       TEXT   NOT NULL,
    key         TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    status_code BIGINT,
    response    TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);

-- Platform notices a number received that did not answer its own message
-- (confirmation requests started through the API), per platform day.
CREATE TABLE notice_daily_usage (
    msisdn  TEXT   NOT NULL,
    day     TEXT   NOT NULL,
    notices BIGINT NOT NULL,
    PRIMARY KEY (msisdn, day)
);

-- At most one unfinished "push now" per service, however many requests race.
CREATE UNIQUE INDEX push_runs_one_open_now ON push_runs(service_id)
    WHERE origin = 'now' AND status IN ('pending', 'running', 'paused');
CREATE INDEX push_runs_service_origin ON push_runs(service_id, origin, created_at);
