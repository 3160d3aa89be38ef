FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY privtrail privtrail
COPY config config
COPY events events
COPY streams streams
COPY sinks sinks
COPY policies policies
COPY dashboards dashboards
COPY docs docs
# Editable, so the policies and the dashboard are found next to the code, as in a checkout.
RUN pip install --no-cache-dir -e .
ENV PRIVTRAIL_DATA_DIR=/var/lib/privtrail
ENTRYPOINT ["privtrail"]
