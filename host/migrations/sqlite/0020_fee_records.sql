-- Issue 16 item 4: a 包月 billing record (basis 'fee-record', CMPP 2.0 Registered_Delivery
-- 2 / SGIP 1.2 ReportFlag 3) carries one monthly charge event to the operator, which
-- bills the user from it; the user never receives it. At most one record per charge
-- event, so a charge pass run again, or on another replica, queues none twice.
ALTER TABLE messages ADD COLUMN charge_event_id BIGINT;
CREATE UNIQUE INDEX messages_fee_record ON messages(charge_event_id) WHERE charge_event_id IS NOT NULL;
