-- Grants on named tables that exist now (warehouse migration V003), after the staging definitions.
DO $$
BEGIN
    IF to_regprocedure('security.apply_table_grants()') IS NOT NULL THEN
        PERFORM security.apply_table_grants();
    END IF;
END;
$$;
