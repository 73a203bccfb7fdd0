# syntax=docker/dockerfile:1
# Tessera's image: `make image` (IMAGE=registry/tessera:tag), which passes VERSION from pyproject.toml;
# by hand: docker build --build-arg VERSION=<pyproject.toml's version> -t tessera .
#
# Two stages. build: Tessera's wheel, and the wheels of exactly the pinned dependency set
# (requirements/image.lock, written by `make lock`), all binary. Final: the slim Python base with
# those wheels installed offline through a bind mount of the build stage, then pip, setuptools and
# wheel removed: no compiler, no source tree, no tests or dev tools, no installer. Runs as 65532:65532.
# For a reproducible base as well, pin it by digest: --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:...
# (its Python minor must stay the lock's, 3.11).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/image.lock requirements/image.lock
COPY pyproject.toml README.md ./
COPY allocator allocator
COPY topology topology
COPY scheduler scheduler
RUN set -eu; \
    if [ -z "${VERSION:-}" ]; then \
        echo "build with make image, or docker build --build-arg VERSION=<pyproject.toml's version>" >&2; exit 1; \
    fi; \
    pip wheel --no-deps --wheel-dir /dist .; \
    wheel="/dist/tessera-${VERSION}-py3-none-any.whl"; \
    if [ ! -f "$wheel" ]; then \
        echo "VERSION=${VERSION} is not pyproject.toml's version: built $(ls /dist)" >&2; exit 1; \
    fi; \
    pip download --only-binary=:all: --constraint requirements/image.lock --dest /wheels "$wheel"; \
    cp requirements/image.lock /wheels/image.lock

FROM ${PYTHON_IMAGE}
ARG VERSION
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tessera" \
      org.opencontainers.image.description="Topology-aware Dynamic Resource Allocation (DRA) scheduler for Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/tessera-sched/tessera"
# The root filesystem is read-only in the cluster: bytecode is compiled at install, never at run time.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    set -eu; \
    pip install --no-cache-dir --no-index --find-links=/wheels --constraint=/wheels/image.lock "tessera==${VERSION}"; \
    pip uninstall --yes pip setuptools wheel; \
    groupadd --system --gid 65532 tessera; \
    useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tessera
USER 65532:65532
EXPOSE 8888 9090
ENTRYPOINT ["tessera"]
# In-cluster defaults: leader election, JSON logs, HTTPS webhooks with the files where
# manifests/components/cert-manager mounts them (the manifests pass their own arguments).
CMD ["serve", "--leader-elect", "--log-format=json", "--tls-cert-file=/etc/tessera/tls/tls.crt", "--tls-private-key-file=/etc/tessera/tls/tls.key", "--client-ca-file=/etc/tessera/tls/ca.crt"]
