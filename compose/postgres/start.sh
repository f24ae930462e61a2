#!/usr/bin/env bash
# Entrypoint of paydata-postgres: install the TLS files tls-init produced, then hand over to the
# official image's docker-entrypoint.sh (which runs init.sh on an empty data directory).
# Postgres refuses a key not owned by its OS user or readable by others, and volume files keep
# the owner that wrote them, so the files are copied rather than used in place.
set -euo pipefail

public_dir=/opt/paydata/tls
private_dir=/opt/paydata/tls-private
target_dir=/etc/postgresql/tls

for required in "$public_dir/server.crt" "$private_dir/server.key"; do
    if [[ ! -s "$required" ]]; then
        echo "start.sh: $required is missing; run 'docker compose up tls-init' first" >&2
        exit 1
    fi
done

install -d -o postgres -g postgres -m 0700 "$target_dir"
install -o postgres -g postgres -m 0644 "$public_dir/server.crt" "$target_dir/server.crt"
install -o postgres -g postgres -m 0600 "$private_dir/server.key" "$target_dir/server.key"

exec docker-entrypoint.sh postgres -c config_file=/etc/postgresql/postgresql.conf "$@"
