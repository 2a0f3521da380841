# syntax=docker/dockerfile:1
# The gateway: the only public entry (routes the API, serves the web UI). It has
# no worker and no database, so the image only runs the api.
# Build from the repository root: docker build -f deploy/docker/gateway.Dockerfile .

# --- builder: the kit and the gateway package with their pinned dependencies in a venv
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src
COPY constraints.txt ./
COPY services/kit/ services/kit/
RUN pip install --no-cache-dir -c constraints.txt ./services/kit
# Templates and static files are package data of the gateway wheel.
COPY gateway/ gateway/
RUN pip install --no-cache-dir -c constraints.txt ./gateway

# --- runtime: the venv and a non-root user; no compilers, no sources
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="clientele-gateway" \
      org.opencontainers.image.description="Gateway: the public entry, API routing, web UI, sessions, CSRF, rate limits"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLIENTELE_APP=gateway \
    PORT=8000

RUN groupadd --system --gid 10001 clientele \
 && useradd --system --uid 10001 --gid clientele --no-create-home \
    --home-dir /nonexistent --shell /usr/sbin/nologin clientele

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/clientele-entrypoint

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["clientele-entrypoint"]
CMD ["api"]
