-- Issue 17 items 1, 2 and 6: admission of every uploaded version, activations an
-- admin approves, and per-message provenance.

-- The admission report of a version (JSON: checks, figures, policy hits) and its
-- verdict. NULL for versions uploaded before admission existed: they stay usable.
ALTER TABLE module_versions ADD COLUMN admission TEXT;
ALTER TABLE module_versions ADD COLUMN admission_passed BIGINT;

-- Per partner, the admin may require approval of every activation (1) or not (0).
ALTER TABLE partners ADD COLUMN activation_approval BIGINT NOT NULL DEFAULT 0;

-- An activation waiting for the admin: pending, then approved (the version went
-- live) or refused (with the reason). At most one pending request per module.
CREATE TABLE activation_requests (
    id           BIGSERIAL PRIMARY KEY,
    partner_id   BIGINT NOT NULL REFERENCES partners(id),
    module_id    BIGINT NOT NULL REFERENCES modules(id),
    version_id   BIGINT NOT NULL REFERENCES module_versions(id),
    status       TEXT   NOT NULL DEFAULT 'pending',
    requested_by TEXT   NOT NULL,
    requested_at BIGINT NOT NULL,
    decided_by   TEXT,
    decided_at   BIGINT,
    reason       TEXT
);
CREATE UNIQUE INDEX activation_requests_open ON activation_requests(module_id)
    WHERE status = 'pending';
CREATE INDEX activation_requests_status ON activation_requests(status, id);

-- Provenance (R-3.6): the SHA-256 of the inputs of the module call that wrote an
-- MT (export, request, subscriber, text), beside module_version_id and
-- module_sha256; a push run keeps the hash of its bulletin call for its MTs.
ALTER TABLE messages ADD COLUMN input_sha256 TEXT;
ALTER TABLE push_runs ADD COLUMN input_sha256 TEXT;
