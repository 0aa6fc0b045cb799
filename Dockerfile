# syntax=docker/dockerfile:1

# Herald: one static binary on a distroless base, running as non-root.
#
#   docker build -t herald .
#   docker run --rm -p 8080:8080 herald          # memory broker, one node
#
# docker-compose.yml runs three of these behind nginx with Redis.

ARG GO_VERSION=1.26

# ---- build ---------------------------------------------------------------
# Built on the build host's platform and cross-compiled for the target, so
# multi-arch builds (docker buildx --platform linux/amd64,linux/arm64) need
# no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src

# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/herald ./cmd/herald

# ---- run -----------------------------------------------------------------
# distroless/static: CA certificates, tzdata and /etc/passwd, no shell. The
# :nonroot tag's user is uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/herald /herald
USER 65532:65532
EXPOSE 8080
# No HEALTHCHECK: the image has no shell or curl, and herald has no
# self-probe command. Orchestrators should probe GET /healthz (liveness)
# and GET /readyz (readiness: broker reachable, not draining).
ENTRYPOINT ["/herald"]
CMD ["serve"]
