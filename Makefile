# Everyday commands. CI runs .ci/run; `make test` is the same test command.

GO ?= go

.PHONY: run test vet bench ci

run:
	$(GO) run ./cmd/herald

test:
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

bench:
	$(GO) test -p 1 -run '^$$' -bench . -benchmem ./...

ci:
	bash .ci/run
