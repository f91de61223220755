# ovsnet: see README.md. Every target runs from a fresh checkout; Go tools
# (staticcheck, cnitool, modelgen) come from go.mod's tool directives.
GO      ?= go
BIN     ?= bin
PKGS    ?= ./...
# Integration tests start real OVS daemons; give slow machines room.
TESTFLAGS ?= -race -count=1 -timeout 20m

export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin

.PHONY: all build test lint fmt generate demo bench e2e e2e-multinode bench-e2e conformance image image-verify clean

all: build

# The CNI plugin is built stripped: the runtime execs it for every call.
build:
	$(GO) build -o $(BIN)/ ./cmd/ovsnet-agent ./cmd/ovsnetctl ./cmd/ovsnet-demo ./cmd/ovsnet-bench
	$(GO) build -trimpath -ldflags="-s -w" -o $(BIN)/ovsnet ./cmd/ovsnet

# A local OVS, the agent and four pods that ping each other; cleans up after.
demo: build
	$(BIN)/ovsnet-demo --bin $(BIN)

# Every test: lint, then unit and real-OVS integration tests with the race
# detector. Integration tests need root and OVS; with CI=true they fail
# instead of skipping when either is missing.
test: lint
	$(GO) test $(TESTFLAGS) $(PKGS)

# Benchmarks against real OVS sandboxes; figures go to docs/benchmarks.md.
bench: build
	$(BIN)/ovsnet-bench gate --runs 100 --orders 200
	$(BIN)/ovsnet-bench stall --rounds 3 --ports 20 --stall 8s
	$(GO) test -run '^$$' -bench PortReady -benchtime 200x ./internal/ovs/ofconn/
	$(BIN)/ovsnet-bench cni --pods 100 --concurrency 8 --plugin-dir $(BIN)
	$(BIN)/ovsnet-bench restart --restarts 20 --plugin-dir $(BIN)
	$(BIN)/ovsnet-bench restart --restarts 20 --with-ovsdb --down 1s --plugin-dir $(BIN)

# End to end on a real single-node Kubernetes cluster whose only CNI is
# ovsnet (root; Debian packages in e2e/README.md): builds or reuses the
# cached Kubernetes binaries, starts the cluster, runs e2e/suite, always
# tears everything down and checks the host is as before.
e2e: build
	e2e/run.sh all

# The same suite on a cluster of E2E_NODES (default 2) nodes, each in network
# and mount namespaces of its own, with ovsnet installed as the DaemonSet of
# deploy/ovsnet.yaml from the image of make image (built or reused first);
# the tests of e2e/suite/multinode_test.go run there. See e2e/README.md.
e2e-multinode: build
	E2E_NODES=$${E2E_NODES:-2} e2e/run.sh all

# Kubernetes' own sig-network conformance tests (e2e.test of the cluster's
# Kubernetes version, built and cached with its test images) on the same
# cluster with ovsnet; E2E_CNI=bridge runs them with the reference bridge
# plugin instead (the baseline). Results in bin/conformance/<cni>/ and
# docs/conformance.md; see e2e/README.md.
conformance: build
	e2e/run.sh conformance

# Pod creation -> Ready latency of 30 pods created at once, with ovsnet and
# with the reference bridge plugin as the floor (a cluster each, in turn).
bench-e2e: build
	e2e/run.sh bench

# The DaemonSet's image as an OCI archive, without a container engine or a
# registry (root; see docs/kubernetes.md): $(IMAGE_OUT)/ovsnet.tar holds
# docker.io/library/ovsnet:latest (the manifest's ovsnet:latest) and a tag
# from git describe. The Debian layer is cached in /var/cache/ovsnet-image
# (OVSNET_IMAGE_CACHE), so a rebuild after a Go change takes seconds.
IMAGE_OUT ?= $(BIN)/image

image:
	OVSNET_IMAGE_OUT=$(abspath $(IMAGE_OUT)) GO=$(GO) deploy/image/build.sh

# Runs the image in a private containerd (its own directories, removed
# after): OVS starts and answers, the binaries and portmap run.
image-verify: image
	deploy/image/verify.sh $(abspath $(IMAGE_OUT))/ovsnet.tar

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	GOOS=windows $(GO) build ./internal/ovs/...

fmt:
	gofmt -w $$(git ls-files '*.go')

generate:
	$(GO) generate ./internal/ovs/ovsdb/vswitch/

clean:
	rm -rf $(BIN)
