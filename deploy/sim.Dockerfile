# The simulator (package ./sim) as an image, for the compose `world` job and `sim` profile.
# Build context: the repository root (docker compose does this). Offline builds: as in
# botify/Dockerfile, a wheelhouse in sim/.wheels/ (deploy/wheelhouse.sh) means --no-index.
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY sim /src/sim
RUN python -m venv /opt/sim \
 && if ls /src/sim/.wheels/*.whl >/dev/null 2>&1; then \
        set -- --no-index --find-links /src/sim/.wheels; \
    fi \
 && /opt/sim/bin/pip install "$@" /src/sim

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/sim/bin:$PATH

RUN groupadd --system --gid 10001 botify \
 && useradd --system --uid 10001 --gid botify --home-dir /app --shell /usr/sbin/nologin botify

COPY --from=build /opt/sim /opt/sim

# Named volumes mounted here take these directories' owner: the world job writes /data,
# the sim profile writes its per-session records to /out.
RUN mkdir -p /data /out /app && chown botify:botify /data /out /app
WORKDIR /app
USER botify:botify

ENTRYPOINT []
CMD ["python", "-m", "sim.run", "--help"]
