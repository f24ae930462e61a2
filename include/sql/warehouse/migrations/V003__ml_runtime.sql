-- The feature build and the training-set build connect as `ml` (docs/security.md, *Which role each
-- job connects as*): the features schema is the ml jobs' output, so `ml` gets its data (not its
-- DDL: the migrate step applies the feature definitions as the owner), and it reads the two
-- staging mirrors the feature and label SQL joins (payment methods, disputes), tokenised like all
-- of staging, and no other staging table.
--
-- Grants on named tables are data too: security.table_grant, applied by
-- security.apply_table_grants(), which skips a table not created yet (staging mirrors are created
-- by the migrate step after the migrations, which calls it again) or a role not created yet.

UPDATE security.role_grant SET privileges = 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE'
WHERE role_name = 'ml' AND object_type = 'TABLES' AND schema_name = 'features';
INSERT INTO security.role_grant (role_name, object_type, schema_name, privileges) VALUES
    ('ml', 'SEQUENCES', 'features', 'USAGE, SELECT, UPDATE'),
    ('ml', 'SCHEMA', 'staging', 'USAGE');
SELECT security.apply_grants();

CREATE TABLE security.table_grant (
    role_name   name NOT NULL,
    schema_name name NOT NULL,
    table_name  name NOT NULL,
    privileges  text NOT NULL CHECK (privileges ~ '^[A-Z]+(, [A-Z]+)*$'),
    PRIMARY KEY (role_name, schema_name, table_name)
);

INSERT INTO security.table_grant (role_name, schema_name, table_name, privileges) VALUES
    ('ml', 'staging', 'oltp_payment_method', 'SELECT'),
    ('ml', 'staging', 'oltp_dispute', 'SELECT');

CREATE FUNCTION security.apply_table_grants() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    applied integer := 0;
BEGIN
    FOR g IN SELECT * FROM security.table_grant ORDER BY role_name, schema_name, table_name LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g.role_name) THEN
            RAISE NOTICE 'role % does not exist yet; its grant on %.% is skipped', g.role_name, g.schema_name,
                g.table_name;
            CONTINUE;
        END IF;
        IF to_regclass(format('%I.%I', g.schema_name, g.table_name)) IS NULL THEN
            RAISE NOTICE 'table %.% does not exist yet; its grant to % is skipped', g.schema_name, g.table_name,
                g.role_name;
            CONTINUE;
        END IF;
        EXECUTE format('GRANT %s ON %I.%I TO %I', g.privileges, g.schema_name, g.table_name, g.role_name);
        applied := applied + 1;
    END LOOP;
    RETURN applied;
END;
$$;
REVOKE ALL ON FUNCTION security.apply_table_grants() FROM PUBLIC;

SELECT security.apply_table_grants();
