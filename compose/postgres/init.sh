#!/usr/bin/env bash
# Creates the paydata databases and roles; the official postgres image runs this once, on an
# empty data directory (docker-entrypoint-initdb.d), as the superuser over the Unix socket.
# Mirrors the local stack: each database is owned by its own login role (settings.DATABASE_OWNERS)
# and the CDC role may use logical replication on the CDC source databases. The key store
# database (wrapped data keys) is reachable by its owner only (CONNECT and pg_hba.conf), and each
# database has a scratch copy the restore drill restores the latest backup into.
# Names and passwords reach SQL only as psql variables (:"identifier" / :'literal' quoting).
# No "set -u": if the file loses its executable bit the entrypoint sources it, and -u would leak
# into docker-entrypoint.sh.
set -eo pipefail

require() {
    if [[ -z "${!1:-}" ]]; then
        echo "init.sh: $1 is empty; set it in the paydata-postgres environment" >&2
        exit 1
    fi
}

run_sql() {
    local database="$1"
    shift
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$database" "$@"
}

# create_database DATABASE OWNER PASSWORD_VARIABLE
create_database() {
    require "$3"
    run_sql postgres -v db="$1" -v owner="$2" -v password="${!3}" <<'SQL'
CREATE ROLE :"owner" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
}

# create_cdc_role ROLE PASSWORD_VARIABLE
create_cdc_role() {
    require "$2"
    run_sql postgres -v role="$1" -v password="${!2}" <<'SQL'
CREATE ROLE :"role" LOGIN REPLICATION PASSWORD :'password';
SQL
}

# grant_cdc DATABASE OWNER ROLE: connect, plus read access to whatever the owner creates later.
grant_cdc() {
    run_sql "$1" -v db="$1" -v owner="$2" -v role="$3" <<'SQL'
GRANT CONNECT ON DATABASE :"db" TO :"role";
GRANT USAGE ON SCHEMA public TO :"role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE ON SCHEMAS TO :"role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT SELECT ON TABLES TO :"role";
SQL
}

# create_drill_database DATABASE OWNER: the restore drill's scratch database (role exists already).
create_drill_database() {
    run_sql postgres -v db="restore_drill_$1" -v owner="$2" <<'SQL'
CREATE DATABASE :"db" OWNER :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
}

# grant_wal_maintenance ROLE: the erasure window switches WAL segments, checkpoints and lists pg_wal.
# Function privileges live in each database's catalog: granted in the key store database.
grant_wal_maintenance() {
    run_sql keystore -v role="$1" <<'SQL'
GRANT pg_checkpoint TO :"role";
GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO :"role";
GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_waldir() TO :"role";
SQL
}

# create_group_role ROLE: a NOLOGIN role that carries privileges.
create_group_role() {
    run_sql postgres -v role="$1" <<'SQL'
CREATE ROLE :"role" NOLOGIN;
SQL
}

# grant_connect DATABASE ROLE
grant_connect() {
    run_sql postgres -v db="$1" -v role="$2" <<'SQL'
GRANT CONNECT ON DATABASE :"db" TO :"role";
SQL
}

# create_login_user USER GROUP PASSWORD_VARIABLE
create_login_user() {
    require "$3"
    run_sql postgres -v role="$1" -v grp="$2" -v password="${!3}" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password' IN ROLE :"grp";
SQL
}

# enable_pgaudit DATABASE: session audit logging of reads, writes, role changes and DDL.
enable_pgaudit() {
    run_sql "$1" -v db="$1" <<'SQL'
CREATE EXTENSION IF NOT EXISTS pgaudit;
ALTER DATABASE :"db" SET pgaudit.log = 'read, write, role, ddl';
SQL
}

create_database reference reference_owner PAYDATA_REFERENCE_OWNER_PASSWORD
create_database oltp oltp_owner PAYDATA_OLTP_OWNER_PASSWORD
create_database warehouse warehouse_owner PAYDATA_WAREHOUSE_OWNER_PASSWORD
create_database keystore paydata_keystore PAYDATA_KEYSTORE_PASSWORD

create_drill_database reference reference_owner
create_drill_database oltp oltp_owner
create_drill_database warehouse warehouse_owner
create_drill_database keystore paydata_keystore
grant_wal_maintenance paydata_keystore

create_cdc_role paydata_cdc PAYDATA_CDC_PASSWORD
grant_cdc reference reference_owner paydata_cdc
grant_cdc oltp oltp_owner paydata_cdc

# The role matrix (paydata/privileges.py, docs/security.md): NOLOGIN groups, CONNECT where each
# group works, one login per job kind. The migrations grant on their own objects by group name.
create_group_role oltp_app
create_group_role warehouse_loader
create_group_role analyst
create_group_role merchant_analyst
create_group_role ml
create_group_role auditor
grant_connect oltp oltp_app
grant_connect oltp auditor
grant_connect reference auditor
grant_connect warehouse warehouse_loader
grant_connect warehouse analyst
grant_connect warehouse merchant_analyst
grant_connect warehouse ml
create_login_user paydata_app oltp_app PAYDATA_APP_PASSWORD
create_login_user paydata_auditor auditor PAYDATA_AUDITOR_PASSWORD
create_login_user paydata_loader warehouse_loader PAYDATA_LOADER_PASSWORD
create_login_user paydata_wh_analyst analyst PAYDATA_WH_ANALYST_PASSWORD
create_login_user paydata_ml ml PAYDATA_ML_PASSWORD

enable_pgaudit reference
enable_pgaudit oltp
