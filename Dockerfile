# CloudBase Gateway container image.
#
#   docker build -t cloudbase-gateway .
#   docker run -p 4180:4180 \
#     -e CLOUDBASE_GATEWAY_PUBLIC_URL=https://app.example.com \
#     -e CLOUDBASE_GATEWAY_ENV_ID=my-env-1a2b3c \
#     cloudbase-gateway
#
# Configuration comes from CLOUDBASE_GATEWAY_* variables or from a mounted file:
#   docker run -v "$PWD/gateway.toml:/etc/cloudbase-gateway/gateway.toml:ro" ... \
#     cloudbase-gateway serve --config /etc/cloudbase-gateway/gateway.toml
# The image sets CLOUDBASE_GATEWAY_LISTEN, and the environment overrides the file, so change
# the port with that variable (and then the HEALTHCHECK URL below), not with `listen` in the file.

# ---- build ------------------------------------------------------------------------------
# rust-version = 1.88 in Cargo.toml; rust:1 follows the newest stable release.
FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependencies first, with a placeholder crate that has the real manifest and lock file, so
# this layer stays cached until Cargo.toml or Cargo.lock change. The crate has a library
# (src/lib.rs) and a binary (src/main.rs): both placeholders are needed.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/cloudbase-gateway-*

# The crate itself. askama reads templates/ and the pages embed static/ at compile time. (Removing the placeholder's
# fingerprint above makes cargo rebuild the crate whatever the copied files' mtimes are.)
COPY src ./src
COPY templates ./templates
COPY static ./static
RUN cargo build --release --locked

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim

# rustls verifies with the bundled webpki roots; ca-certificates is kept for anything else
# in the image that needs the system store.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged uid/gid (10001) so volume and secret permissions can be set for it.
RUN groupadd --gid 10001 gateway \
    && useradd --uid 10001 --gid gateway --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin gateway

COPY --from=builder /build/target/release/cloudbase-gateway /usr/local/bin/cloudbase-gateway

EXPOSE 4180
ENV CLOUDBASE_GATEWAY_LISTEN=0.0.0.0:4180
USER 10001:10001

HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["cloudbase-gateway", "healthcheck", "http://127.0.0.1:4180/ping"]

ENTRYPOINT ["cloudbase-gateway"]
CMD ["serve"]
