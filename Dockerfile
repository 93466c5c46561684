# One image for every role: the API (default), `queue-service worker`, `queue-service mock-upstream`.
#   docker build -t queue-service .
#   docker run -p 8080:8080 -e QUEUE_REDIS_URL=redis://redis:6379/0 queue-service
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY queue_service ./queue_service
COPY workers ./workers
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin queue

USER queue
EXPOSE 8080

# The API's liveness; compose gives the mock upstream its own check and the worker none.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]

CMD ["queue-service", "api", "--host", "0.0.0.0", "--port", "8080"]
