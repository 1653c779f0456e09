# syntax=docker/dockerfile:1
# One image per service, built from the workspace:
#   docker build --build-arg SERVICE=content -t advocacy-content .
# The same image runs the service's `api` and `worker` processes (the command differs).
# The base is pinned to an exact tag; pin its digest too in your registry mirror
# (PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG NODE_IMAGE=node:20.19.5-bookworm-slim

# The dashboard's charting library, from npm at the version of its lock file (scripts/build-dashboard.sh
# does the same outside Docker). Only the metrics service serves it; it costs the others nothing.
FROM ${NODE_IMAGE} AS dashboard
WORKDIR /dashboard
COPY services/metrics/dashboard/package.json services/metrics/dashboard/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ARG UV_VERSION=0.13.9
ENV UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# Third-party dependencies first: this layer is reused while only our code changes.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY services/content/pyproject.toml services/content/
COPY services/ambassador/pyproject.toml services/ambassador/
COPY services/distribution/pyproject.toml services/distribution/
COPY services/metrics/pyproject.toml services/metrics/
RUN test -n "${SERVICE}" && uv sync --frozen --no-dev --no-install-workspace --package "advocacy-${SERVICE}"
COPY libs ./libs
COPY services ./services
COPY --from=dashboard /dashboard/node_modules/chart.js/dist/chart.umd.js services/metrics/src/metrics/dashboard_files/vendor/
RUN uv sync --frozen --no-dev --no-editable --package "advocacy-${SERVICE}"

FROM ${PYTHON_IMAGE}
ARG SERVICE
ENV PATH=/app/.venv/bin:$PATH SERVICE=${SERVICE} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --no-create-home app
WORKDIR /app
# Owned by root and only readable by the app user: the code cannot be changed at run time
# (the chart also mounts the root filesystem read-only).
COPY --from=build /app/.venv /app/.venv
COPY deploy/docker/healthcheck.py /app/healthcheck.py
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "/app/healthcheck.py"]
CMD ["sh", "-c", "exec ${SERVICE}-api"]
