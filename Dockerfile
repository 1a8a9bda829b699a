# One image definition, one target per service: `docker build --target gateway .` and so on.
# Every service runs the same source tree as `python -m <service>`; only the executor gets toolchains.
FROM python:3.11-slim-bookworm AS base
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml ./
RUN pip install --no-cache-dir . && rm -rf build *.egg-info
COPY protos ./protos
RUN python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. \
      $(find protos -name '*.proto')
COPY common ./common
RUN useradd --system --uid 10001 lce && mkdir -p /data && chown lce /data
ENV LCE_DATA_DIR=/data

FROM base AS session_service
COPY session_service ./session_service
USER lce
EXPOSE 7051
CMD ["python", "-m", "session_service"]

FROM base AS execution_service
COPY execution_service ./execution_service
USER lce
EXPOSE 7052
CMD ["python", "-m", "execution_service"]

# The playground page and /docs' Swagger UI (gateway/playground.py), built with Debian's npm from the
# locked packages; only the built files reach the gateway image.
FROM debian:bookworm-slim AS playground
RUN apt-get update && apt-get install -y --no-install-recommends npm && rm -rf /var/lib/apt/lists/*
WORKDIR /playground
COPY playground/package.json playground/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY playground/build.mjs ./
COPY playground/src ./src
RUN npm run build

FROM base AS gateway
COPY gateway ./gateway
COPY --from=playground /playground/dist ./playground/dist
USER lce
EXPOSE 8080
CMD ["python", "-m", "gateway"]

# The executor needs the eight toolchains (as Debian installs them under /usr/bin, which is what the
# sandbox binds read-only) and bubblewrap. It runs as root inside its container because the sandbox
# creates namespaces, cgroups and tmpfs mounts; user code itself runs as an unprivileged slot uid
# with every capability dropped.
FROM base AS executor
COPY scripts/install-system-deps.sh ./scripts/
# With the toolchains, the libraries runs may use (executor/packages.toml) and the compile aids
# (executor/compile_aids.py), read-only for the sandbox.
COPY executor/__init__.py executor/settings.py executor/packages.py executor/packages.toml executor/compile_aids.py \
    ./executor/
COPY executor/aids ./executor/aids
RUN bash scripts/install-system-deps.sh && python -m executor.packages install \
    && python -m executor.compile_aids install && rm -rf /var/lib/apt/lists/*
COPY executor ./executor
EXPOSE 7053
CMD ["python", "-m", "executor"]
