# syntax=docker/dockerfile:1
# itnio-exporter container image.
#
#   docker build -t itnio-exporter .
#   docker run --rm -p 8437:8437 itnio-exporter --demo --web.listen-address=:8437
#
# Two stages: the first builds a virtualenv with the exporter and its dependencies, the
# second copies only that virtualenv onto a clean slim Python. Nothing secret is copied in:
# the API key and secret are mounted at run time (see deploy/kubernetes/).
#
# Every third-party package comes from a lock with hashes (`make lock` writes both):
# deploy/requirements.lock, the runtime dependencies, and deploy/build-requirements.lock,
# setuptools, which turns the source into a wheel. pip refuses anything whose hash is not
# in the lock, and --no-deps makes a lock that misses a dependency fail `pip check` here
# instead of fetching it unpinned.

# The base is pinned by version; bump both FROM lines together.
FROM python:3.11.10-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY deploy/requirements.lock deploy/build-requirements.lock ./deploy/
# /opt/build holds the build tools; the exporter's virtualenv gets no pip and no setuptools
# of its own: the build venv's pip installs into it (--python).
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --no-deps -r deploy/build-requirements.lock \
    && python -m venv --without-pip /opt/itnio-exporter \
    && /opt/build/bin/pip --python /opt/itnio-exporter/bin/python install --no-cache-dir \
       --require-hashes --no-deps -r deploy/requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir dist . \
    && /opt/build/bin/pip --python /opt/itnio-exporter/bin/python install --no-cache-dir --no-deps dist/*.whl \
    && /opt/build/bin/pip --python /opt/itnio-exporter/bin/python check \
    && /opt/itnio-exporter/bin/itnio-exporter --version

FROM python:3.11.10-slim-bookworm
LABEL org.opencontainers.image.title="itnio-exporter" \
      org.opencontainers.image.description="Prometheus exporter for ITNIO TECH automatic-redial (recall) flows" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/itnio-exporter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/itnio-exporter /opt/itnio-exporter
# A fixed numeric UID/GID so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 65532 exporter \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exporter \
    && mkdir -p /etc/itnio-exporter
USER 65532:65532
EXPOSE 8437
# Python's standard library is the probe: the slim image has no curl or wget, and needs none.
# It checks the default port; if you change --web.listen-address, override the health check too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8437/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["itnio-exporter"]
CMD ["--config.file=/etc/itnio-exporter/config.yaml"]
