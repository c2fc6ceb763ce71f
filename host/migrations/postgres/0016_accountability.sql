-- Issue 15 items 5 and 6: the complaints register, partner contacts, history
-- retention, and the hash-chained audit log.

-- The complaints register (R-6.1, R-6.2): how a complaint came, where it is routed
-- (the partner first; the platform for channel causes), its status, due time and
-- resolution. `at` stays the time it was filed.
ALTER TABLE complaints ADD COLUMN channel TEXT NOT NULL DEFAULT 'hotline';
ALTER TABLE complaints ADD COLUMN routed_to TEXT NOT NULL DEFAULT 'partner';
ALTER TABLE complaints ADD COLUMN status TEXT NOT NULL DEFAULT 'open';
ALTER TABLE complaints ADD COLUMN due_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE complaints ADD COLUMN resolution TEXT;
ALTER TABLE complaints ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE complaints ADD COLUMN closed_at BIGINT;
UPDATE complaints SET due_at = at, updated_at = at,
    routed_to = CASE WHEN cause = 'channel' THEN 'platform' ELSE 'partner' END;
CREATE INDEX complaints_partner ON complaints(partner_id, id);
CREATE INDEX complaints_partner_at ON complaints(partner_id, at);

-- Every status change of a complaint: who, when, what they wrote.
CREATE TABLE complaint_events (
    id           BIGSERIAL PRIMARY KEY,
    complaint_id BIGINT  NOT NULL REFERENCES complaints(id),
    status       TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    note         TEXT    NOT NULL,
    at           BIGINT  NOT NULL
);
CREATE INDEX complaint_events_complaint ON complaint_events(complaint_id, id);

-- A partner's customer-service and technical-support contacts (R-6.4).
CREATE TABLE partner_contacts (
    partner_id  BIGINT PRIMARY KEY REFERENCES partners(id),
    cs_name     TEXT   NOT NULL,
    cs_phone    TEXT   NOT NULL,
    cs_email    TEXT   NOT NULL,
    tech_name   TEXT   NOT NULL,
    tech_phone  TEXT   NOT NULL,
    tech_email  TEXT   NOT NULL,
    updated_by  TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- History for the regulator (R-3.6): the module version that wrote an MT and the
-- SHA-256 of its bytes, written at the gate; the SHA-256 of an MO's text; indexes for the purge and the
-- "what did number X receive" query.
ALTER TABLE messages ADD COLUMN module_version_id BIGINT;
ALTER TABLE messages ADD COLUMN module_sha256 TEXT;
ALTER TABLE mo_messages ADD COLUMN content_sha256 TEXT;
CREATE INDEX messages_created ON messages(created_at);
CREATE INDEX messages_recipient ON messages(recipient, created_at);
CREATE INDEX mo_messages_received ON mo_messages(received_at);

-- What statements count from purged rows: delivered MTs and routed MOs per partner,
-- platform month and operator, added in the transaction that deletes the rows, so a
-- statement of a purged month reads the same figures as before.
CREATE TABLE purged_traffic (
    partner_id BIGINT NOT NULL,
    month      TEXT   NOT NULL,
    operator   TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (partner_id, month, operator, kind)
);

-- The append-only audit log: each row's `hash` is SHA-256 of the previous row's
-- hash and the row's own canonical content; ids follow without gaps.
CREATE TABLE audit_log (
    id          BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    method      TEXT,
    path        TEXT,
    status      BIGINT,
    body_sha256 TEXT,
    request_id  TEXT,
    detail      TEXT   NOT NULL,
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL
);

-- The chain's head: one row, locked by every append, so concurrent appends keep
-- one chain; it also shows a deleted last row.
CREATE TABLE audit_head (
    id        BIGINT PRIMARY KEY,
    last_id   BIGINT NOT NULL,
    last_hash TEXT   NOT NULL
);
INSERT INTO audit_head (id, last_id, last_hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
