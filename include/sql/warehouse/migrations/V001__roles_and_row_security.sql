-- The warehouse's role matrix and row-level security (docs/security.md, *Roles and privileges*).
--
-- Most warehouse tables are created after this migration, by the jobs that fill them (the CDC
-- sink's staging tables, ensure_marts, the feature build), always as the warehouse owner. So the
-- grants are schema-wide and default privileges for what the owner creates later, listed as data
-- in security.role_grant and applied by security.apply_grants(); ensure_marts calls
-- security.apply_row_security() after every DDL pass, which puts the merchant policies on the
-- tables it finds. A role that does not exist yet is skipped with a NOTICE.

CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS marts;
CREATE SCHEMA IF NOT EXISTS analytics;
CREATE SCHEMA IF NOT EXISTS features;
CREATE SCHEMA IF NOT EXISTS ml;
CREATE SCHEMA security;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- object_type: SCHEMA (privileges on the schema itself), TABLES (every table, view and
-- materialized view in the schema now, and those the owner creates later), SEQUENCES (alike).
CREATE TABLE security.role_grant (
    role_name   name NOT NULL,
    object_type text NOT NULL CHECK (object_type IN ('SCHEMA', 'TABLES', 'SEQUENCES')),
    schema_name name NOT NULL,
    privileges  text NOT NULL CHECK (privileges ~ '^[A-Z]+(, [A-Z]+)*$'),
    PRIMARY KEY (role_name, object_type, schema_name)
);

INSERT INTO security.role_grant (role_name, object_type, schema_name, privileges) VALUES
    ('warehouse_loader', 'SCHEMA', 'staging', 'USAGE'),
    ('warehouse_loader', 'TABLES', 'staging', 'SELECT, INSERT, UPDATE, DELETE'),
    ('warehouse_loader', 'SCHEMA', 'marts', 'USAGE'),
    ('warehouse_loader', 'TABLES', 'marts', 'SELECT, INSERT, UPDATE, DELETE'),
    ('analyst', 'SCHEMA', 'marts', 'USAGE'),
    ('analyst', 'TABLES', 'marts', 'SELECT'),
    ('analyst', 'SCHEMA', 'analytics', 'USAGE'),
    ('analyst', 'TABLES', 'analytics', 'SELECT'),
    ('ml', 'SCHEMA', 'marts', 'USAGE'),
    ('ml', 'TABLES', 'marts', 'SELECT'),
    ('ml', 'SCHEMA', 'features', 'USAGE'),
    ('ml', 'TABLES', 'features', 'SELECT'),
    ('ml', 'SCHEMA', 'ml', 'USAGE, CREATE'),
    ('ml', 'TABLES', 'ml', 'SELECT, INSERT, UPDATE, DELETE'),
    ('ml', 'SEQUENCES', 'ml', 'USAGE, SELECT, UPDATE'),
    ('merchant_analyst', 'SCHEMA', 'marts', 'USAGE');

CREATE FUNCTION security.apply_grants() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    applied integer := 0;
BEGIN
    FOR g IN SELECT * FROM security.role_grant ORDER BY role_name, object_type, schema_name LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g.role_name) THEN
            RAISE NOTICE 'role % does not exist yet; its grant on % is skipped', g.role_name, g.schema_name;
            CONTINUE;
        END IF;
        IF g.object_type = 'SCHEMA' THEN
            EXECUTE format('GRANT %s ON SCHEMA %I TO %I', g.privileges, g.schema_name, g.role_name);
        ELSE
            EXECUTE format('GRANT %s ON ALL %s IN SCHEMA %I TO %I', g.privileges, g.object_type,
                           g.schema_name, g.role_name);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT %s ON %s TO %I', g.schema_name,
                           g.privileges, g.object_type, g.role_name);
        END IF;
        applied := applied + 1;
    END LOOP;
    RETURN applied;
END;
$$;
REVOKE ALL ON FUNCTION security.apply_grants() FROM PUBLIC;

-- Which merchants' rows a merchant-scoped analyst may read: one row per (login role, merchant).
CREATE TABLE security.analyst_merchant (
    role_name   name   NOT NULL,
    merchant_id bigint NOT NULL,
    PRIMARY KEY (role_name, merchant_id)
);

-- The merchants of the session's login role, for the policies; SECURITY DEFINER so analysts need
-- no access to the mapping itself (and cannot read each other's). Keyed by session_user (inside a
-- SECURITY DEFINER function current_user is the owner), so SET ROLE does not change the scope.
CREATE FUNCTION security.current_merchant_ids() RETURNS SETOF bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT merchant_id FROM security.analyst_merchant WHERE role_name = session_user
$$;
REVOKE ALL ON FUNCTION security.current_merchant_ids() FROM PUBLIC;

-- Row security on every marts table with a merchant_id (the facts, dim_merchant, dim_customer):
-- enabled and FORCEd, so the owner reads and writes through a policy like everyone else, and a
-- role without a policy sees no row at all.
--   writers  (owner, loader): every row, any command;
--   readers  (analyst, ml):   every row, SELECT;
--   merchant (merchant_analyst members): SELECT of their merchants' rows, and SELECT on exactly
--            these tables (not the aggregates or views, which would show every merchant).
-- Idempotent and cheap: existing policies are kept, so readers are not locked out on each build.
CREATE FUNCTION security.apply_row_security() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t record;
    secured integer := 0;
    writers text;
BEGIN
    -- The database owner (who runs the builds), whoever applies this, and the loader.
    SELECT string_agg(quote_ident(rolname), ', ') INTO writers FROM pg_roles
    WHERE rolname IN (current_user, 'warehouse_loader')
       OR oid = (SELECT datdba FROM pg_database WHERE datname = current_database());
    FOR t IN
        SELECT c.oid, c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'merchant_id' AND NOT a.attisdropped
        WHERE n.nspname = 'marts' AND c.relkind = 'r'
        ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE marts.%I ENABLE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('ALTER TABLE marts.%I FORCE ROW LEVEL SECURITY', t.relname);
        IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = t.oid AND polname = 'writers') THEN
            EXECUTE format('CREATE POLICY writers ON marts.%I FOR ALL TO %s USING (true) WITH CHECK (true)',
                           t.relname, writers);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = t.oid AND polname = 'readers')
           AND (SELECT count(*) FROM pg_roles WHERE rolname IN ('analyst', 'ml')) = 2 THEN
            EXECUTE format('CREATE POLICY readers ON marts.%I FOR SELECT TO analyst, ml USING (true)', t.relname);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'merchant_analyst') THEN
            IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = t.oid AND polname = 'merchant') THEN
                EXECUTE format('CREATE POLICY merchant ON marts.%I FOR SELECT TO merchant_analyst '
                               'USING (merchant_id IN (SELECT security.current_merchant_ids()))', t.relname);
            END IF;
            EXECUTE format('GRANT SELECT ON marts.%I TO merchant_analyst', t.relname);
        END IF;
        secured := secured + 1;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'merchant_analyst') THEN
        GRANT USAGE ON SCHEMA security TO merchant_analyst;
        GRANT EXECUTE ON FUNCTION security.current_merchant_ids() TO merchant_analyst;
    END IF;
    RETURN secured;
END;
$$;
REVOKE ALL ON FUNCTION security.apply_row_security() FROM PUBLIC;

SELECT security.apply_grants();
SELECT security.apply_row_security();
