-- Issue 17 items 3, 4 and 5: shadow runs, canaries and automatic rollback.

-- Per module: the candidate version run beside the active one on real pushes
-- and MOs (never sent), and the canary: a version live for a percentage of the
-- subscribers (the cohort stable by a hash of the subscription id).
ALTER TABLE modules ADD COLUMN shadow_version_id BIGINT;
ALTER TABLE modules ADD COLUMN canary_version_id BIGINT;
ALTER TABLE modules ADD COLUMN canary_percent BIGINT;
ALTER TABLE modules ADD COLUMN canary_since BIGINT;
-- When the active version went live (the automatic rollback watches it for
-- [modules] rollback_watch_secs after that).
ALTER TABLE modules ADD COLUMN active_since BIGINT;

-- One shadow run: the same call made on the active version and the candidate,
-- both outputs (JSON) and what differs. Written only by modules/shadow.rs.
CREATE TABLE module_shadow_runs (
    id                   BIGSERIAL PRIMARY KEY,
    partner_id           BIGINT NOT NULL REFERENCES partners(id),
    module_id            BIGINT NOT NULL REFERENCES modules(id),
    active_version_id    BIGINT NOT NULL,
    candidate_version_id BIGINT NOT NULL,
    export               TEXT   NOT NULL,
    input                TEXT   NOT NULL,
    input_sha256         TEXT   NOT NULL,
    active_output        TEXT   NOT NULL,
    candidate_output     TEXT   NOT NULL,
    same                 BIGINT NOT NULL,
    diff                 TEXT   NOT NULL,
    policy_hits          TEXT   NOT NULL,
    candidate_cpu_us     BIGINT NOT NULL,
    at                   BIGINT NOT NULL
);
CREATE INDEX module_shadow_runs_module ON module_shadow_runs(module_id, id);

-- A push run under a canary: the canary's bulletin, its refused variants, the
-- version and the percentage the fan-out used.
ALTER TABLE push_runs ADD COLUMN canary_version_id BIGINT;
ALTER TABLE push_runs ADD COLUMN canary_percent BIGINT;
ALTER TABLE push_runs ADD COLUMN canary_content TEXT;
ALTER TABLE push_runs ADD COLUMN canary_blocked TEXT;

-- Calls and faults per version and minute, the denominators of the automatic
-- rollback's rates (counted in memory, added here every round).
CREATE TABLE module_call_counts (
    version_id   BIGINT NOT NULL,
    minute_start BIGINT NOT NULL,
    calls        BIGINT NOT NULL,
    faults       BIGINT NOT NULL,
    PRIMARY KEY (version_id, minute_start)
);

-- Rollbacks the platform made, with the evidence the partner was sent.
CREATE TABLE module_rollbacks (
    id              BIGSERIAL PRIMARY KEY,
    partner_id      BIGINT NOT NULL REFERENCES partners(id),
    module_id       BIGINT NOT NULL REFERENCES modules(id),
    from_version_id BIGINT NOT NULL,
    to_version_id   BIGINT,
    phase           TEXT   NOT NULL,
    rule            TEXT   NOT NULL,
    evidence        TEXT   NOT NULL,
    at              BIGINT NOT NULL
);
CREATE INDEX module_rollbacks_module ON module_rollbacks(module_id, id);

-- The rates are read per version: MTs and violations by the version that wrote them.
CREATE INDEX messages_module_version ON messages(module_version_id, created_at);
CREATE INDEX violations_module_version ON violations(module_version_id, at);
