-- Whether the warehouse has the owner's rebuild and refresh functions (migration V002), and whether
-- this session may apply definitions itself (the owner, or a superuser, may create in the database).
-- The catalog, not to_regprocedure: a role without USAGE on schema security may ask too.
SELECT EXISTS (SELECT 1 FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
               WHERE n.nspname = 'security' AND p.proname = 'begin_full_rebuild') AS has_functions,
       has_database_privilege(current_database(), 'CREATE') AS may_define
