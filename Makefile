# The two commands of a fresh machine: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?= 60
RATE ?= 40
QUICK ?=
SRC ?=
ONLY ?=

.PHONY: run test venv clean bench lint

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sms-analytics run --duration $(DURATION) --rate $(RATE)

# `make test`: lint and types first (a finding fails the run, hence CI), then the suite in TEST_WORKERS
# processes (pytest-xdist). Two on 2 cores: the integration tests mostly wait (a 60 s warehouse outage, a
# 30 s broker stop, rebalances, restarts), so two at a time take 708 s where one took 1,021 s, with the
# CPUs ~40% busy. A module's tests stay together, in order, in one worker (--dist loadfile: some read
# what an earlier test of theirs wrote); each worker starts its own session pipeline. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(STAMP) lint
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# `make lint`: ruff (rules and import order) over the tree and mypy over src/ and bench/ (tests/: see [tool.mypy]), both
# configured in pyproject.toml; both always run (all findings at once), either one's findings fail it.
lint: $(STAMP)
	$(BIN)/ruff check .; status=$$?; $(BIN)/mypy && exit $$status

# `make bench`: the benchmark (README.md, "Benchmarks"); QUICK=1 is 10x smaller,
# SRC=/path/to/src measures another source tree, ONLY=soak (comma-separated) some measurements,
# BROKER=embedded (or apache) one broker only (default both: join, freshness and restart also on Apache Kafka).
# Writes bench/results/<date>.json.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY)) $(if $(BROKER),--broker $(BROKER)) $(if $(SRC),--src $(SRC) --label $(notdir $(patsubst %/src,%,$(abspath $(SRC)))))

clean:
	rm -rf $(VENV) data .pytest_cache
