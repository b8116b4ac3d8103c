FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY app ./app
COPY auth ./auth
COPY tasks ./tasks
COPY schedules ./schedules
COPY workflows ./workflows
COPY taskline ./taskline
COPY topics ./topics
COPY gateway ./gateway
COPY metrics ./metrics
COPY dashboard ./dashboard
COPY alembic ./alembic
COPY alembic.ini main.py worker.py ./
RUN pip install . && useradd --system --no-create-home taskline
# Your handler modules (handlers/, named in TASKLINE_HANDLERS as handlers.media).
# To run other ones without a rebuild, mount a folder over /app/handlers.
COPY handlers ./handlers
ENV PYTHONPATH=/app

USER taskline
EXPOSE 8000 8001
# In a container the API must listen beyond loopback; compose maps the port.
ENV API_HOST=0.0.0.0
CMD ["taskline", "api"]
