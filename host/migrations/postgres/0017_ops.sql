-- Issue 15 (operations): bind state across replicas, and indexes for the history
-- purge of the tables it now covers.

-- What each replica's relay sees of one operator's binds, written by that
-- replica's alert evaluator every round (a heartbeat; its only writer). Every
-- evaluator judges `bind-down` and `bind-flapping` from the fresh rows of all
-- replicas, so a replica whose binds are down does not flap an alert another
-- replica sees up. `down_since`: when this replica last had no bind bound (NULL
-- while one is); `made`: binds made within the alert window.
CREATE TABLE bind_heartbeats (
    replica    TEXT   NOT NULL,
    operator   TEXT   NOT NULL,
    binds      BIGINT NOT NULL,
    bound      BIGINT NOT NULL,
    stopped    BIGINT NOT NULL,
    down_since BIGINT,
    made       BIGINT NOT NULL,
    unstable   BIGINT NOT NULL,
    last_error TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (replica, operator)
);

-- The purge finds old rows by time (R-3.6).
CREATE INDEX receipts_received ON receipts(received_at);
CREATE INDEX partner_events_at ON partner_events(at);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries(created_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries(event_id);
CREATE INDEX complaints_closed ON complaints(closed_at);
