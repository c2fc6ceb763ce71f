-- Issue 13 item 3 (MO routing with a backlog). The router looks up the reply of an
-- MO it claims again after its first router died (`messages.mo_id`), so an MO is
-- never answered twice; without an index that read every stored MT. Only replies
-- and notices carry an MO id, so pushes add nothing to this index.
CREATE INDEX messages_mo ON messages(mo_id) WHERE mo_id IS NOT NULL;
