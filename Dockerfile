FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY privtrail privtrail
COPY events events
COPY streams streams
COPY sinks sinks
COPY policies policies
COPY dashboards dashboards
RUN pip install --no-cache-dir .
ENV PRIVTRAIL_POLICIES_DIR=/app/policies \
    PRIVTRAIL_DATA_DIR=/var/lib/privtrail
ENTRYPOINT ["privtrail"]
