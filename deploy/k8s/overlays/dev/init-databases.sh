#!/bin/bash
# Runs once, when the development PostgreSQL starts on an empty volume (the
# official image runs /docker-entrypoint-initdb.d/* then): one role and one
# database per service, each database owned by its role, as in deploy/compose.yaml.
set -eo pipefail

password="${CLIENTELE_DB_PASSWORD:?CLIENTELE_DB_PASSWORD is not set}"

for name in clients notifications catalog payments; do
  echo "creating role and database ${name}"
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v name="$name" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
