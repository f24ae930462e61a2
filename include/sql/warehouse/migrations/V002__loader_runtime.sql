-- The warehouse loader runs the CDC staging sink and the marts build without owning anything
-- (docs/security.md, *Which role each job connects as*). DDL stays with the warehouse owner and
-- the migrate step (`python -m paydata.migrations apply`, which also applies the marts, staging
-- and bookkeeping definitions); the loader gets:
--   * the sequences of staging (the dead-letter ids) and TEMPORARY on the database (the sink's
--     and the build's per-transaction work tables);
--   * SECURITY DEFINER functions, owned by the warehouse owner, for the three things a build does
--     that Postgres only lets an owner do: TRUNCATE the marts and drop the fact's secondary indexes
--     at the start of a full rebuild, recreate those indexes after the fact load, and refresh the
--     marts' materialized views. Each does exactly that one thing on fixed objects; none takes
--     SQL or an object name from the caller beyond choosing among the marts' own views;
--   * a read of `security.applied_definitions`, where the migrate step records the checksum of the
--     marts definitions it applied, so a build as the loader refuses to run on stale definitions.

INSERT INTO security.role_grant (role_name, object_type, schema_name, privileges) VALUES
    ('warehouse_loader', 'SEQUENCES', 'staging', 'USAGE, SELECT, UPDATE');
SELECT security.apply_grants();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'warehouse_loader') THEN
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO warehouse_loader', current_database());
    ELSE
        RAISE NOTICE 'role warehouse_loader does not exist yet; TEMPORARY on the database is skipped';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ml') THEN
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO ml', current_database());
    END IF;
END;
$$;

-- What the migrate step applied after the migrations: name -> checksum of the definition files.
CREATE TABLE security.applied_definitions (
    name       text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Index definitions a full rebuild dropped in its transaction, until it recreates them.
CREATE TABLE security.rebuild_dropped_index (
    index_name name PRIMARY KEY,
    definition text NOT NULL
);

-- Start of a full rebuild, inside the build's transaction: empty the marts and drop the ledger
-- fact's secondary indexes (those backing no constraint), keeping their catalog definitions.
CREATE FUNCTION security.begin_full_rebuild() RETURNS SETOF name
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    i record;
BEGIN
    TRUNCATE marts.fct_balance_transaction, marts.fct_charge, marts.dim_merchant, marts.dim_customer,
        marts.dim_payment_method, marts.dim_currency, marts.dim_country, marts.dim_date,
        marts.build_state;
    DELETE FROM security.rebuild_dropped_index;
    FOR i IN
        SELECT n.nspname AS index_schema, c.relname AS index_name, pg_get_indexdef(x.indexrelid) AS definition
        FROM pg_index AS x
        JOIN pg_class AS c ON c.oid = x.indexrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE x.indrelid = 'marts.fct_balance_transaction'::regclass
          AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = x.indexrelid)
        ORDER BY c.relname
    LOOP
        INSERT INTO security.rebuild_dropped_index (index_name, definition) VALUES (i.index_name, i.definition);
        EXECUTE format('DROP INDEX %I.%I', i.index_schema, i.index_name);
        RETURN NEXT i.index_name;
    END LOOP;
END;
$$;

-- After the fact load of a full rebuild: recreate the indexes begin_full_rebuild dropped, from the
-- definitions it kept (never from the caller).
CREATE FUNCTION security.recreate_rebuild_indexes() RETURNS SETOF name
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    i record;
BEGIN
    FOR i IN DELETE FROM security.rebuild_dropped_index RETURNING index_name, definition LOOP
        EXECUTE i.definition;
        RETURN NEXT i.index_name;
    END LOOP;
END;
$$;

-- Refresh one of the marts' materialized views; anything else is refused.
CREATE FUNCTION security.refresh_marts_view(view_name text, concurrent boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_matviews WHERE schemaname = 'marts' AND matviewname = view_name) THEN
        RAISE EXCEPTION 'marts.% is not a materialized view of the marts', view_name
            USING ERRCODE = 'undefined_table';
    END IF;
    IF concurrent THEN
        EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY marts.%I', view_name);
    ELSE
        EXECUTE format('REFRESH MATERIALIZED VIEW marts.%I', view_name);
    END IF;
END;
$$;

REVOKE ALL ON FUNCTION security.begin_full_rebuild() FROM PUBLIC;
REVOKE ALL ON FUNCTION security.recreate_rebuild_indexes() FROM PUBLIC;
REVOKE ALL ON FUNCTION security.refresh_marts_view(text, boolean) FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'warehouse_loader') THEN
        GRANT USAGE ON SCHEMA security TO warehouse_loader;
        GRANT SELECT ON security.applied_definitions TO warehouse_loader;
        GRANT EXECUTE ON FUNCTION security.begin_full_rebuild() TO warehouse_loader;
        GRANT EXECUTE ON FUNCTION security.recreate_rebuild_indexes() TO warehouse_loader;
        GRANT EXECUTE ON FUNCTION security.refresh_marts_view(text, boolean) TO warehouse_loader;
    ELSE
        RAISE NOTICE 'role warehouse_loader does not exist yet; its functions are not granted';
    END IF;
END;
$$;
