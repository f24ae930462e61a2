INSERT INTO {schema}.cdc_dead_letters
    (source, table_name, commit_lsn, index_in_txn, kind, key_text, columns, reason, commit_time)
VALUES (%(source)s, %(table_name)s, %(commit_lsn)s, %(index_in_txn)s, %(kind)s, %(key_text)s, %(columns)s,
        %(reason)s, %(commit_time)s)
ON CONFLICT (source, table_name, commit_lsn, index_in_txn, (coalesce(key_text, ''))) DO NOTHING
