INSERT INTO features.build_state (store, source, commit_lsn, built_at)
VALUES (%(store)s, %(source)s, %(commit_lsn)s, now())
ON CONFLICT (store, source) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, built_at = EXCLUDED.built_at;
