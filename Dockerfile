# ollama-translate: the proxy (examples/proxy) in a small image.
#
#   docker build -t ollama-translate .                       # add --build-arg FEATURES=otlp for OTLP traces
#   docker run --rm -p 127.0.0.1:4000:4000 -e OLLAMA_BASE_URL=http://host.docker.internal:11434 ollama-translate
#
# Not built in this project's CI (no container engine there); tests/packaging.rs
# checks that what it names exists.

# --- build ---------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Cargo features of the proxy, e.g. `otlp` (OTLP/HTTP trace export).
ARG FEATURES=""

# Dependencies first, in their own layer: a stub crate with the same
# manifest and lockfile builds them, and stays cached until those change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src examples/proxy benches \
 && echo '' > src/lib.rs \
 && echo 'fn main() {}' > examples/proxy/main.rs \
 && echo 'fn main() {}' > benches/translate.rs \
 && cargo build --release --locked --example proxy ${FEATURES:+--features "$FEATURES"} \
 && rm -rf src examples benches

# Then the crate itself.
COPY src ./src
COPY examples ./examples
COPY benches ./benches
RUN touch src/lib.rs examples/proxy/main.rs \
 && cargo build --release --locked --example proxy ${FEATURES:+--features "$FEATURES"} \
 && cp target/release/examples/proxy /ollama-translate

# --- run -----------------------------------------------------------------
FROM debian:bookworm-slim
COPY --from=build /ollama-translate /usr/local/bin/ollama-translate
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
