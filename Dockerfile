# Container image of the `api` service.
#
# Targets:
#   runtime-base      Debian runtime without the binary: non-root user, /app/data, healthcheck.
#   runtime-prebuilt  runtime-base + target/docker/api, a release binary built on the host
#                     (`cargo xtask` puts it there). For machines whose containers cannot reach
#                     the Rust crate registry or that have no registry to pull RUST_IMAGE from.
#   build             compiles the release binary inside RUST_IMAGE.
#   runtime           runtime-base + the binary from `build` (the default, last stage).
#
# Build with BuildKit: `docker compose build api` (docker-compose.yml picks the target and the
# build arguments). There is deliberately no `# syntax=` line: it would make BuildKit pull a
# frontend image, and some machines have no registry. The engine's built-in Dockerfile frontend
# (Docker >= 20.10) supports `RUN --mount=type=cache`.
#
# Stage order matters for the legacy builder (plain `docker build` without buildx): it runs every
# stage up to the target, so runtime-prebuilt comes before build and never needs RUST_IMAGE.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime-base

# Owner of /app/data. Every replica shares one volume there, so they all need the same ids.
# A named volume takes the ownership of /app/data when it is first created: if you change
# UID/GID later, recreate the volume (or chown it).
ARG UID=10001
ARG GID=10001

# Works on debian:bookworm-slim and on a debootstrap --variant=minbase root filesystem (both
# ship passwd). --no-log-init: a high UID would otherwise grow /var/log/lastlog.
RUN set -eu; \
    if ! getent group "${GID}" >/dev/null; then groupadd --gid "${GID}" api; fi; \
    if ! getent passwd "${UID}" >/dev/null; then \
        useradd --no-log-init --uid "${UID}" --gid "${GID}" --home-dir /app --no-create-home \
                --shell /usr/sbin/nologin api; \
    fi; \
    mkdir -p /app/data; \
    chown "${UID}:${GID}" /app/data; \
    chmod 0750 /app/data

WORKDIR /app
ENV API_DATA_DIR=/app/data \
    API_PORT=8080
EXPOSE 8080
STOPSIGNAL SIGTERM
# start-period must exceed the api's migration deadline (API_MIGRATION_DEADLINE_SECS, default 60).
HEALTHCHECK --interval=2s --timeout=3s --start-period=90s --retries=3 \
    CMD ["/usr/local/bin/api", "healthcheck"]
USER ${UID}:${GID}
ENTRYPOINT ["/usr/local/bin/api"]

# ---------------------------------------------------------------------------------------------
FROM runtime-base AS runtime-prebuilt
# Only this one file of target/ is in the build context (see .dockerignore).
COPY target/docker/api /usr/local/bin/api

# ---------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# SQLX_OFFLINE: there is no database at image build time; sqlx's checked query macros (if the
# api ever uses them) must read prepared data from api/.sqlx/.
ENV CARGO_TERM_COLOR=never \
    SQLX_OFFLINE=true

# The whole workspace manifest set is needed to resolve `-p api` with --locked.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY xtask ./xtask
COPY api ./api

# Cache mounts keep the registry and the target directory between builds, so a code-only change
# recompiles the api crate only, never the dependencies. The binary is copied out of the cache
# mount because a cache mount is not part of the image.
RUN --mount=type=cache,id=scaling-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=scaling-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=scaling-api-target,target=/src/target,sharing=locked \
    set -eu; \
    cargo build --release --locked -p api; \
    mkdir -p /out; \
    cp target/release/api /out/api

# ---------------------------------------------------------------------------------------------
FROM runtime-base AS runtime
COPY --from=build /out/api /usr/local/bin/api
