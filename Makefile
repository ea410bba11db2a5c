# Airlock's entry points. CI runs `make test` (see .ci/run); the README's quick start is `make demo` and `make test`.
SHELL := /usr/bin/env bash
CARGO ?= cargo

.PHONY: all build test lint unit fuzz e2e up down demo bench crds model controlplane clean-env

all: build

build:
	$(CARGO) build --workspace

## test: the full suite — formatting, clippy, unit tests, then end-to-end tests against a real control plane.
test: lint unit e2e

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The in-tree fuzz targets (bolero) run a second or two each; a fixed seed keeps CI reproducible.
# `make fuzz` explores with fresh seeds.
FUZZ_SEED ?= 20261123
unit:
	BOLERO_RANDOM_SEED=$(FUZZ_SEED) $(CARGO) test --workspace --exclude airlock-e2e

## fuzz: the fuzz targets again and again with fresh random seeds (outside CI); a failure prints its seed.
FUZZ_ROUNDS ?= 20
fuzz:
	for i in $$(seq 1 $(FUZZ_ROUNDS)); do \
	  $(CARGO) test -q --workspace --exclude airlock-e2e fuzz || exit 1; \
	done

e2e:
	e2e/run.sh

## up/down: a local environment to work in; `make up` ends with `export KUBECONFIG=...`.
up:
	@e2e/env.sh up

down:
	@e2e/env.sh down

demo:
	e2e/demo.sh

## bench: each benchmark prints its figures and the ratio to its peer. The operator benchmark starts its own
## control plane (.airlock/bench, ports 16740–16751); the sidecar benchmark runs nginx as its floor (ports 18100–18114);
## the engine benchmark runs the same rules in Vectorscan (Debian's libvectorscan-dev) and RegexSet.
bench:
	bench/engine.sh
	bench/webhook.sh
	bench/operator.sh
	bench/sidecar.sh

## crds: regenerate the chart's CRD YAML and docs/reference.md from the Rust types.
crds:
	$(CARGO) run -q -p airlock-crds --bin crdgen

## model: re-fit the injection classifier (sidecar/src/engine/data/injection_model.bin) from the labelled
## sets in the tree; a unit test fails when the shipped file is not what this writes.
model:
	$(CARGO) run -q --release -p airlock-sidecar --example fit_injection_model

## controlplane: build (or reuse) the pinned control-plane binaries and print where they are.
controlplane:
	e2e/controlplane/build.sh

clean-env:
	-e2e/controlplane/down.sh .airlock/dev
	-e2e/controlplane/down.sh .airlock/e2e
	-e2e/controlplane/down.sh .airlock/demo
	rm -rf .airlock
