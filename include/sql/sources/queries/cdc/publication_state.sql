-- One row if the publication exists; its comment holds the engine's snapshot state (JSON) or NULL.
SELECT obj_description(p.oid, 'pg_publication') AS state
FROM pg_publication AS p
WHERE p.pubname = %(publication)s
