# syntax=docker/dockerfile:1
# One image for every faceserve process: the Ray head and workers of the RayService
# (manifests/rayservice.yaml), the FaceCollection operator (`kopf run /app/operator/handlers.py`)
# and a standalone `faceserve serve` (the default command). Not built in CI here: there is no
# Docker engine on the test machines. See README, "Deploying on Kubernetes".
#
#   docker build -t REGISTRY/faceserve:TAG .
#   docker run --rm -p 8000:8000 --shm-size=1g REGISTRY/faceserve:TAG

# Bookworm, pinned: the runtime library package names below are Debian 12's.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
# Shared libraries the wheels expect from the system (the rest they bundle):
#   libgomp1      OpenMP, for onnxruntime / scikit-learn builds that use it
#   libgl1, libglib2.0-0
#                 opencv-python (pulled in by insightface, imported with the model packs)
#   wget          KubeRay's default readiness probe on RayService workers runs
#                 `bash -c "wget … | grep success"` inside the Ray container
# dlib-bin needs only libstdc++, which the base image has.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libgl1 libglib2.0-0 wget \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    FACESERVE_MODEL_DIR=/opt/faceserve/models \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

FROM base AS builder
# Must equal the RayService's rayVersion (tests/test_manifests.py checks both are the same).
ARG RAY_VERSION=2.60.0
# InsightFace packs to bake in (e.g. "buffalo_l"), downloaded at build time. Their weights are
# licensed for non-commercial research only: read InsightFace's license first.
ARG INSIGHTFACE_PACKS=""
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY serve_app ./serve_app
RUN pip install . "ray[serve]==${RAY_VERSION}"
# Models are converted (and pulled) now, into a fixed directory, never at start-up.
RUN faceserve models prepare \
    && for pack in ${INSIGHTFACE_PACKS}; do faceserve models pull "$pack" || exit 1; done

FROM base AS runtime
# A fixed non-root uid/gid: the manifests' securityContext runs as 1000:1000.
# /etc/profile.d keeps the venv on PATH for login shells (KubeRay before 1.4 starts Ray with
# `bash -lc`, and Debian's /etc/profile resets PATH).
RUN groupadd --gid 1000 faceserve \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash faceserve \
    && mkdir -p /var/lib/faceserve \
    && chown 1000:1000 /var/lib/faceserve \
    && echo 'export PATH=/opt/venv/bin:$PATH' > /etc/profile.d/faceserve-venv.sh
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/faceserve/models /opt/faceserve/models
WORKDIR /app
COPY serve_config.yaml ./
COPY operator ./operator
# FACESERVE_HOST/PORT only concern `faceserve serve`; on Kubernetes the RayService's
# serveConfigV2 sets where the Serve proxies listen. The data directory holds the embedded
# PostgreSQL when FACESERVE_DATABASE_URL is unset (standalone use only).
ENV FACESERVE_DATA_DIR=/var/lib/faceserve \
    FACESERVE_HOST=0.0.0.0 \
    FACESERVE_PORT=8000
USER 1000:1000
EXPOSE 8000
# Docker's own check for a standalone container (Kubernetes ignores HEALTHCHECK and uses the
# probes in the manifests). No curl in slim images: Python's urllib, non-zero on any error.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FACESERVE_PORT', '8000'), timeout=4)" || exit 1
CMD ["faceserve", "serve", "--config", "/app/serve_config.yaml"]
