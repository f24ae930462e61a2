SELECT DISTINCT {columns} FROM {source}
WHERE known_lsn > %(from_lsn)s AND known_lsn <= %(to_lsn)s AND {not_null}
