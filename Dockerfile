# syntax=docker/dockerfile:1
# Build stage: compile the Cython extensions into a wheel.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libxxhash-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && python -c "import glob, sys; sys.exit(not glob.glob('/wheels/fastgw-*-cp311-*.whl'))"

# Runtime stage: the wheel and its dependencies, no compiler.
FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && fastgw --version | grep -q "native: cython"
RUN useradd --system --home-dir /var/lib/fastgw --create-home fastgw
USER fastgw
WORKDIR /var/lib/fastgw
ENV FASTGW__SERVER__HOST=0.0.0.0 \
    FASTGW__SERVER__PORT=8787
EXPOSE 8787
# The request-log rings live in /dev/shm, logging.ring_size (64 MiB) per worker: run with
# --shm-size of at least workers x ring_size (Docker's default is 64 MB; a ring that doesn't fit
# is made smaller, with a warning).
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8787/healthz', timeout=1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["fastgw"]
CMD ["serve"]
