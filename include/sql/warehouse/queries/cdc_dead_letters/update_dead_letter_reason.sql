UPDATE {schema}.cdc_dead_letters
SET reason = %(reason)s, columns = %(columns)s
WHERE source = %(source)s AND table_name = %(table_name)s
  AND commit_lsn = %(commit_lsn)s AND index_in_txn = %(index_in_txn)s
  AND coalesce(key_text, '') = coalesce(%(key_text)s, '')
