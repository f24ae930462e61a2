-- Whether the warehouse has the owner's rebuild and refresh functions (migration V002), and whether
-- this session may apply definitions itself (the owner, or a superuser, may create in the database).
SELECT to_regprocedure('security.begin_full_rebuild()') IS NOT NULL AS has_functions,
       has_database_privilege(current_database(), 'CREATE') AS may_define
