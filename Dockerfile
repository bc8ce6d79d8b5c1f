# flux-recv in a scratch image: the static binary alone, run as a numeric non-root user.
#
# The binary is built on the host first, so the image builds with no registry access at all:
#   cargo build --release --target x86_64-unknown-linux-musl
#   buildah bud -t flux-recv:0.1.0 .        # or: docker build -t flux-recv:0.1.0 .
# For arm64: build --target aarch64-unknown-linux-musl and pass
#   --build-arg BINARY=target/aarch64-unknown-linux-musl/release/flux-recv --platform linux/arm64
FROM scratch

ARG BINARY=target/x86_64-unknown-linux-musl/release/flux-recv
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="flux-recv" \
      org.opencontainers.image.description="Webhook receiver that turns git and image pushes into Flux notifications" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY ${BINARY} /flux-recv

# nobody; numeric so that runAsNonRoot can verify it without an /etc/passwd.
USER 65534
EXPOSE 8080
ENTRYPOINT ["/flux-recv"]
CMD ["--config=/etc/fluxrecv/fluxrecv.yaml"]
