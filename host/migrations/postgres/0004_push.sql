-- Scheduled pushes (issue 5, R-8.3, R-8.4): schedules per service, one durable run
-- per firing, and the link from each outbox row to the run that queued it.

-- A service's push schedule: a cron expression in `time_zone` or one instant
-- (`kind` = 'cron' | 'once'). `next_fire_at` is the next firing not yet turned
-- into a run (NULL: nothing left, e.g. a one-off that fired). `missed` says what a
-- firing found late after downtime does: 'run-once' (one late run) or 'skip'.
CREATE TABLE push_schedules (
    id           BIGSERIAL PRIMARY KEY,
    partner_id   BIGINT  NOT NULL REFERENCES partners(id),
    service_id   BIGINT  NOT NULL REFERENCES services(id),
    kind         TEXT    NOT NULL,
    cron         TEXT,
    run_at       BIGINT,
    time_zone    TEXT    NOT NULL,
    missed       TEXT    NOT NULL,
    enabled      BIGINT  NOT NULL DEFAULT 1,
    next_fire_at BIGINT,
    last_fire_at BIGINT,
    created_by   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX push_schedules_due ON push_schedules(enabled, next_fire_at);
CREATE INDEX push_schedules_service ON push_schedules(service_id, id);

-- One firing of a schedule (or a "push now", schedule_id NULL). The unique key
-- makes a firing a run once, however many replicas notice it. A run is claimed with
-- a lease (`owner`, `lease_until`); `content` is the module's bulletin as
-- called once, so a resumed run sends the same words; `cursor_id` is the last
-- subscription id done and `high_water` the last one the run covers.
-- status: pending | running | paused | completed | failed | skipped | cancelled | expired
CREATE TABLE push_runs (
    id                BIGSERIAL PRIMARY KEY,
    schedule_id       BIGINT,
    partner_id        BIGINT  NOT NULL REFERENCES partners(id),
    service_id        BIGINT  NOT NULL REFERENCES services(id),
    origin            TEXT    NOT NULL,
    fire_at           BIGINT  NOT NULL,
    push_date         TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    owner             TEXT,
    lease_until       BIGINT,
    attempts          BIGINT  NOT NULL DEFAULT 0,
    content           TEXT,
    blocked_variants  TEXT,
    module_version_id BIGINT,
    high_water        BIGINT,
    cursor_id         BIGINT  NOT NULL DEFAULT 0,
    release_at        BIGINT,
    subscribers       BIGINT  NOT NULL DEFAULT 0,
    variants          BIGINT  NOT NULL DEFAULT 0,
    queued            BIGINT  NOT NULL DEFAULT 0,
    blocked           BIGINT  NOT NULL DEFAULT 0,
    held              BIGINT  NOT NULL DEFAULT 0,
    skipped           BIGINT  NOT NULL DEFAULT 0,
    late_ms           BIGINT  NOT NULL DEFAULT 0,
    reason            TEXT,
    actor             TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    updated_at        BIGINT  NOT NULL,
    UNIQUE (schedule_id, fire_at)
);
CREATE INDEX push_runs_claim ON push_runs(status, lease_until);
CREATE INDEX push_runs_service ON push_runs(service_id, id);

-- Which run queued an MT: one MT per subscription per run, whatever crashes.
ALTER TABLE messages ADD COLUMN push_run_id BIGINT;
CREATE UNIQUE INDEX messages_push ON messages(push_run_id, subscription_id)
    WHERE push_run_id IS NOT NULL;
