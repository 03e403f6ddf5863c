# Sakk: one image for the consumers and the one-shot admin commands; docker-compose.yml
# picks the `sakk` subcommand. docs/operations.md explains the services.
# The default target (`runtime`) leaves the development tools (tooling/: the simulator, the
# benchmark, the chaos harness) out; the `dev` target adds them, for the simulator service.

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
RUN /opt/sakk/bin/pip install .

# ---- build-dev: the same virtualenv plus the tooling distribution (tooling/pyproject.toml)
FROM build AS build-dev
COPY tooling ./tooling
RUN /opt/sakk/bin/pip install --no-deps ./tooling \
 && /opt/sakk/bin/pip uninstall --yes pip

# ---- build-runtime: the production virtualenv, without pip
FROM build AS build-runtime
RUN /opt/sakk/bin/pip uninstall --yes pip

# ---- base: the schemas and reference data, a non-root user (the virtualenv comes last)
FROM python:3.11.10-slim-bookworm AS base

RUN groupadd --system --gid 10001 sakk \
 && useradd --system --uid 10001 --gid sakk --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin sakk

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

# ---- dev: the image with the development tools (`sakk simulate`, demo, bench, chaos)
FROM base AS dev
COPY --from=build-dev /opt/sakk /opt/sakk

# ---- runtime (the default target): the production image, no development tools
FROM base AS runtime
COPY --from=build-runtime /opt/sakk /opt/sakk
