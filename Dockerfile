# One image per service, built from the workspace: docker build --build-arg SERVICE=content .
# The same image runs the `api` and the `worker` process (command differs).
FROM python:3.11-slim AS build
ARG SERVICE
ENV UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
RUN uv sync --frozen --no-dev --package advocacy-${SERVICE}

FROM python:3.11-slim
ARG SERVICE
ENV PATH=/app/.venv/bin:$PATH SERVICE=${SERVICE}
RUN useradd --system --uid 10001 app
WORKDIR /app
COPY --from=build /app /app
USER 10001
EXPOSE 8000
CMD ["sh", "-c", "exec ${SERVICE}-api"]
