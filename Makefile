# sim — the two commands a newcomer needs are `make run` and `make test`.
GO       ?= go
BIN      := bin/sim
PKGS     := ./...
FUZZTIME ?= 30s

.PHONY: all build run test bench fuzz lint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sim

## run: build, then serve the default world (URLs and demo logins are printed)
run: build
	./$(BIN) serve

## test: vet, then every test with the race detector (fuzz targets run their seeds)
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -timeout 15m $(PKGS)

## bench: the benchmark suite (not part of make test); see BENCHMARKS.md.
## BENCH=regexp selects, BENCHTIME=1x checks they run, SIM_BENCH_LARGE=1 adds 1M-patient cases
BENCH     ?= .
BENCHTIME ?= 2s
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) $(PKGS)

## fuzz: each fuzz target for FUZZTIME, stopping at the first failing input (see .ci/fuzz)
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./.ci/fuzz

## lint: formatting, vet, and the import layering (nothing imports upward)
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	./.ci/layering

clean:
	rm -rf bin
