# syntax=docker/dockerfile:1
# sae-controller as a fully static binary on a distroless base.
#
#   make image                                   # sae-controller:<crate version>, with the git commit
#   docker build -t sae-controller:dev .
#   docker build --build-arg CARGO_FEATURES=otel -t sae-controller:dev-otel .   # with OpenTelemetry traces
#
# The builder runs hack/check-static.sh, the same script CI/developers run on the host
# (`make static-check`): it builds with glibc's libc.a (`+crt-static`, no musl target needed) and
# refuses a binary that is not static or does not run in an empty root.

FROM rust:1-bookworm AS builder
ARG CARGO_FEATURES=""
# The git commit, for --version and sae_build_info (build.rs reads it; .git is not in the context).
# `make image` passes it.
ARG SAE_CONTROLLER_GIT_COMMIT=unknown
WORKDIR /src
# `file` is in the image already; install it only if a slimmer tag lacks it.
RUN command -v file >/dev/null || { apt-get update && apt-get install -y --no-install-recommends file && rm -rf /var/lib/apt/lists/*; }
COPY . .
# The cache mounts keep crates and compiled dependencies between builds; the binary is copied out
# of the mounted target dir because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target/static \
    STATIC_TARGET_DIR=target/static CARGO_FEATURES="$CARGO_FEATURES" hack/check-static.sh \
 && cp "target/static/$(uname -m)-unknown-linux-gnu/release/sae-controller" /sae-controller

# distroless/static: CA certificates (for SAE's TLS), /etc/passwd with the nonroot user 65532 and
# tzdata, no shell and no libc — the binary needs none.
FROM gcr.io/distroless/static-debian12:nonroot
ARG SAE_CONTROLLER_GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="sae-controller" \
      org.opencontainers.image.revision="${SAE_CONTROLLER_GIT_COMMIT}"
COPY --from=builder /sae-controller /sae-controller
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/sae-controller"]
