# Everyday commands. CI runs .ci/run, which runs `make test` among its steps.
#
#   make test      install what the tests need when missing (.ci/deps), then
#                  every test: the herald module with -race, and the Helm
#                  chart's test module
#   make release   static binaries for linux/darwin/windows on amd64/arm64
#                  in dist/, with dist/SHA256SUMS

GO ?= go

.PHONY: run test test-deps vet bench ci image-test release release-check

run:
	$(GO) run ./cmd/herald --config deploy/herald.yaml

test: test-deps
	$(GO) test -race -count=1 -timeout 30m ./...
	cd deploy/helm/chart_test && $(GO) test -count=1 ./...

test-deps:
	@bash .ci/deps

vet:
	$(GO) vet ./...
	cd deploy/helm/chart_test && $(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

bench:
	$(GO) test -p 1 -run '^$$' -bench . -benchmem ./...

# The image's final stage built with podman around a binary built from the
# Docker build context (needs podman; no registry: see deploy/README.md).
image-test:
	$(GO) test -tags image -count=1 -run 'TestBuildContext|TestImageBuild' -v ./deploy/

ci:
	bash .ci/run

# ---- releases -------------------------------------------------------------
# What `herald version` reports: a tag when HEAD has one (v1.2.3), else
# the commit; the commit time (not the build time) as the date, so that
# two builds of one commit are byte for byte the same.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
DIST ?= dist
SHA256SUM ?= sha256sum

LDFLAGS = -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

# Static (CGO_ENABLED=0), -trimpath (no build paths in the binary), one
# file per platform: herald_<version>_<os>_<arch>[.exe].
release:
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [ "$$os" = windows ] && ext=.exe; \
	  out=$(DIST)/herald_$(VERSION)_$${os}_$${arch}$$ext; \
	  echo "build $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/herald; \
	done
	cd $(DIST) && $(SHA256SUM) herald_* > SHA256SUMS
	@cat $(DIST)/SHA256SUMS

# What CI checks of a release (two targets, one of them foreign): the
# checksums verify, every binary is for its platform and static, and the
# host's reports the version it was given.
release-check:
	$(MAKE) release DIST=$(DIST) PLATFORMS="linux/amd64 windows/arm64" VERSION=v0.0.0-check
	cd $(DIST) && $(SHA256SUM) -c SHA256SUMS
	@set -e; for f in $(DIST)/herald_*; do \
	  base=$${f##*/}; base=$${base%.exe}; arch=$${base##*_}; rest=$${base%_*}; os=$${rest##*_}; \
	  info=$$($(GO) version -m $$f | awk '$$1 == "build" {print $$2}'); \
	  echo "$$info" | grep -qx "GOOS=$$os" || { echo "$$f: not built for $$os"; exit 1; }; \
	  echo "$$info" | grep -qx "GOARCH=$$arch" || { echo "$$f: not built for $$arch"; exit 1; }; \
	  echo "$$info" | grep -qx "CGO_ENABLED=0" || { echo "$$f: not static (cgo)"; exit 1; }; \
	  echo "$$f: $$os/$$arch, CGO_ENABLED=0"; \
	done
	@v=$$($(DIST)/herald_v0.0.0-check_linux_amd64 version --short); \
	  [ "$$v" = v0.0.0-check ] || { echo "herald version --short: $$v, want v0.0.0-check"; exit 1; }; \
	  echo "herald version --short: $$v"
	@echo "tamper check:"; printf x >> $(DIST)/herald_v0.0.0-check_linux_amd64; \
	  if (cd $(DIST) && $(SHA256SUM) -c --quiet SHA256SUMS >/dev/null 2>&1); then echo "a modified binary passed the checksums"; exit 1; fi; \
	  echo "a modified binary fails the checksums, as it should"
