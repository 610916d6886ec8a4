# Image for the Dagster webserver and daemon in docker-compose.yml.
# PostgreSQL and Elasticsearch come from their official images there; this image
# holds only sync_pipeline and Dagster, installed from the wheel as any user installs it.
# A pinned base (a patch release of one Debian release), rebuilt on purpose, not by a new tag

# 1. the wheel, built from the package's sources alone
FROM python:3.11.11-slim-bookworm AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY sync_pipeline ./sync_pipeline
RUN pip wheel --no-deps . -w /dist

# 2. the image: the wheel installed with constraints.txt, the lock the test suite runs on
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    SYNC_CONFIG=/opt/sync_pipeline/sync.yaml \
    SYNC_STAGING_DIR=/opt/dagster/staging

COPY constraints.txt /tmp/constraints.txt
COPY --from=wheel /dist/ /tmp/dist/
# with the alerts extra (Slack, PagerDuty and Teams through Dagster's integrations) and pandas (a
# spec's `transform:`), so an image serves every spec and alert destination the docs describe
RUN whl="$(ls /tmp/dist/*.whl)" && pip install -c /tmp/constraints.txt "${whl}[alerts,pandas]" \
    && rm -rf /tmp/dist /tmp/constraints.txt

# The Dagster instance is the package's own dagster.yaml (deploy/dagster.yaml in the checkout:
# run queue limits, run monitoring, threaded sensors), linked, not copied or rewritten; its
# storage is PostgreSQL at SYNC_DAGSTER_PG_URL (set by docker-compose.yml), because the webserver
# and the daemon are two containers. Compute logs and run artifacts go to Dagster's default,
# $DAGSTER_HOME/storage, a volume both containers mount. The workspace is the package's too.
WORKDIR /opt/sync_pipeline
RUN resources="$(python -c 'import importlib.resources as r; print(r.files("sync_pipeline") / "resources")')" \
 && mkdir -p "$DAGSTER_HOME/storage" "$SYNC_STAGING_DIR" \
 && ln -s "$resources/dagster.yaml" "$DAGSTER_HOME/dagster.yaml" \
 && ln -s "$resources/workspace.yaml" /opt/sync_pipeline/workspace.yaml
# the specs: SYNC_CONFIG, /opt/sync_pipeline/sync.yaml, mounted by docker-compose.yml (not in the image)

# never root: a non-login system user owns only what the runs write
RUN useradd --system --uid 10001 --no-create-home --home-dir /opt/dagster --shell /usr/sbin/nologin sync \
 && chown -R sync /opt/dagster
USER 10001

EXPOSE 3000
CMD ["dagster-webserver", "-w", "workspace.yaml", "-h", "0.0.0.0", "-p", "3000"]
