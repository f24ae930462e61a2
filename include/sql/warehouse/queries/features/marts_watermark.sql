-- The positions the marts are built to (marts.build_state), per source; 0 before any build.
SELECT s.source, coalesce(b.commit_lsn, 0)
FROM (VALUES ('oltp'), ('reference')) AS s (source)
LEFT JOIN marts.build_state AS b USING (source);
