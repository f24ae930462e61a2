-- The snapshot state travels with the publication: it lives and dies with the source database.
COMMENT ON PUBLICATION {publication} IS %(state)s
