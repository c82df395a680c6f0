# perf-analyzer: the exporter only (no compiler, no embedded PostgreSQL in the final image).
# Build: docker build -t perf-analyzer .
# Run:   docker run -p 10610:10610 -e PERF_ANALYZER_DSN_FILE=/run/secrets/dsn perf-analyzer

# Pin the base by digest for a release: --build-arg PYTHON_IMAGE=python:3.12-slim@sha256:...
# (docs/security.md, "Supply chain").
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY exporter ./exporter
# every dependency at the exact version the tests ran against (requirements.lock)
RUN pip wheel --no-cache-dir --constraint requirements.lock --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin perf-analyzer
USER 10001
EXPOSE 10610
# HTTPS first (a --web.config.file with TLS), then plain HTTP; /-/healthy needs no credentials
# unless --web.protect-probes. The certificate is not checked: this is the container itself.
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
    CMD ["python", "-c", "import ssl, sys, urllib.request as r\nc = ssl._create_unverified_context()\nfor s in ('https', 'http'):\n    try:\n        r.urlopen(s + '://127.0.0.1:10610/-/healthy', timeout=2, context=c)\n        sys.exit(0)\n    except Exception:\n        pass\nsys.exit(1)"]
ENTRYPOINT ["perf-analyzer"]
CMD ["serve"]
