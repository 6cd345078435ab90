# Image for both long-running processes of sms-analytics:
#   docker run … sms-analytics            -> `sms-analytics receiver` (default)
#   docker run … sms-analytics worker     -> pass `sms-analytics worker` as the command
# docker-compose.yml builds it for the `receiver` and `worker` services.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SMS_DATA_DIR=/app/data

WORKDIR /app

RUN groupadd --system --gid 10001 sms \
 && useradd --system --uid 10001 --gid sms --create-home --home-dir /home/sms --shell /usr/sbin/nologin sms

# Only what the build needs (hatchling, src layout); .dockerignore keeps the rest out of the context.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
 && mkdir -p /app/data \
 && chown sms:sms /app /app/data

# Non-root: uid/gid 10001 (numeric, so runAsNonRoot-style checks can verify it).
USER 10001:10001

# 8080: HTTP receiver (SMS_HTTP_PORT); 8081: worker /healthz + read-only query endpoint (SMS_QUERY_PORT).
EXPOSE 8080 8081

CMD ["sms-analytics", "receiver"]
