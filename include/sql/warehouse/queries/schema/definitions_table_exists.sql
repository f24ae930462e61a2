-- Whether the warehouse records applied definitions (migration V002).
SELECT to_regclass('security.applied_definitions') IS NOT NULL
