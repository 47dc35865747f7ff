# syntax=docker/dockerfile:1
# ollama-translate: the proxy (examples/proxy) in a small image.
#
#   docker build -t ollama-translate:0.1.0 .              # add --build-arg FEATURES=otlp for OTLP traces
#   docker run --rm -p 127.0.0.1:4000:4000 -e OLLAMA_BASE_URL=http://host.docker.internal:11434 ollama-translate:0.1.0
#
# Needs BuildKit (Docker's default builder since 23.0, and `docker compose`'s)
# or Buildah/Podman, for the cache mounts. No container engine runs where this
# project is tested: tests/dockerfile.rs replays the build stage's COPY and RUN
# lines in a temporary folder and runs the binary as the runtime stage does.

# --- build ---------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Cargo features of the proxy, e.g. `otlp` (OTLP/HTTP trace export).
ARG FEATURES=""

# The crate as cargo needs it to read the manifest: every target it names
# or finds (in src/, examples/, benches/, tests/) must exist, even those not
# built here, and the workspace's test support crate (support/, which the
# examples use). A build script, or a file the build reads from elsewhere, needs
# a COPY line here (tests/dockerfile.rs fails without one).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY benches ./benches
COPY tests ./tests
COPY support ./support

# Downloaded crates and compiled dependencies stay in the builder's cache
# mounts between builds, so a change to the sources recompiles only the crate.
# A cache mount is not part of the image: the binary is copied out of it.
# Cargo decides freshness by modification time and COPY keeps the build
# context's, so the crate's files are touched first: a cached target/ never
# passes for up to date. Keep outputs under WORKDIR (the test replays this
# RUN on the host and refuses absolute paths).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=ollama-translate-target,target=/src/target,sharing=locked \
    find . -path ./target -prune -o -type f -exec touch {} + \
 && cargo build --release --locked --example proxy ${FEATURES:+--features "$FEATURES"} \
 && cp target/release/examples/proxy ollama-translate

# --- run -----------------------------------------------------------------
FROM debian:bookworm-slim
COPY --from=build /src/ollama-translate /usr/local/bin/ollama-translate
RUN useradd --system --uid 10001 --no-create-home proxy
USER 10001
# Inside a container loopback is useless to others: listen on all addresses.
ENV LISTEN_ADDR=0.0.0.0:4000 \
    OLLAMA_BASE_URL=http://ollama:11434 \
    RUST_LOG=info
EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["ollama-translate", "--healthcheck"]
# The proxy stops accepting on SIGTERM and lets streams finish (SHUTDOWN_GRACE_SECS).
STOPSIGNAL SIGTERM
ENTRYPOINT ["ollama-translate"]
