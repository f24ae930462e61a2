-- Row security on the marts tables just created (warehouse migration V001 defines the function;
-- a warehouse that has not been migrated builds without it).
DO $$
BEGIN
    IF to_regprocedure('security.apply_row_security()') IS NOT NULL THEN
        PERFORM security.apply_row_security();
    END IF;
END;
$$;
