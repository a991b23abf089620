# bankdw's image: the flows, SQLMesh and the `bankdw` command, with the project they read
# (config.yaml, models/, macros/, audits/, sql/, prefect.yaml). docker-compose.yml's worker runs
# it; README: "Running in production", "Containers".
#
#   docker build -t bankdw .
#   docker run --rm -e WAREHOUSE_URL=… -e SOURCE_URL=… bankdw bankdw run
FROM python:3.11-slim

# No bytecode written into the checkout (its files are root's), logs unbuffered for `docker
# logs`, no pip cache kept in a layer, and no notice that pip runs as root while it builds.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# The checkout, as a clone would hold it (.dockerignore leaves out .env, .venv, .warehouse, .git,
# logs and the tests).
WORKDIR /opt/bankdw
COPY . .

# The install command `make` runs (scripts/install: editable, into the image's Python; the
# checkout above is what the package reads its SQL and the SQLMesh project from).
RUN scripts/install python

# Flow runs never run as root. The checkout stays root's, read-only to them: the user writes only
# SQLMesh's cache (.cache) and logs in the project, and bankdw's local state (WAREHOUSE_DIR: GX's
# stores and Data Docs, the log), a volume in docker-compose.yml. Prefect's home is ~/.prefect.
RUN useradd --create-home --uid 10001 --user-group bankdw \
    && mkdir -p /opt/bankdw/.cache /opt/bankdw/logs /var/lib/bankdw \
    && chown bankdw:bankdw /opt/bankdw/.cache /opt/bankdw/logs /var/lib/bankdw \
    && chmod 0700 /var/lib/bankdw

# bankdw's settings (flows/settings.py): the project is this checkout, whatever the current
# folder, and local state lives outside it.
ENV PROJECT_ROOT=/opt/bankdw \
    WAREHOUSE_DIR=/var/lib/bankdw

USER bankdw
CMD ["bankdw", "--help"]
