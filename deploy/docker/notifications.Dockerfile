# syntax=docker/dockerfile:1
# The notifications service: `api` (default) or `worker` or `migrate` (see entrypoint.sh).
# Build from the repository root: docker build -f deploy/docker/notifications.Dockerfile .

# --- builder: the kit and the notifications package with their pinned dependencies in a venv
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src
COPY constraints.txt ./
# The kit first: it carries nearly every dependency, so this layer survives service edits.
COPY services/kit/ services/kit/
RUN pip install --no-cache-dir -c constraints.txt ./services/kit
COPY services/notifications/ services/notifications/
RUN pip install --no-cache-dir -c constraints.txt ./services/notifications

# --- runtime: the venv, the migrations and a non-root user; no compilers, no sources
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="clientele-notifications" \
      org.opencontainers.image.description="Notifications service: email templates, the outbound email log, SMTP delivery"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLIENTELE_APP=notifications \
    CLIENTELE_ALEMBIC_CONFIG=/app/alembic.ini \
    PORT=8102

RUN groupadd --system --gid 10001 clientele \
 && useradd --system --uid 10001 --gid clientele --no-create-home \
    --home-dir /nonexistent --shell /usr/sbin/nologin clientele

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Alembic history (not part of the wheel): `migrate` runs alembic -c $CLIENTELE_ALEMBIC_CONFIG.
COPY services/notifications/alembic.ini ./alembic.ini
COPY services/notifications/migrations/ ./migrations/
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/clientele-entrypoint

USER 10001:10001
EXPOSE 8102
# Liveness of the api (a worker or migrate container disables it; see deploy/compose.yaml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8102') + '/healthz', timeout=4)"]

ENTRYPOINT ["clientele-entrypoint"]
CMD ["api"]
