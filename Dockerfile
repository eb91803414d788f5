# syntax=docker/dockerfile:1
# One image with both binaries, user-service and gateway; docker-compose.yml picks which one a
# container runs. Build: `docker build -t music-rpc .` (BuildKit, the default since Docker 23).

# ---- build ----------------------------------------------------------------------------------
# The workspace is edition 2024 (rust >= 1.85); rust:1 follows the latest stable 1.x.
FROM rust:1-bookworm AS builder

# etcd-client's build script runs protoc (the same package scripts/lib.sh installs).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The whole workspace: every member's manifest must exist for `--locked`, and build.rs reads idl/.
COPY . .

# Downloaded crates and target/ live in cache mounts, so a rebuild after a source change is
# incremental. A cache mount is not part of the image: copy the binaries out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p user-service -p gateway \
 && mkdir -p /out \
 && cp target/release/user-service target/release/gateway /out/

# ---- run ------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: for an etcd reached over TLS with a public CA. The binaries need only glibc
# otherwise (SQLite is compiled in, TLS is rustls).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A non-root user, and /data for the SQLite file. A named volume mounted on /data starts as a
# copy of this directory, ownership included, so the user can write there.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin app \
 && mkdir /data \
 && chown app:app /data

COPY --from=builder /out/ /usr/local/bin/

USER app
WORKDIR /data
# No ENTRYPOINT or CMD: the command names the binary (`user-service` or `gateway`).
