#!/bin/sh
# The official postgres image's contract, as far as Tessera's manifests use it: on an
# empty PGDATA, initdb with POSTGRES_USER (default postgres) as the superuser and
# POSTGRES_PASSWORD as its password (scram-sha-256 over TCP), create POSTGRES_DB
# (default: the user's name); then run the server in the foreground, listening on all
# interfaces. Runs as the postgres user; /tmp and the socket directory must be writable.
set -eu

user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"
: "${PGDATA:?PGDATA must be set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    password_file="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --pgdata="$PGDATA" --username="$user" --pwfile="$password_file" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$database" != "postgres" ]; then
        pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
        psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --username="$user" --dbname=postgres \
            --command="CREATE DATABASE \"$database\""
        pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
    fi
    echo "postgres-entrypoint: initialised $PGDATA (user $user, database $database)"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*'
