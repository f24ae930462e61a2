-- Empties a restore-drill scratch database: publications, every schema, then a fresh public.
DO $$
DECLARE
    schema_name text;
    publication_name text;
BEGIN
    FOR publication_name IN SELECT pubname FROM pg_publication LOOP
        EXECUTE format('DROP PUBLICATION %I', publication_name);
    END LOOP;
    FOR schema_name IN
        SELECT nspname FROM pg_namespace
        WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
          AND nspname NOT LIKE 'pg\_temp\_%' AND nspname NOT LIKE 'pg\_toast\_temp\_%'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
    CREATE SCHEMA public;
END;
$$
