#!/bin/bash
# Runs once, when the PostgreSQL data directory is first created (the official
# image runs /docker-entrypoint-initdb.d/* then). One role and one database per
# service, each database owned by its role: a service can reach only its own.
#
#   CLIENTELE_DATABASES     the service names (default: clients notifications catalog payments)
#   CLIENTELE_DB_PASSWORD   the password of every service role
set -eo pipefail  # no -u: the image may source this file into its own entrypoint

databases="${CLIENTELE_DATABASES:-clients notifications catalog payments}"
password="${CLIENTELE_DB_PASSWORD:?CLIENTELE_DB_PASSWORD is not set}"

for name in $databases; do
  echo "creating role and database ${name}"
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v name="$name" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
