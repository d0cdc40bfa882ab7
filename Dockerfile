# The consumer service image.
#
#   docker build -t consumer .
#   docker run --read-only --tmpfs /tmp -e CONSUMER_BOOTSTRAP_SERVERS=... consumer
#
# Two stages: the builder installs the pinned dependencies (constraints.txt)
# and the package into a virtualenv; the final stage is the base image plus
# that virtualenv and an unprivileged user. No compiler, no pip, no package
# index settings reach it. The root filesystem may be mounted read-only: the
# service writes nothing outside /tmp and its working directory
# /var/lib/consumer (the default SQLite sink file; the Helm chart mounts a
# volume there for it), which the platform mounts writable.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
# The build machine's pip settings (package index, timeout) pass in as build
# arguments; a CA bundle for that index, if one is needed, as the optional
# file .docker-build/pip-ca.pem. Both stay in this stage.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT=60
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python3 -m venv /opt/venv
# Dependencies first, from pyproject's list pinned by constraints.txt, so this
# layer is rebuilt only when they change. Wheels only: nothing compiles. The
# `otel` extra is included so CONSUMER_TRACING=otlp works in the image (~13 MB).
COPY pyproject.toml constraints.txt .docker-build* ./
RUN if [ -f pip-ca.pem ]; then export PIP_CERT="$PWD/pip-ca.pem"; fi \
 && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print(*p["dependencies"], *p["optional-dependencies"]["otel"], sep="\n")' \
      > requirements.txt \
 && /opt/venv/bin/pip install --only-binary=:all: -c constraints.txt -r requirements.txt
COPY README.md ./
COPY schemas ./schemas
COPY consumer ./consumer
RUN if [ -f pip-ca.pem ]; then export PIP_CERT="$PWD/pip-ca.pem"; fi \
 && /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools

FROM ${BASE_IMAGE}
# A fixed uid/gid so the platform's runAsUser, fsGroup and volume ownership
# can name it; outside the range distributions give to real users.
RUN groupadd --system --gid 10001 consumer \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/consumer --no-create-home \
      --shell /usr/sbin/nologin consumer \
 && mkdir /var/lib/consumer && chown 10001:10001 /var/lib/consumer
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONSUMER_HTTP_PORT=8080
WORKDIR /var/lib/consumer
USER 10001:10001
EXPOSE 8080
# The service drains, commits and exits 0 on SIGTERM within
# CONSUMER_SHUTDOWN_TIMEOUT; give it that long before a SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["consumer", "run"]
# Last, so a new revision rebuilds nothing but these labels.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="consumer" \
      org.opencontainers.image.description="Kafka consumer service: validate, batch, store, retry, dead-letter, commit only what is done." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
