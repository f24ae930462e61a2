#!/usr/bin/env bash
# Entrypoint of mongodb: install the TLS certificate tls-init produced and the replica-set keyFile,
# then hand over to the official image's docker-entrypoint.sh (which creates paydata_root from
# MONGO_INITDB_ROOT_* on an empty data volume, with TLS allowed but not yet required).
# mongod wants one PEM file holding certificate and key, and refuses a keyFile that others can read.
set -euo pipefail

public_dir=/opt/paydata/tls
private_dir=/opt/paydata/tls-private
target_dir=/etc/mongo/paydata-tls
keyfile=/data/configdb/paydata.keyfile

for required in "$public_dir/server.crt" "$public_dir/ca.crt" "$private_dir/server.key"; do
    if [[ ! -s "$required" ]]; then
        echo "start.sh: $required is missing; run 'docker compose up tls-init' first" >&2
        exit 1
    fi
done

install -d -o mongodb -g mongodb -m 0700 "$target_dir"
( umask 077; cat "$public_dir/server.crt" "$private_dir/server.key" > "$target_dir/server.pem" )
chown mongodb:mongodb "$target_dir/server.pem"
chmod 0400 "$target_dir/server.pem"

# One member: the keyFile only has to match itself, so it is made here once and kept in the
# config volume. A second member would need the same file.
if [[ ! -s "$keyfile" ]]; then
    ( umask 077; head -c 756 /dev/urandom | base64 -w 0 > "$keyfile" )
fi
chown mongodb:mongodb "$keyfile"
chmod 0400 "$keyfile"

exec docker-entrypoint.sh "$@"
