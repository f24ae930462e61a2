-- Peek does not consume: the slot moves only when pg_replication_slot_advance says so.
SELECT lsn::text, data
FROM pg_logical_slot_peek_binary_changes(
    %(slot)s, %(upto_lsn)s::pg_lsn, %(upto_nchanges)s,
    'proto_version', '1', 'publication_names', %(publication)s, 'messages', 'true')
