# syntax=docker/dockerfile:1
# The sluice image for users with Docker (or BuildKit, Podman, Kaniko). deploy/image/build.sh
# builds the same image without Docker; docs/operations.md explains both.
#
#   docker build -t sluice:0.1.0 .

# Build: a static binary (glibc, +crt-static), so the runtime image needs no libc. Static glibc
# still resolves names through /etc/hosts and DNS (built into glibc since 2.34).
# The toolchain this repository is built and tested with.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p sluice-actors --bin sluice \
 && cp "target/$target/release/sluice" /sluice \
 && if readelf -l /sluice | grep -q INTERP; then echo "sluice is not static" >&2; exit 1; fi

# Run: distroless static (CA certificates, /etc/passwd with nonroot = 65532, no shell).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /sluice /usr/local/bin/sluice
# UID/GID 65532 (nonroot). In Kubernetes the pod also runs with readOnlyRootFilesystem and no
# capabilities: sluice writes nothing and binds only unprivileged ports.
USER 65532:65532
# HTTP, HTTPS (the Service maps 80 and 443 onto them) and the metrics/health listener.
EXPOSE 8080 8443 9100
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["run", "--kube"]
