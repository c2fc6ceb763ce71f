-- Relay: the durable outbox (one row per MT), its segments, status history,
-- delivery receipts (matched or not) and inbound MOs.

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id      BIGINT  REFERENCES partners(id),
    service         TEXT,
    recipient       TEXT    NOT NULL,
    operator        TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    content_sha256  TEXT    NOT NULL,
    segments        BIGINT  NOT NULL,
    charge_plan     TEXT    NOT NULL,
    is_test         BIGINT  NOT NULL DEFAULT 0,
    status          TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    lease_until     BIGINT,
    -- Set when a submit's outcome was unknown (link lost before the response) and
    -- the message was sent again: a possible duplicate at the operator.
    resent_unknown  BIGINT  NOT NULL DEFAULT 0,
    failure_reason  TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    done_at         BIGINT
);
CREATE INDEX messages_ready ON messages(operator, status, next_attempt_at);
CREATE INDEX messages_partner ON messages(partner_id, id);

CREATE TABLE message_segments (
    message_id          BIGINT NOT NULL REFERENCES messages(id),
    seq                 BIGINT NOT NULL,
    operator            TEXT   NOT NULL,
    operator_message_id TEXT,
    status              TEXT   NOT NULL,
    error               TEXT,
    submitted_at        BIGINT,
    done_at             BIGINT,
    PRIMARY KEY (message_id, seq)
);
CREATE INDEX message_segments_operator_id ON message_segments(operator, operator_message_id);

CREATE TABLE message_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id BIGINT  NOT NULL REFERENCES messages(id),
    status     TEXT    NOT NULL,
    detail     TEXT,
    at         BIGINT  NOT NULL
);
CREATE INDEX message_events_message ON message_events(message_id, id);

CREATE TABLE receipts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    operator            TEXT    NOT NULL,
    operator_message_id TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    error_code          TEXT,
    raw                 TEXT    NOT NULL,
    received_at         BIGINT  NOT NULL,
    message_id          BIGINT,
    segment_seq         BIGINT,
    matched_at          BIGINT
);
CREATE INDEX receipts_unmatched ON receipts(matched_at, id);

CREATE TABLE mo_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    operator    TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    destination TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    received_at BIGINT  NOT NULL
);

-- Parts of long MOs until every part is in; then one mo_messages row.
CREATE TABLE mo_parts (
    operator    TEXT   NOT NULL,
    source      TEXT   NOT NULL,
    ref         BIGINT NOT NULL,
    total       BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    destination TEXT   NOT NULL,
    text        TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (operator, source, ref, total, seq)
);
