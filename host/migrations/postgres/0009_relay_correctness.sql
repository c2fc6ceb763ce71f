-- Relay correctness (issue 12): receipt id formats per operator, MO de-duplication,
-- long-MO parts that expire.

-- How each operator writes receipt ids relative to its submit_sm_resp ids, once
-- learned from receipts that can only be read one way (or 'auto' while learning),
-- with the evidence counted so far.
CREATE TABLE operator_receipt_ids (
    operator        TEXT   PRIMARY KEY,
    format          TEXT   NOT NULL,
    same            BIGINT NOT NULL DEFAULT 0,
    hex_to_decimal  BIGINT NOT NULL DEFAULT 0,
    decimal_to_hex  BIGINT NOT NULL DEFAULT 0,
    learned_at      BIGINT
);

-- Every MO deliver_sm (or part) seen recently, by a fingerprint of operator, sender,
-- number, coding and bytes (UDH and concatenation reference included), with the SMPP
-- session it came on: a redelivery within the window finds its row and is answered
-- without being stored again.
CREATE TABLE mo_seen (
    operator    TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    session     TEXT   NOT NULL,
    PRIMARY KEY (operator, fingerprint)
);
CREATE INDEX mo_seen_received ON mo_seen(received_at);

-- When the first part of a long MO arrived: its parts must all be in within the
-- part window, else the partial message is stored (incomplete) and its parts cleared.
ALTER TABLE mo_parts ADD COLUMN first_received_at BIGINT;
CREATE INDEX mo_parts_first ON mo_parts(first_received_at);

-- A long MO stored without all its parts: which parts were missing ('2/3').
ALTER TABLE mo_messages ADD COLUMN missing_parts TEXT;

-- The addresses a receipt carried (the handset, the service number): matching checks
-- the handset while an operator's id format is being learned.
ALTER TABLE receipts ADD COLUMN source_addr TEXT;
ALTER TABLE receipts ADD COLUMN destination_addr TEXT;
