-- A fair and bounded sandbox (issue 11): version retention, upload quotas,
-- aggregated faults, push-run retries and partner notices.

-- A pruned version keeps its row (history, activations, faults) but not its
-- bytes: it can no longer be activated (R-8.1 retention rule).
ALTER TABLE module_versions ADD COLUMN pruned_at BIGINT;

-- Upload attempts, for the per-partner upload rate; rows older than the rate's
-- window are deleted as new ones come.
CREATE TABLE module_uploads (
    id         BIGSERIAL PRIMARY KEY,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    bytes      BIGINT  NOT NULL,
    at         BIGINT  NOT NULL
);
CREATE INDEX module_uploads_partner ON module_uploads(partner_id, at);

-- Faults counted per version, export, kind and window; module_faults keeps only
-- the first few of each window as samples.
CREATE TABLE module_fault_windows (
    id           BIGSERIAL PRIMARY KEY,
    partner_id   BIGINT  NOT NULL REFERENCES partners(id),
    module_id    BIGINT  NOT NULL REFERENCES modules(id),
    version_id   BIGINT  NOT NULL REFERENCES module_versions(id),
    export       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    window_start BIGINT  NOT NULL,
    count        BIGINT  NOT NULL,
    first_at     BIGINT  NOT NULL,
    last_at      BIGINT  NOT NULL,
    last_message TEXT    NOT NULL,
    UNIQUE (version_id, export, kind, window_start)
);
CREATE INDEX module_fault_windows_module ON module_fault_windows(module_id, window_start);

-- Every failed bulletin attempt of a push run, and whether it was retried.
CREATE TABLE push_run_faults (
    id       BIGSERIAL PRIMARY KEY,
    run_id   BIGINT  NOT NULL REFERENCES push_runs(id),
    attempt  BIGINT  NOT NULL,
    kind     TEXT    NOT NULL,
    message  TEXT    NOT NULL,
    retry_at BIGINT,
    at       BIGINT  NOT NULL
);
CREATE INDEX push_run_faults_run ON push_run_faults(run_id, id);

-- What the platform tells a partner (e.g. a push run that gave up).
CREATE TABLE partner_notices (
    id         BIGSERIAL PRIMARY KEY,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    run_id     BIGINT,
    at         BIGINT  NOT NULL
);
CREATE INDEX partner_notices_partner ON partner_notices(partner_id, id);
