-- Issue 18 (load at a million subscribers): the sweep expires queued MTs past their
-- validity every half second (`WHERE status = 'queued' AND expires_at < $1`). With
-- no index on `expires_at` it read every queued MT under the write lock: 1.1 s per
-- sweep with 880,000 queued, the relay's submits and receipts waiting behind it.
-- A partial index holds only the queued MTs, by expiry.
CREATE INDEX messages_queued_expiry ON messages(expires_at) WHERE status = 'queued';
