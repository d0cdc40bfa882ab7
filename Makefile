# Two commands matter: `make run` and `make test`. Both set up what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_CACHE_DIR := $(CURDIR)/.cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint unit integration setup system jars k8s-tools jaeger wire-producer schema-registry bench chaos clean format dashboard

run: setup
	$(BIN)/python -m devtools demo

test: setup k8s-tools jaeger wire-producer schema-registry lint
	$(BIN)/pytest tests

unit: setup
	$(BIN)/pytest tests/unit

integration: setup jaeger wire-producer schema-registry
	$(BIN)/pytest tests/integration

lint: $(STAMP)
	$(BIN)/ruff check consumer schemas devtools tests bench chaos
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix consumer schemas devtools tests bench chaos
	$(BIN)/ruff format consumer schemas devtools tests bench chaos

setup: system $(STAMP) jars

system:
	@bash scripts/setup-system.sh

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,otel]'
	touch $(STAMP)

jars: $(STAMP)
	$(BIN)/python -m devtools kafka jars

# helm, a Kubernetes control plane, etcd and kwok for the chart tests, and a
# kubelet, kube-proxy, kubectl, CoreDNS and a pause binary for the real-node
# tests: built once into ~/.cache/consumer/<tool>-<version>/ (about 15 min on
# 2 cores), then instant.
k8s-tools:
	@nice -n 10 bash scripts/build-k8s-tools.sh

# Jaeger, the tracing test's backend: built once into ~/.cache/consumer/ (about
# 16 min on 2 cores), then instant.
jaeger:
	@nice -n 10 bash scripts/build-jaeger.sh

# wire-producer, the franz-go producer of raw records the wire tests write
# with: built once into ~/.cache/consumer/, keyed by a hash of its source
# (about a minute on 2 cores), then instant.
wire-producer:
	@nice -n 10 bash scripts/build-wire-producer.sh

# Apicurio Registry 2.4.2.Final, the Schema Registry of the value-format
# tests (Confluent-compatible API): built once with Maven from the wrapper
# project scripts/schema-registry/ into ~/.cache/consumer/, keyed by a hash of
# the wrapper's sources (about a minute), then instant.
schema-registry:
	@nice -n 10 bash scripts/build-schema-registry.sh

# The Grafana dashboard is generated; commit the result (a unit test compares).
dashboard: $(STAMP)
	$(BIN)/python -m devtools.dashboard > helm/consumer/files/dashboard.json

bench: setup
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,otel,bench]'
	$(BIN)/python -m bench

# A consumer group under a seeded storm of faults, every event counted
# (on demand, 5-8 minutes). Replay a run: make chaos SEED=<seed>; the
# exactly-once mode with its per-key counters: make chaos DELIVERY=exactly_once.
chaos: setup
	$(BIN)/python -m chaos $(if $(SEED),--seed $(SEED)) $(if $(DELIVERY),--delivery $(DELIVERY)) $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .hypothesis

# The container base image the Docker tests import: built once (~2 min) into ~/.cache/consumer/.
test integration: base-image
.PHONY: base-image
base-image:
	@bash scripts/build-base-image.sh >/dev/null
