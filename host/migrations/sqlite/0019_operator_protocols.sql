-- Issue 16 item 4: the operator's LinkID of an MO (CMPP 3.0 CMPP_DELIVER), sent back
-- in the fee fields of the MTs that answer it (点播 replies). NULL where the protocol
-- has none (SMPP, SGIP) or for a long MO closed incomplete.
ALTER TABLE mo_messages ADD COLUMN link_id TEXT;
