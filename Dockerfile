# cxr-bot: Socket Mode by default; HTTP mode when SLACK_SIGNING_SECRET is set instead of
# SLACK_APP_TOKEN. Both serve GET /healthz on $PORT, which the HEALTHCHECK below uses.

# --- build: wheels for the app and its dependencies (build tools stay in this stage) ---------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
# The postgres extra (psycopg with its own libpq) lets replicas share PostgreSQL: CXR_DATABASE_URL.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres]"

# --- run: slim, non-root, no compilers, no pip cache -----------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=3000 \
    CXR_DB_PATH=/data/cxr.db
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin cxr \
    && mkdir -p /data /app && chown cxr:cxr /data /app
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links=/tmp/wheels "cxr-bot[postgres]" \
    && rm -rf /tmp/wheels
USER cxr
WORKDIR /app
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"3000\")}/healthz', timeout=4)"]
CMD ["cxr-bot"]
