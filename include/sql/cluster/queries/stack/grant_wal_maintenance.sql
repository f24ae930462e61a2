GRANT pg_checkpoint TO {role};
GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO {role};
GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_waldir() TO {role};
