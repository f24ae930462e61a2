CALL bench_mixed_changes(%(first)s, %(transactions)s, %(inserts)s, %(updates)s, %(deletes)s)
