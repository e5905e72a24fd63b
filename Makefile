# Herald. `make demo` and `make test` are the two commands a newcomer runs (as
# root, on Debian); both install what is missing first and are safe to repeat.

GO       ?= go
BIN      := $(CURDIR)/bin
PKGS     := ./...
# Tests bring up real labs (etcd, kube-apiserver, kube-proxy, FRR) in network
# namespaces; two packages at a time keep a 2-core machine responsive.
TESTFLAGS ?= -race -count=1 -p 2 -timeout 45m

.PHONY: all build deps tools test vet unit bench demo demo-down lab-down fmt

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/... ./e2e/cmd/...

## deps: Debian packages the lab needs (frr, iptables, nftables, iproute2, ...).
deps:
	@hack/deps.sh

## tools: etcd and the Kubernetes binaries, built from the pinned wrapper
## modules in hack/tools into ~/.cache/herald/bin (a no-op when up to date).
tools:
	@hack/tools/build.sh >/dev/null

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: the files above need formatting"; exit 1; }

## test: every tier — unit, integration against a real API server, and the
## lab end-to-end tests — with the race detector, plus go vet and gofmt.
test: deps tools vet
	$(GO) test $(TESTFLAGS) $(PKGS)

## unit: only the tests that need no lab (quick feedback while coding).
unit:
	HERALD_CACHE=/nonexistent $(GO) test -count=1 $(PKGS)

## bench: benchmarks and lab measurements; prints name=value lines.
bench: deps tools
	@hack/bench.sh

## demo: bring up a lab, deploy a sample app behind a LoadBalancer Service and
## reach it from a client. MODE=bgp peers the nodes with the lab's router and
## reaches the app from behind it. Tear down with `make demo-down`.
MODE ?= l2
demo: deps tools
	$(GO) run ./e2e/cmd/lab demo -mode $(MODE)

demo-down:
	$(GO) run ./e2e/cmd/lab down

## lab-down: remove every lab on this machine (leftovers of killed test runs).
lab-down:
	$(GO) run ./e2e/cmd/lab down -all

fmt:
	gofmt -w .
