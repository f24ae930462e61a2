-- Positions a feature store is complete up to, per source.
SELECT source, commit_lsn FROM features.build_state WHERE store = %(store)s;
