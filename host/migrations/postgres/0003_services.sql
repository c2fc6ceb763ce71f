-- Services, subscriptions, MO routing and compliance (issue 4).

-- A partner's declared service. `code` is what users type (`TD XZ`, `XZ` for help),
-- so it is unique platform-wide. The terms live in revisions: `live_revision_id` is
-- the approved revision in force, `pending_revision_id` the one awaiting a decision
-- (R-3.3: a change is approved before use; the old terms stay in force meanwhile).
CREATE TABLE services (
    id                  BIGSERIAL PRIMARY KEY,
    partner_id          BIGINT  NOT NULL REFERENCES partners(id),
    code                TEXT    NOT NULL UNIQUE,
    module              TEXT,
    status              TEXT    NOT NULL,
    live_revision_id    BIGINT,
    pending_revision_id BIGINT,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL
);
CREATE INDEX services_partner ON services(partner_id, id);

CREATE TABLE service_revisions (
    id                   BIGSERIAL PRIMARY KEY,
    service_id           BIGINT  NOT NULL REFERENCES services(id),
    seq                  BIGINT  NOT NULL,
    name                 TEXT    NOT NULL,
    description          TEXT    NOT NULL,
    -- JSON array of normalised subscribe keywords.
    keywords             TEXT    NOT NULL,
    fee_type             TEXT    NOT NULL,
    price_fen            BIGINT  NOT NULL,
    -- JSON array of operator names the service is registered with.
    operators            TEXT    NOT NULL,
    monthly_max_messages BIGINT,
    -- Digits appended to the platform's short code: the service's own number.
    number_ext           TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    created_at           BIGINT  NOT NULL,
    submitted_at         BIGINT,
    decided_at           BIGINT,
    decided_by           TEXT,
    decision_reason      TEXT,
    UNIQUE (service_id, seq)
);

-- Every status change of a service or one of its revisions: who, when, why.
CREATE TABLE service_audit (
    id          BIGSERIAL PRIMARY KEY,
    service_id  BIGINT  NOT NULL REFERENCES services(id),
    revision_id BIGINT,
    action      TEXT    NOT NULL,
    from_status TEXT,
    to_status   TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    reason      TEXT,
    at          BIGINT  NOT NULL
);
CREATE INDEX service_audit_service ON service_audit(service_id, id);

-- One user's opt-in to one service. `pending` waits for the double confirmation
-- of a paid service until `confirm_by`; only `active` receives pushes and is billed.
CREATE TABLE subscriptions (
    id            BIGSERIAL PRIMARY KEY,
    partner_id    BIGINT  NOT NULL REFERENCES partners(id),
    service_id    BIGINT  NOT NULL REFERENCES services(id),
    subscriber_id TEXT    NOT NULL REFERENCES subscribers(id),
    msisdn        TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    fee_type      TEXT    NOT NULL,
    price_fen     BIGINT  NOT NULL,
    requested_at  BIGINT  NOT NULL,
    confirm_by    BIGINT,
    activated_at  BIGINT,
    ended_at      BIGINT,
    end_reason    TEXT
);
CREATE UNIQUE INDEX subscriptions_open ON subscriptions(service_id, msisdn)
    WHERE status IN ('pending', 'active');
CREATE INDEX subscriptions_msisdn ON subscriptions(msisdn, status);
CREATE INDEX subscriptions_service_active ON subscriptions(service_id, status, id);

-- Messages counted against caps: per subscription per month (Asia/Shanghai month,
-- `YYYY-MM`) and per partner per day (`YYYY-MM-DD`).
CREATE TABLE subscription_usage (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions(id),
    month           TEXT   NOT NULL,
    messages        BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, month)
);
CREATE TABLE partner_daily_usage (
    partner_id BIGINT NOT NULL REFERENCES partners(id),
    day        TEXT   NOT NULL,
    messages   BIGINT NOT NULL,
    PRIMARY KEY (partner_id, day)
);

-- A broken rule: content policy, caps, detectors. Visible to the partner.
CREATE TABLE violations (
    id                BIGSERIAL PRIMARY KEY,
    partner_id        BIGINT  NOT NULL REFERENCES partners(id),
    service_id        BIGINT,
    module_version_id BIGINT,
    kind              TEXT    NOT NULL,
    rule              TEXT    NOT NULL,
    detail            TEXT    NOT NULL,
    excerpt           TEXT,
    at                BIGINT  NOT NULL
);
CREATE INDEX violations_partner ON violations(partner_id, id);

-- Suspensions and resumptions of a partner (service_id NULL) or one service.
CREATE TABLE suspensions (
    id         BIGSERIAL PRIMARY KEY,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    service_id BIGINT,
    action     TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    at         BIGINT  NOT NULL
);

-- The `0000` menu a user was shown, so a numbered reply cancels the right one.
CREATE TABLE cancel_menus (
    msisdn     TEXT   PRIMARY KEY,
    -- JSON array of subscription ids, in the order shown (1 = first).
    items      TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- Complaints about a partner's service (R-6.2), entered by the platform's staff;
-- a spike of them is a detector finding.
CREATE TABLE complaints (
    id         BIGSERIAL PRIMARY KEY,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    service_id BIGINT,
    msisdn     TEXT,
    message_id BIGINT,
    cause      TEXT    NOT NULL,
    note       TEXT    NOT NULL,
    at         BIGINT  NOT NULL
);
CREATE INDEX complaints_service ON complaints(service_id, at);

-- What an MT is and why it may leave (R-3.2): the outbox records its basis.
ALTER TABLE messages ADD COLUMN service_id BIGINT;
ALTER TABLE messages ADD COLUMN subscription_id BIGINT;
ALTER TABLE messages ADD COLUMN price_fen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN sender TEXT;
ALTER TABLE messages ADD COLUMN basis TEXT NOT NULL DEFAULT 'test';
ALTER TABLE messages ADD COLUMN mo_id BIGINT;
-- Hash of the folded text (no spaces, punctuation or digits): near-identical texts
-- share it, which is how the fee-only detector sees repeated paid content.
ALTER TABLE messages ADD COLUMN content_key TEXT;
CREATE INDEX messages_service ON messages(service_id, id);

ALTER TABLE mo_messages ADD COLUMN service_id BIGINT;
ALTER TABLE mo_messages ADD COLUMN outcome TEXT;
ALTER TABLE mo_messages ADD COLUMN lease_until BIGINT;
ALTER TABLE mo_messages ADD COLUMN routed_at BIGINT;
CREATE INDEX mo_messages_status ON mo_messages(status, id);
CREATE INDEX mo_messages_source ON mo_messages(source, id);
