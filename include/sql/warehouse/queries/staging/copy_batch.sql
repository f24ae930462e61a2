COPY {batch} ({columns}, _commit_lsn, _index_in_txn, _commit_time, _op, _unchanged, _moved_from) FROM STDIN
