# syntax=docker/dockerfile:1
# localstripe: the offline Stripe double (development and demos only, never production).
# The version is the one pinned in constraints.txt (tests/deploy checks they agree).
# Build from the repository root: docker build -f deploy/docker/localstripe.Dockerfile .

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv
WORKDIR /src
COPY constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt localstripe==1.15.10

FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="clientele-localstripe" \
      org.opencontainers.image.description="localstripe (offline Stripe with a mock Stripe.js) for local Clientele systems"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8420

RUN groupadd --system --gid 10001 localstripe \
 && useradd --system --uid 10001 --gid localstripe --no-create-home \
    --home-dir /nonexistent --shell /usr/sbin/nologin localstripe

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY deploy/docker/localstripe_start.py ./localstripe_start.py

# It keeps its state in /tmp (writable by anyone); --from-scratch never loads an old one.
USER 10001:10001
EXPOSE 8420
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8420') + '/js.stripe.com/v3/', timeout=4)"]

# `localstripe --port 8420 --from-scratch`, with the webhook registered first (see the script).
ENTRYPOINT ["python", "/app/localstripe_start.py"]
CMD ["--port", "8420", "--from-scratch"]
