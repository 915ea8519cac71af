# Parley: Gradio chat UI for OpenAI-compatible providers.
#   docker build -t parley .
#   docker run -p 7860:7860 --env-file .env -v parley-data:/app/data parley
# It answers to localhost only: set ALLOWED_HOSTS (in .env) to the name people use.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    ALLOWED_HOSTS=localhost,127.0.0.1,[::1] \
    PORT=7860 \
    ENV=production \
    DATABASE_URL=sqlite:////app/data/parley.db

WORKDIR /app
# A CJK font (WenQuanYi Micro Hei, ~5 MB) for Chinese text drawn on this machine, such as
# scripts/screenshots.py or a browser run in the container; viewers' browsers use their own.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY webapp ./webapp
COPY storage ./storage
# Dependencies are pinned to a major version in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[postgres]" \
    && useradd --create-home --uid 10001 parley \
    && mkdir -p /app/data \
    && chown parley:parley /app/data

USER 10001
VOLUME ["/app/data"]
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '7860') + '/healthz', timeout=4)"]
CMD ["python", "-m", "webapp"]
