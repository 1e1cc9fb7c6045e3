# The simulator (package ./sim) as an image, for the compose `world` job and `sim` profile.
# Build context: the repository root (docker compose does this).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 botify \
 && useradd --system --uid 10001 --gid botify --home-dir /app --shell /usr/sbin/nologin botify

COPY sim /src/sim
RUN pip install /src/sim && rm -rf /src

# The world volume is mounted here; the image's directory gives it its owner.
RUN mkdir -p /data /app && chown botify:botify /data /app
WORKDIR /app
USER botify:botify

ENTRYPOINT []
CMD ["python", "-m", "sim.run", "--help"]
