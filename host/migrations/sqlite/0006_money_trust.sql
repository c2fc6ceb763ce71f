-- Money the partner cannot create, and money inputs that keep their history
-- (issue 10: R-4.1, R-4.2, R-4.9).

-- The hard bound in force when the figures were uploaded, in basis points of the
-- platform's figure: a line above it (or where the platform has nothing) is held
-- for the admin's decision instead of settling on the mean. NULL on uploads made
-- before the bound existed (they settle as they did).
ALTER TABLE partner_figures ADD COLUMN hold_bp BIGINT;

-- The admin's decision on a held line of a discrepancy case: `platform` (the
-- platform's figure stands) or `mean` (clause 3.2 applies after all).
CREATE TABLE discrepancy_decisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id    BIGINT  NOT NULL REFERENCES discrepancy_cases(id),
    operator   TEXT    NOT NULL,
    service    TEXT    NOT NULL,
    settle_on  TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    decided_by TEXT    NOT NULL,
    decided_at BIGINT  NOT NULL,
    UNIQUE (case_id, operator, service)
);

-- Every bad-debt ratio an operator reported for a month, in order; the latest is
-- the one in force (`bad_debt_ratios` keeps it). A change needs a reason.
CREATE TABLE bad_debt_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    operator    TEXT    NOT NULL,
    month       TEXT    NOT NULL,
    ratio_bp    BIGINT  NOT NULL,
    reason      TEXT,
    recorded_by TEXT    NOT NULL,
    recorded_at BIGINT  NOT NULL
);
CREATE INDEX bad_debt_reports_month ON bad_debt_reports(operator, month, id);
INSERT INTO bad_debt_reports (operator, month, ratio_bp, reason, recorded_by, recorded_at)
    SELECT operator, month, ratio_bp, NULL, 'admin', recorded_at FROM bad_debt_ratios;

-- A statement issued to the partner: the document as issued (JSON), never changed.
CREATE TABLE statement_issues (
    partner_id  BIGINT NOT NULL REFERENCES partners(id),
    month       TEXT   NOT NULL,
    document    TEXT   NOT NULL,
    issued_by   TEXT   NOT NULL,
    issued_at   BIGINT NOT NULL,
    PRIMARY KEY (partner_id, month)
);

-- A change to an issued month's money inputs: the difference it makes to the
-- partner's share per operator, settled beside the issued statement instead of
-- rewriting it.
CREATE TABLE statement_adjustments (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id          BIGINT  NOT NULL REFERENCES partners(id),
    month               TEXT    NOT NULL,
    operator            TEXT    NOT NULL,
    cause               TEXT    NOT NULL,
    reason              TEXT    NOT NULL,
    issued_partner_fen  BIGINT  NOT NULL,
    revised_partner_fen BIGINT  NOT NULL,
    delta_fen           BIGINT  NOT NULL,
    opened_by           TEXT    NOT NULL,
    opened_at           BIGINT  NOT NULL
);
CREATE INDEX statement_adjustments_month ON statement_adjustments(partner_id, month, id);
