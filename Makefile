# Employee advocacy platform: the two commands that matter are `make up` and `make test`.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=

.PHONY: help install infra-up infra-down infra-status infra-logs up down status tokens test test-unit test-integration bench lock clean \
        asyncapi openapi docs-generate check-artifacts dashboard browser chaos

help:
	@echo "make up            install what is missing, run the whole stack (docker compose if a Docker engine answers, local processes otherwise) and load the demo tenant"
	@echo "make down          stop the stack (and the demo tenant's live trickle)"
	@echo "make tokens        print the dashboard URL and a ready token per role of the demo tenant again"
	@echo "make test          install what is missing and run the full test suite on real Kafka and FerretDB/MongoDB"
	@echo "make infra-up|infra-down|infra-status|infra-logs   the local Kafka and FerretDB only"
	@echo "make dashboard     vendor Chart.js (npm) into the metrics service's dashboard; make browser: Debian's chromium"
	@echo "make bench         run the benchmarks under bench/"
	@echo "make asyncapi      regenerate docs/asyncapi.yaml from the event contracts"
	@echo "make openapi       regenerate docs/openapi/<service>.json from the apps"
	@echo "make check-artifacts  generated docs up to date and valid, Helm chart, compose file, Dockerfile (part of make test)"
	@echo "make chaos         the whole system under traffic, kills and restarts, on its own Kafka/FerretDB; exact checks"
	@echo "                   (EVENTS=200000 KILLS=24 SEED=1 CHAOS_ARGS='--db-restarts 0 ...'; see tests/chaos/README.md)"

$(UV):
	@bash scripts/ensure-uv.sh

install: $(UV)
	@$(UV) sync --frozen --all-packages

infra-up:
	@bash infra/infra.sh up

infra-down:
	@bash infra/infra.sh down

infra-status:
	@bash infra/infra.sh status

infra-logs:
	@bash infra/infra.sh logs

dashboard:
	@bash scripts/build-dashboard.sh

browser:
	@bash scripts/ensure-chromium.sh

up: install dashboard
	@bash scripts/stack.sh up

down:
	@bash scripts/stack.sh down

status:
	@bash scripts/stack.sh status

tokens:
	@bash scripts/stack.sh tokens

test: install dashboard browser check-artifacts infra-up
	@KAFKA_BOOTSTRAP_SERVERS=$${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$${KAFKA_PORT:-9092}} \
	 MONGODB_URI=$${MONGODB_URI:-mongodb://127.0.0.1:$${FERRETDB_PORT:-27017}/} \
	 $(UV) run --frozen pytest $(PYTEST_ARGS)

test-unit: install
	@$(UV) run --frozen pytest -m unit $(PYTEST_ARGS)

bench: install infra-up
	@for b in bench/*.py; do echo "== $$b"; $(UV) run --frozen python $$b || exit 1; done

asyncapi: install
	@$(UV) run --frozen python scripts/asyncapi.py

openapi: install
	@$(UV) run --frozen python scripts/openapi.py

docs-generate: asyncapi openapi

check-artifacts: install
	@UV=$(UV) bash scripts/check-artifacts.sh

EVENTS ?= 200000
KILLS ?= 24
SEED ?= 1
CHAOS_ARGS ?=
chaos: install
	@$(UV) run --frozen python -m tests.chaos.driver --events $(EVENTS) --kills $(KILLS) --seed $(SEED) $(CHAOS_ARGS)

lock: $(UV)
	@$(UV) lock
