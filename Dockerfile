# The gateway's container image: `docker build -t cortex-gateway .`
# (or podman/buildah). The build stage compiles the release binary with the
# lock file; the runtime stage holds that binary, the C runtime it links
# against and CA certificates, and runs as an unprivileged user.
# e2e `container::the_image_steps_build_and_run_unprivileged` follows these
# steps without a container engine; keep its parser in step with this file.

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cortex-gateway --bin cortex-gateway

# distroless/cc: glibc, libgcc, CA certificates and a `nonroot` user
# (65532), no shell and no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cortex-gateway /usr/local/bin/cortex-gateway
ENV CORTEX_LISTEN=0.0.0.0:3213
EXPOSE 3213
USER 65532:65532
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/cortex-gateway", "health"]
ENTRYPOINT ["/usr/local/bin/cortex-gateway"]
CMD ["serve"]
