# syntax=docker/dockerfile:1
#
# Tessera's one image for every process: `<image> risk|oms|exchange|migrate|tessera`.
#
#   docker build -t tessera:0.1.0 .
#   docker run --rm -e AIS_RISK_HMAC_SECRET=... tessera:0.1.0 risk
#
# Stage 1 compiles the Cython core (core_ext) against OpenSSL's libcrypto into a
# virtualenv and proves the compiled implementation is the one that imports. Stage 2
# is the slim Python image plus that virtualenv: no compiler, no headers, no pip cache,
# running as a numeric non-root user (Kubernetes' runAsNonRoot can only verify a
# numeric USER). Both stages use the same base image, so the virtualenv's interpreter
# path (/usr/local/bin/python3.11) exists in the runtime stage too.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# gcc and libc headers build the extension modules; libssl-dev provides libcrypto's
# headers and the link-time library for core_ext._token_c.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/tessera \
    PATH=/opt/tessera/bin:$PATH

RUN python -m venv /opt/tessera

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY core_ext/ core_ext/
COPY tessera/ tessera/
COPY services/ services/

# A regular (non-editable) install: Cython is a build requirement, so this compiles
# core_ext. The check runs isolated (-I: the working directory is not on sys.path), so
# it imports the installed package, not the source tree, and fails the build if only
# the pure-Python twin is importable.
RUN pip install . \
    && python -I -c "import core_ext; assert core_ext.IMPLEMENTATION == 'cython', core_ext.IMPLEMENTATION"

# ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# The slim image already carries libssl3 (libcrypto.so.3, which core_ext._token_c
# links against): nothing to install, and no build tools in this stage.
RUN groupadd --system --gid 10001 tessera \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/tessera --shell /usr/sbin/nologin tessera \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/tessera

COPY --from=builder /opt/tessera /opt/tessera
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/tessera-entrypoint

# PYTHONDONTWRITEBYTECODE: the root file system is read-only in Kubernetes, and pip
# already compiled the bytecode into the virtualenv at build time.
ENV PATH=/opt/tessera/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TESSERA_HOST=0.0.0.0

# The compiled core must still load here, against the runtime stage's libcrypto.
RUN python -I -c "import core_ext; assert core_ext.IMPLEMENTATION == 'cython', core_ext.IMPLEMENTATION"

# The embedded SQLite default (var/tessera.db under the working directory) stays
# usable for `docker run`; in Kubernetes TESSERA_DATABASE_URL points at PostgreSQL
# and the services write nothing to disk.
WORKDIR /var/lib/tessera
USER 10001:10001
EXPOSE 50051 50052 50053 9101 9102 9103
STOPSIGNAL SIGTERM
ENTRYPOINT ["tessera-entrypoint"]
CMD ["risk"]
