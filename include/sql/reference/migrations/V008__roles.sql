-- The role matrix of the reference database (docs/security.md, *Roles and privileges*). Grants are
-- data: paydata_role_grant lists role x object x privileges and paydata_apply_grants() applies
-- them, skipping (with a NOTICE) a role that does not exist yet; roles are cluster-wide and created
-- by the stack or compose's init.sh. paydata_cdc keeps its own grants (V004). The reference data is
-- read and written by its owner only (the generator's seeding and the reference sync); the
-- auditor reads the audit log. This database's audit log stays insert-only by trigger and is not
-- hash-chained (only the OLTP one is).

CREATE TABLE paydata_role_grant (
    role_name   name NOT NULL,
    object_type text NOT NULL CHECK (object_type IN ('SCHEMA', 'TABLE', 'FUNCTION')),
    object_name text NOT NULL,
    privileges  text NOT NULL CHECK (privileges ~ '^[A-Z]+(, [A-Z]+)*$'),
    PRIMARY KEY (role_name, object_type, object_name)
);
REVOKE ALL ON paydata_role_grant FROM PUBLIC;

CREATE FUNCTION paydata_apply_grants() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    applied integer := 0;
BEGIN
    FOR g IN SELECT * FROM paydata_role_grant ORDER BY role_name, object_type, object_name LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g.role_name) THEN
            RAISE NOTICE 'role % does not exist yet; its grant on % is skipped', g.role_name, g.object_name;
            CONTINUE;
        END IF;
        EXECUTE format('GRANT %s ON %s %s TO %I', g.privileges, g.object_type,
                       CASE g.object_type
                           WHEN 'SCHEMA' THEN quote_ident(g.object_name)
                           WHEN 'FUNCTION' THEN g.object_name::regprocedure::text
                           ELSE g.object_name::regclass::text
                       END,
                       g.role_name);
        applied := applied + 1;
    END LOOP;
    RETURN applied;
END;
$$;
REVOKE ALL ON FUNCTION paydata_apply_grants() FROM PUBLIC;

REVOKE ALL ON audit_log FROM PUBLIC;

INSERT INTO paydata_role_grant (role_name, object_type, object_name, privileges) VALUES
    ('auditor', 'SCHEMA', 'public', 'USAGE'),
    ('auditor', 'TABLE', 'audit_log', 'SELECT');

SELECT paydata_apply_grants();
