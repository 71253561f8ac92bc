# The bot in a container: python -m bot run, configured by a mounted file or the environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY migrations ./migrations
RUN pip install '.[postgres,redis]' && useradd --create-home --uid 10001 bot \
    && mkdir -p /data && chown bot /data

USER bot
# SQLite lives here unless database.url (or DATABASE_URL) names PostgreSQL.
VOLUME ["/data"]
ENV DATABASE_URL=sqlite+aiosqlite:////data/bot.db
# 8443: the webhook server (webhook mode); 9100: /healthz and /metrics when ops.port is set.
EXPOSE 8443 9100

ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
