# Sakk — `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PAYMENTS ?= 5000

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install Sakk with its development tools

demo: $(STAMP) ## Run the demo: embedded broker, SQLite ledger, thousands of payments, a summary (PAYMENTS=5000)
	$(BIN)/sakk demo --payments $(PAYMENTS)

test: $(STAMP) ## Run the whole test suite (SQLite and the local PostgreSQL, embedded broker)
	$(BIN)/pytest

bench: $(STAMP) ## Benchmark: raw Kafka hop vs full flow on SQLite and PostgreSQL, latency at 2,000/s
	$(BIN)/sakk bench

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check engine consumers producers tests
	$(BIN)/ruff format --check engine consumers producers tests
	$(BIN)/mypy engine

clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) var

.PHONY: help install demo test bench lint clean
