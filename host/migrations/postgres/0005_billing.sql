-- Billing and settlement (issue 6): agreements and their money terms (R-4.8, R-5.1),
-- operator terms, calendars and bad-debt ratios, immutable charge events (R-1.2,
-- R-2.2), the partner's own figures and discrepancy cases (R-4.1, R-4.2), payments,
-- breach notices and alerts (R-4.6, R-5.2). Money is integer fen, rates are basis
-- points (1/100 of a percent), days are `YYYY-MM-DD`, months `YYYY-MM` (Asia/Shanghai).

-- One agreement per partner (R-5.1). status: active | suspended | in-notice | terminated.
CREATE TABLE agreements (
    partner_id         BIGINT PRIMARY KEY REFERENCES partners(id),
    start_date         TEXT   NOT NULL,
    term_months        BIGINT NOT NULL,
    status             TEXT   NOT NULL,
    notice_months      BIGINT NOT NULL,
    remedy_days        BIGINT NOT NULL,
    notice_given_on    TEXT,
    -- While in notice: the day termination takes effect.
    ends_on            TEXT,
    terminated_on      TEXT,
    terminated_at      BIGINT,
    termination_reason TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

-- The money terms of an agreement, in force from a billing month on (R-4.8): a new
-- row never changes the months before it. Rows are never updated.
CREATE TABLE agreement_terms (
    id                BIGSERIAL PRIMARY KEY,
    partner_id        BIGINT  NOT NULL REFERENCES partners(id),
    effective_from    TEXT    NOT NULL,
    tier_mode         TEXT    NOT NULL,
    t1_fen            BIGINT  NOT NULL,
    t2_fen            BIGINT  NOT NULL,
    tier1_platform_bp BIGINT  NOT NULL,
    tier1_partner_bp  BIGINT  NOT NULL,
    tier2_platform_bp BIGINT  NOT NULL,
    tier2_partner_bp  BIGINT  NOT NULL,
    tier3_platform_bp BIGINT  NOT NULL,
    tier3_partner_bp  BIGINT  NOT NULL,
    tax_bp            BIGINT  NOT NULL,
    discrepancy_bp    BIGINT  NOT NULL,
    payment_days      BIGINT  NOT NULL,
    activation_rule   TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    UNIQUE (partner_id, effective_from)
);

-- Per agreement and operator, from a month on (R-4.3, R-4.6). schedule: `M+2 day 15`
-- or `end of M+2`. Traffic is balanced while MT <= MO * balance_mt / balance_mo.
CREATE TABLE operator_terms (
    id                 BIGSERIAL PRIMARY KEY,
    partner_id         BIGINT  NOT NULL REFERENCES partners(id),
    operator           TEXT    NOT NULL,
    effective_from     TEXT    NOT NULL,
    collection_bp      BIGINT  NOT NULL,
    imbalance_rate_fen BIGINT  NOT NULL,
    balance_mt         BIGINT  NOT NULL,
    balance_mo         BIGINT  NOT NULL,
    schedule           TEXT    NOT NULL,
    created_at         BIGINT  NOT NULL,
    UNIQUE (partner_id, operator, effective_from)
);

-- What an operator allows and which working-day calendar its dates follow.
CREATE TABLE billing_operators (
    operator          TEXT   PRIMARY KEY,
    imbalance_min_fen BIGINT NOT NULL,
    imbalance_max_fen BIGINT NOT NULL,
    calendar          TEXT   NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- The bad-debt ratio an operator reported for a month (R-4.3 c).
CREATE TABLE bad_debt_ratios (
    operator    TEXT   NOT NULL,
    month       TEXT   NOT NULL,
    ratio_bp    BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (operator, month)
);

-- Exceptions to "Monday to Friday": holidays, and make-up working days (调休).
CREATE TABLE calendar_days (
    calendar TEXT NOT NULL,
    day      TEXT NOT NULL,
    kind     TEXT NOT NULL,
    note     TEXT NOT NULL,
    PRIMARY KEY (calendar, day)
);

-- One immutable row per charge (R-1.2, R-2.2): per-message on delivery (one per
-- message), monthly once per subscription and month. The unique keys make a replayed
-- receipt or a repeated pass charge nothing twice.
CREATE TABLE charge_events (
    id              BIGSERIAL PRIMARY KEY,
    partner_id      BIGINT  NOT NULL REFERENCES partners(id),
    service_id      BIGINT,
    service         TEXT    NOT NULL,
    operator        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    message_id      BIGINT  UNIQUE,
    subscription_id BIGINT,
    month           TEXT    NOT NULL,
    list_price_fen  BIGINT  NOT NULL,
    amount_fen      BIGINT  NOT NULL,
    basis           TEXT    NOT NULL,
    occurred_at     BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL
);
CREATE UNIQUE INDEX charge_events_monthly ON charge_events(subscription_id, month)
    WHERE kind = 'monthly';
CREATE INDEX charge_events_statement ON charge_events(partner_id, month, operator);
CREATE INDEX messages_billing ON messages(status, done_at);

-- The partner's own monthly figures (R-4.1): the whole upload as sent, never changed;
-- the latest upload of a month counts.
CREATE TABLE partner_figures (
    id          BIGSERIAL PRIMARY KEY,
    partner_id  BIGINT  NOT NULL REFERENCES partners(id),
    month       TEXT    NOT NULL,
    lines       TEXT    NOT NULL,
    objection   TEXT,
    uploaded_at BIGINT  NOT NULL
);
CREATE INDEX partner_figures_month ON partner_figures(partner_id, month, id);

-- A difference beyond X% (or an objection) between the two sides' figures (R-4.2).
CREATE TABLE discrepancy_cases (
    id          BIGSERIAL PRIMARY KEY,
    partner_id  BIGINT  NOT NULL REFERENCES partners(id),
    month       TEXT    NOT NULL,
    figures_id  BIGINT  NOT NULL UNIQUE REFERENCES partner_figures(id),
    status      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    opened_at   BIGINT  NOT NULL,
    resolution  TEXT,
    resolved_by TEXT,
    resolved_at BIGINT
);
CREATE INDEX discrepancy_cases_partner ON discrepancy_cases(partner_id, id);

-- The day an operator's money for a month arrived (R-4.6: pay within N working days).
CREATE TABLE operator_payments (
    operator    TEXT   NOT NULL,
    month       TEXT   NOT NULL,
    received_on TEXT   NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (operator, month)
);

-- What the platform paid a partner, per month and operator.
CREATE TABLE partner_payments (
    id          BIGSERIAL PRIMARY KEY,
    partner_id  BIGINT  NOT NULL REFERENCES partners(id),
    month       TEXT    NOT NULL,
    operator    TEXT    NOT NULL,
    amount_fen  BIGINT  NOT NULL,
    paid_on     TEXT    NOT NULL,
    reference   TEXT    NOT NULL,
    recorded_at BIGINT  NOT NULL
);
CREATE INDEX partner_payments_month ON partner_payments(partner_id, month, operator);

-- A written breach notice (R-5.2): the party in breach has until remedy_by.
CREATE TABLE breach_notices (
    id          BIGSERIAL PRIMARY KEY,
    partner_id  BIGINT  NOT NULL REFERENCES partners(id),
    breaching   TEXT    NOT NULL,
    issued_on   TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    remedy_by   TEXT    NOT NULL,
    remedied_on TEXT,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX breach_notices_partner ON breach_notices(partner_id, id);

-- Obligations that came due (R-4.6, R-5.2): raised once per subject.
CREATE TABLE billing_alerts (
    id         BIGSERIAL PRIMARY KEY,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    due_on     TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    raised_at  BIGINT  NOT NULL,
    UNIQUE (partner_id, kind, subject)
);
