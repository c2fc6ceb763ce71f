-- Issue 18 (load at a million subscribers), two reads that walked every MT:
--
-- The sweep expires queued MTs past their validity every half second (`WHERE
-- status = 'queued' AND expires_at < $1`). The store read it through
-- `messages_billing (status, done_at)`, every queued MT under the write lock: 1.1 s
-- per sweep with 880,000 queued, submits and receipts waiting behind it. A partial
-- index of the queued MTs by (status, expiry) answers it from its head.
CREATE INDEX messages_queued_expiry ON messages(status, expires_at) WHERE status = 'queued';

-- One recipient's MTs of one partner (`GET /v1/messages?recipient=`) were read
-- through `messages_partner (partner_id, id)`, every MT of a partner that had just
-- pushed to a million: 4.3 s. This index holds both filters and the order.
CREATE INDEX messages_partner_recipient ON messages(partner_id, recipient, id);
