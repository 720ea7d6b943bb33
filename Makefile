# Two entry points, both safe on a fresh machine: `make repro` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# When make started (parsed once): `repro` and `test` record their wall time, the install included, in
# reports/timings/ (not committed; `reprozoo bench --only workflow` reads it beside its target).
START := $(shell date +%s)
record = mkdir -p reports/timings && printf '{"seconds": %s, "finished": "%s", "cores": %s, "commit": "%s"}\n' \
	$$(( $$(date +%s) - $(START) )) "$$(date -Iseconds)" "$$(nproc)" "$$(git rev-parse --short HEAD 2>/dev/null)" \
	> reports/timings/$(1).json.tmp && mv reports/timings/$(1).json.tmp reports/timings/$(1).json
# One pytest worker per core, each pinned to its core (tests/conftest.py); tests that share one project
# stay on one worker (xdist_group).
PYTEST := $(BIN)/pytest -n auto --dist loadgroup

.PHONY: repro test test-fast lint format clean

# torch and torchvision come from this machine's wheel cache; constraints.txt pins every other package.
# pip compiles the packages' bytecode on one core; compileall does it on all of them (on 2 cores the install took
# 112 s, now 83). Compiled here, not on first import: with PYTHONDONTWRITEBYTECODE set, no process would keep it.
# As pip does, it passes over a file that does not compile (torch ships a test file in Python 3.12 syntax).
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $(STAMP)

# The pipeline JOBS stages at a time, each run by DVC (`dvc repro --single-item`) with cores ÷ JOBS threads;
# dvc.lock ends as a sequential `dvc repro` leaves it, which then has nothing to do. Each stage holds its own
# model and data: raise JOBS where cores and memory allow, e.g. `make repro JOBS=4`.
JOBS ?= 2
repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/reprozoo repro --jobs $(JOBS)
	$(call record,make-repro)

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PYTEST)
	$(call record,make-test)

# The tests not marked slow (over ~4 s: pyproject.toml's markers), for an answer in about 2 minutes.
test-fast: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PYTEST) -m "not slow"

# ruff's lint and format checks (pyproject.toml [tool.ruff]); `make format` applies both.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf data models metrics reports mlflow.db mlartifacts lightning_logs
