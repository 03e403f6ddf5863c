# Sakk: one image for the consumers, the one-shot admin commands and the simulator;
# docker-compose.yml picks the `sakk` subcommand. docs/operations.md explains the services.

# ---- build: install Sakk and its dependencies into a virtualenv (pip and its cache stay here)
FROM python:3.11.10-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/sakk
WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY consumers ./consumers
COPY producers ./producers
COPY sakk ./sakk
COPY tooling ./tooling
RUN /opt/sakk/bin/pip install . \
 && /opt/sakk/bin/pip uninstall --yes pip

# ---- runtime: the virtualenv, the schemas and reference data, a non-root user
FROM python:3.11.10-slim-bookworm

RUN groupadd --system --gid 10001 sakk \
 && useradd --system --uid 10001 --gid sakk --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin sakk

COPY --from=build /opt/sakk /opt/sakk
WORKDIR /app
COPY schemas ./schemas
COPY reference ./reference
RUN mkdir -p /app/var && chown sakk:sakk /app/var

# Sakk is installed as a package, so paths that default to the source tree are set here.
ENV PATH=/opt/sakk/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SAKK_SCHEMAS_DIR=/app/schemas \
    SAKK_REFERENCE_FILE=/app/reference/morocco.json \
    SAKK_DATA_DIR=/app/var \
    SAKK_NOTIFY_LOG_PATH=/app/var/notifications.jsonl \
    SAKK_METRICS_HOST=0.0.0.0 \
    SAKK_METRICS_PORT=9100

USER 10001:10001
EXPOSE 9100

# Liveness only (/healthz): a replica without partitions is alive but not ready, and
# must not be restarted for it. Python's urllib, so the image needs no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SAKK_METRICS_PORT', '9100'), timeout=2)"]

ENTRYPOINT ["sakk"]
CMD ["run", "all"]
