# Herald. `make demo` and `make test` are the two commands a newcomer runs (as
# root, on Debian); both install what is missing first and are safe to repeat.

GO       ?= go
BIN      := $(CURDIR)/bin
PKGS     := ./...
# Tests bring up real labs (etcd, kube-apiserver, kube-proxy, FRR) in network
# namespaces; two packages at a time keep a 2-core machine responsive.
TESTFLAGS ?= -race -count=1 -p 2 -timeout 45m

# What the binaries and images say they were built from (--version, labels,
# the image tag); SOURCE_DATE_EPOCH dates every file in the images, so two
# builds of one commit give the same image digests.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
VERSION_LDFLAGS := -X github.com/heraldlb/herald/cmd/internal/version.Version=$(VERSION) \
	-X github.com/heraldlb/herald/cmd/internal/version.Commit=$(COMMIT)
# REGISTRY names where `make push` sends the images (registry.example.com/herald);
# set at `make images`, it also prefixes the names the archives carry.
REGISTRY ?=

.PHONY: all build deps tools test vet unit bench demo demo-down lab-down fmt images push

all: build

build:
	$(GO) build -ldflags "$(VERSION_LDFLAGS)" -o $(BIN)/ ./cmd/... ./e2e/cmd/...

## images: OCI images of herald-controller and herald-speaker for linux/amd64
## and linux/arm64, built without a Docker engine by hack/tools/images, as
## bin/herald-{controller,speaker}.oci.tar (for docker load, podman load).
images:
	@tool=$$(hack/tools/build.sh images)/herald-images && \
	$$tool build -out $(BIN) -version $(VERSION) -revision $(COMMIT) \
		-epoch $(SOURCE_DATE_EPOCH) $(if $(REGISTRY),-repository $(REGISTRY))

## push: push both images (both platforms) to $(REGISTRY), tagged $(VERSION).
## PUSHFLAGS=-insecure for a plain-HTTP registry.
push: images
	@test -n "$(REGISTRY)" || { echo "push: set REGISTRY, e.g. make push REGISTRY=registry.example.com/herald"; exit 1; }
	@$$(hack/tools/build.sh images)/herald-images push -registry $(REGISTRY) $(PUSHFLAGS) \
		$(BIN)/herald-controller.oci.tar $(BIN)/herald-speaker.oci.tar

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
