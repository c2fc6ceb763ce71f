-- Issue 15 items 3 and 4: anomaly alerts (R-2.6) and notifications to partners
-- (R-2.7): the partner event feed, webhook endpoints, their secrets and deliveries.

-- An anomaly the alert evaluator found (its only writer). `scope_key` names kind
-- and scope (`delivery-rate:operator=mobile`); one alert per scope is open
-- (`ended_at` NULL) at a time. `value` and `threshold` are integers in `unit`
-- (`bp` basis points, `count`, `secs`, `pct-of-baseline`) over `window_secs`.
-- partner_id NULL: a platform alert (an operator's link, its delivery rate),
-- which every partner is told about.
CREATE TABLE alerts (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    scope_key   TEXT    NOT NULL,
    partner_id  BIGINT,
    service_id  BIGINT,
    operator    TEXT,
    value       BIGINT  NOT NULL,
    threshold   BIGINT  NOT NULL,
    unit        TEXT    NOT NULL,
    window_secs BIGINT  NOT NULL,
    detail      TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    ended_at    BIGINT
);
CREATE UNIQUE INDEX alerts_open ON alerts(scope_key) WHERE ended_at IS NULL;
CREATE INDEX alerts_partner ON alerts(partner_id, id);

-- Every event a partner is told about, in commit order (writers hold the feed
-- lock, `event_cursors` row 'lock'): the inbox (`GET /v1/events`) and the source
-- of webhook deliveries. `source_key` names the record it came from, once.
CREATE TABLE partner_events (
    id         BIGSERIAL PRIMARY KEY,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    kind       TEXT    NOT NULL,
    source_key TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    at         BIGINT  NOT NULL
);
CREATE UNIQUE INDEX partner_events_source ON partner_events(partner_id, source_key);
CREATE INDEX partner_events_partner ON partner_events(partner_id, id);

-- Where the feeder is in each source table (`position`, `tiebreak`), written in
-- the transaction that appends the events it read, so a crash repeats nothing
-- and loses nothing. Starts at what exists now: history is not replayed.
CREATE TABLE event_cursors (
    source   TEXT   PRIMARY KEY,
    position BIGINT NOT NULL,
    tiebreak BIGINT NOT NULL DEFAULT 0
);
INSERT INTO event_cursors (source, position) VALUES ('lock', 0);
INSERT INTO event_cursors (source, position) SELECT 'message_events', COALESCE(MAX(id), 0) FROM message_events;
INSERT INTO event_cursors (source, position) SELECT 'mo_messages', COALESCE(MAX(id), 0) FROM mo_messages;
INSERT INTO event_cursors (source, position, tiebreak)
    SELECT 'push_runs', COALESCE(MAX(finished_at), 0), COALESCE(MAX(id), 0) FROM push_runs;
INSERT INTO event_cursors (source, position) SELECT 'module_faults', COALESCE(MAX(id), 0) FROM module_faults;
INSERT INTO event_cursors (source, position) SELECT 'suspensions', COALESCE(MAX(id), 0) FROM suspensions;
INSERT INTO event_cursors (source, position) SELECT 'partner_notices', COALESCE(MAX(id), 0) FROM partner_notices;
INSERT INTO event_cursors (source, position) SELECT 'agreement_terms', COALESCE(MAX(id), 0) FROM agreement_terms;
INSERT INTO event_cursors (source, position) SELECT 'operator_terms', COALESCE(MAX(id), 0) FROM operator_terms;
INSERT INTO event_cursors (source, position, tiebreak)
    SELECT 'statement_issues', COALESCE(MAX(issued_at), 0), 0 FROM statement_issues;

-- A partner's webhook endpoint. `events`: JSON array of event kinds, [] for all.
CREATE TABLE webhook_endpoints (
    id          BIGSERIAL PRIMARY KEY,
    partner_id  BIGINT  NOT NULL REFERENCES partners(id),
    url         TEXT    NOT NULL,
    events      TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    enabled     BIGINT  NOT NULL DEFAULT 1,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    deleted_at  BIGINT
);
CREATE INDEX webhook_endpoints_partner ON webhook_endpoints(partner_id, id);

-- A partner's signing secrets. The newest signs; an older one keeps signing
-- beside it until `retires_at` (rotation without downtime).
CREATE TABLE webhook_secrets (
    id         BIGSERIAL PRIMARY KEY,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    secret     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    retires_at BIGINT
);
CREATE INDEX webhook_secrets_partner ON webhook_secrets(partner_id, id);

-- One event to one endpoint. status: pending | delivered | failed.
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    endpoint_id      BIGINT  NOT NULL REFERENCES webhook_endpoints(id),
    event_id         BIGINT  NOT NULL REFERENCES partner_events(id),
    status           TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT  NOT NULL,
    lease_until      BIGINT,
    last_status_code BIGINT,
    last_error       TEXT,
    replays          BIGINT  NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    first_attempt_at BIGINT,
    last_attempt_at  BIGINT,
    delivered_at     BIGINT,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, id);
