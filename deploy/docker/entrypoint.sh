#!/bin/sh
# Entrypoint of every Clientele service image (deploy/docker/<name>.Dockerfile).
#
#   api       (the default) the service's api under uvicorn, on $PORT
#   worker    the service's worker: consumers, outbox relay, periodic jobs
#   migrate   the service's Alembic migrations up to head, then exit
#   anything else is run as a command (e.g. `sh`, `python -c ...`)
#
# CLIENTELE_APP (clients, notifications, catalog, payments, gateway) and PORT
# are set by the image; settings come from the environment (see README.md).
# CLIENTELE_ALEMBIC_CONFIG is where the image put the service's alembic.ini.
set -eu

app="${CLIENTELE_APP:?CLIENTELE_APP is not set}"
mode="${1:-api}"
if [ "$#" -gt 0 ]; then
  shift
fi

case "$mode" in
  api)
    # Forwarding headers are the gateway's call (GATEWAY_TRUSTED_PROXY_COUNT), not uvicorn's.
    exec uvicorn --factory "${app}.main:build_app" \
      --host 0.0.0.0 --port "${PORT:?PORT is not set}" \
      --no-access-log --no-proxy-headers "$@"
    ;;
  worker)
    if [ "$app" = "gateway" ]; then
      echo "the gateway has no worker: run the image without arguments" >&2
      exit 64
    fi
    exec python -m "${app}.worker" "$@"
    ;;
  migrate)
    config="${CLIENTELE_ALEMBIC_CONFIG:-/app/alembic.ini}"
    if [ ! -f "$config" ]; then
      echo "${app} has no database migrations" >&2
      exit 64
    fi
    exec alembic -c "$config" upgrade "${1:-head}"
    ;;
  *)
    exec "$mode" "$@"
    ;;
esac
