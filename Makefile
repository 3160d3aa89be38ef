# One entry point for people and CI. `make run` and `make test` work on a fresh machine with
# Python 3.11: they create .venv and install the pinned dependencies first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA_POM := privtrail/brokers/kafka_dist/pom.xml
KAFKA_STAMP := $(VENV)/.kafka-installed

.PHONY: install run test lint unit e2e bench bench-throughput clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The embedded Kafka broker's jars, fetched by Maven into ~/.cache/privtrail. Without Maven or
# Maven Central this prints one line saying so and privtrail runs the noida broker; the stamp is
# left out so the next make tries again.
$(KAFKA_STAMP): $(STAMP) $(KAFKA_POM)
	$(BIN)/privtrail install-kafka && touch $(KAFKA_STAMP) || true

install: $(STAMP) $(KAFKA_STAMP)

run: install
	$(BIN)/privtrail up --demo $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not e2e" $(ARGS)

e2e: install
	$(BIN)/pytest -m e2e $(ARGS)

# The e2e tests mostly wait (on outages, timed traffic, JVMs and processes starting), so more
# worker processes than cores finish sooner; tests/parallel.py says what they share.
TEST_WORKERS ?= 3

test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) $(ARGS)

# Every throughput goal, then one goals table (bench/README.md, "Goals"); ARGS=--quick for a
# smoke check at small sizes.
bench: install
	$(BIN)/python bench/suite.py $(ARGS)

bench-throughput: install
	$(BIN)/python bench/throughput.py $(ARGS)

clean:
	rm -rf $(VENV) .privtrail .pytest_cache .mypy_cache .ruff_cache
