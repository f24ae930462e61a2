SELECT source, commit_lsn, index_in_txn FROM marts.build_state
