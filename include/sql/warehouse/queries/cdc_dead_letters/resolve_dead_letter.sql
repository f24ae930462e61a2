UPDATE {schema}.cdc_dead_letters
SET resolved_at = now(), resolution = %(resolution)s
WHERE source = %(source)s AND table_name = %(table_name)s
  AND commit_lsn = %(commit_lsn)s AND index_in_txn = %(index_in_txn)s
  AND coalesce(key_text, '') = coalesce(%(key_text)s, '')
  AND resolved_at IS NULL
