-- Issue 17 item 7: module calls recorded for replay. A row holds a live call's
-- export, request and result (JSON) and what the host answered it (the call
-- clock's start, WASI's seed, every answer of the contract's imports, in order).
-- Every call that wrote a text is kept for [modules] complaint_window_days, so a
-- complaint about its MT can be replayed; past that, only the sampled ones
-- (record_permille) and those behind a complaint stay, up to
-- record_retention_days (a complaint keeps its recording as long as it is kept).
CREATE TABLE call_recordings (
    id           BIGSERIAL PRIMARY KEY,
    partner_id   BIGINT NOT NULL REFERENCES partners(id),
    module_id    BIGINT NOT NULL REFERENCES modules(id),
    version_id   BIGINT NOT NULL REFERENCES module_versions(id),
    export       TEXT   NOT NULL,
    request      TEXT   NOT NULL,
    recording    TEXT   NOT NULL,
    output       TEXT   NOT NULL,
    input_sha256 TEXT   NOT NULL,
    sampled      BIGINT NOT NULL,
    recorded_at  BIGINT NOT NULL
);
CREATE INDEX call_recordings_module ON call_recordings(module_id, id);
CREATE INDEX call_recordings_input ON call_recordings(version_id, input_sha256);
CREATE INDEX call_recordings_age ON call_recordings(recorded_at);
