# Image for the Dagster webserver and daemon in docker-compose.yml.
# PostgreSQL and Elasticsearch come from their official images there; this image
# holds only sync_pipeline and Dagster.
# A pinned base (a patch release of one Debian release), rebuilt on purpose, not by a new tag
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    SYNC_CONFIG=/opt/sync_pipeline/sync.yaml \
    SYNC_STAGING_DIR=/opt/dagster/staging

WORKDIR /opt/sync_pipeline
COPY . .
# constraints.txt pins the whole dependency tree (the same pins `make venv` uses)
RUN pip install -c constraints.txt .

# The Dagster instance. The webserver and the daemon are two containers, so the run
# history lives in PostgreSQL (DAGSTER_PG_URL, set by docker-compose.yml) rather than
# in SQLite files inside one container; compute logs go to a directory that
# docker-compose.yml mounts as a shared volume.
RUN mkdir -p "$DAGSTER_HOME" "$SYNC_STAGING_DIR" /opt/dagster/compute_logs \
 && printf '%s\n' \
      'storage:' \
      '  postgres:' \
      '    postgres_url:' \
      '      env: DAGSTER_PG_URL' \
      'compute_logs:' \
      '  module: dagster._core.storage.local_compute_log_manager' \
      '  class: LocalComputeLogManager' \
      '  config:' \
      '    base_dir: /opt/dagster/compute_logs' \
      > "$DAGSTER_HOME/dagster.yaml"

# never root: a non-login system user owns only what the runs write
RUN useradd --system --uid 10001 --no-create-home --home-dir /opt/dagster --shell /usr/sbin/nologin sync \
 && chown -R sync /opt/dagster
USER 10001

EXPOSE 3000
CMD ["dagster-webserver", "-w", "workspace.yaml", "-h", "0.0.0.0", "-p", "3000"]
