# syntax=docker/dockerfile:1

# Herald: one static binary on a distroless base, running as non-root.
#
#   docker build -t herald .
#   docker run --rm -p 8080:8080 herald          # memory broker, one node
#
# docker-compose.yml runs three of these behind nginx with Redis.
# The build context is what .dockerignore lets through (an allow-list);
# deploy/context_test.go builds the binary from exactly that.
#
# With podman or buildah, build with --format docker: the OCI image format
# has no HEALTHCHECK.

ARG GO_VERSION=1.26

# ---- build ---------------------------------------------------------------
# Built on the build host's platform and cross-compiled for the target, so
# multi-arch builds (docker buildx --platform linux/amd64,linux/arm64) need
# no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
# What `herald version` reports (the context has no .git to read them
# from): docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) ...
ARG VERSION=""
ARG COMMIT=""
ARG DATE=""
WORKDIR /src

# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/herald ./cmd/herald

# ---- run -----------------------------------------------------------------
# distroless/static: CA certificates, tzdata and /etc/passwd, no shell. The
# :nonroot tag's user is uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/herald /herald
USER 65532:65532
EXPOSE 8080
# No shell or curl here: the binary probes its own node. `herald
# healthcheck` GETs http://127.0.0.1:8080/readyz (the port of HERALD_LISTEN
# when set) and exits 1 with the reason unless the node is ready (broker
# reachable, not draining). Kubernetes probes /readyz and /healthz itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/herald", "healthcheck", "--timeout", "4s"]
ENTRYPOINT ["/herald"]
CMD ["serve"]
