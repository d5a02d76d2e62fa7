# The TODO service, talking to an external MongoDB (MONGODB_URL); see docker-compose.yml.
# Build: docker build -t todo-service .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Only what the package build needs; .dockerignore keeps everything else out of the context.
COPY pyproject.toml README.md LICENSE ./
COPY service/ ./service/

# No `embedded` extra: the image always runs against a MongoDB server.
RUN pip install --no-cache-dir . \
    && useradd --system --user-group --uid 10001 --no-create-home --home-dir /nonexistent app

# Numeric, so that orchestrators can check runAsNonRoot. The image runs on a read-only root
# (docker-compose.yml): pip compiles the bytecode at install, PYTHONDONTWRITEBYTECODE keeps Python
# from trying at run time, and the service writes only to /tmp (a tmpfs there).
USER 10001:10001

EXPOSE 8000

# No curl in slim images: python's urllib raises (exit 1) on a refused connection or a non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"]

# Exec form, so todo-service is PID 1 and receives SIGTERM from `docker stop`.
# `serve` runs uvicorn (every worker, with --workers N too) with proxy_headers=False: the
# service alone decides the client IP, trusting X-Forwarded-For only from TRUSTED_PROXIES.
CMD ["todo-service", "serve", "--host", "0.0.0.0"]
