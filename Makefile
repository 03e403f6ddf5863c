# Sakk — `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
PAYMENTS ?= 5000
SEED ?= 1
DURATION_S ?= 60
CHAOS_DATABASE_URL ?= sqlite
POSTGRES_SERVER_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}'

# Two stamps: the demo, the benchmark and chaos need only Sakk and its tooling (a fresh clone's
# `make demo` stays quick); the tests and lint add the development tools (pytest, Playwright, ...).
$(RUNTIME_STAMP): pyproject.toml tooling/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . -e ./tooling
	@touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]' -e ./tooling
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install Sakk with its development tools

demo: $(RUNTIME_STAMP) ## Run the demo: embedded broker, SQLite ledger, thousands of payments, a summary (PAYMENTS=5000)
	$(BIN)/sakk demo --payments $(PAYMENTS)

test-deps: ## Install the system packages the tests use (chromium, stunnel4, prometheus) when this machine can
	@.ci/test-deps

test: $(STAMP) test-deps ## Run the whole test suite (SQLite and the local PostgreSQL, embedded broker, headless Chromium)
	$(BIN)/pytest

bench: $(RUNTIME_STAMP) ## Benchmark: raw hop, null pipeline, full flow on SQLite and PostgreSQL, latency curve and knee, hot accounts, scale-out
	$(BIN)/sakk bench

chaos: PAYMENTS = 500
chaos: $(RUNTIME_STAMP) ## Fault injection: kills, freezes, outages, poison; exits 1 on any violation (SEED PAYMENTS DURATION_S CHAOS_DATABASE_URL)
	$(BIN)/sakk chaos --seed $(SEED) --payments $(PAYMENTS) --duration-s $(DURATION_S) --database-url $(CHAOS_DATABASE_URL)

chaos-long: $(RUNTIME_STAMP) ## Long fault-injection run on PostgreSQL: 20,000 payments, 15 minutes of faults
	$(BIN)/sakk chaos --seed $(SEED) --payments 20000 --duration-s 900 --drain-timeout-s 600 --database-url $(POSTGRES_SERVER_URL)

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check engine consumers producers sakk tooling tests
	$(BIN)/ruff format --check engine consumers producers sakk tooling tests
	$(BIN)/mypy engine sakk tooling

clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) var

.PHONY: help install demo test-deps test bench chaos chaos-long lint clean
