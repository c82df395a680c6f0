# perf-analyzer: the exporter only (no compiler, no embedded PostgreSQL in the final image).
# Build: docker build -t perf-analyzer .
# Run:   docker run -p 10610:10610 -e PERF_ANALYZER_DSN_FILE=/run/secrets/dsn perf-analyzer

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin perf-analyzer
USER 10001
EXPOSE 10610
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:10610/-/healthy', timeout=2)"]
ENTRYPOINT ["perf-analyzer"]
CMD ["serve"]
