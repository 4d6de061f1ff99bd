# syntax=docker/dockerfile:1
# Build a static binary, then ship it alone (plus CA certificates for https to Rancher) in an
# empty image: no shell, no package manager, non-root. The journal lives in the /data volume.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" \
 && cp "target/$target/release/autoredeploy" /autoredeploy \
 && /autoredeploy --version \
 && mkdir /data && chown 65534:65534 /data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /autoredeploy /autoredeploy
COPY --from=build --chown=65534:65534 /data /data
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    AUTOREDEPLOY_DATA_DIR=/data \
    BIND_ADDRESS=0.0.0.0 \
    BIND_PORT=8080
# Accepted pushes and their progress: keep it across container replacements.
VOLUME /data
# nobody:nogroup; only /data is written to.
USER 65534:65534
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s CMD ["/autoredeploy", "healthcheck"]
ENTRYPOINT ["/autoredeploy"]
