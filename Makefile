# Tessera: `make demo` to see it work, `make test` to check it (README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint unit bench soak map clean

install: $(STAMP)

# PYTHONWARNINGS: setuptools explains editable installs at length on every install; nothing to act on.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/tessera simulate --cluster examples/cluster.yaml --workload examples/workload.yaml

lint: install
	$(BIN)/ruff check allocator topology scheduler tests bench
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: lint unit

bench: install
	$(BIN)/python -m bench.run

soak: install  # the live properties with many more examples and longer workloads (several minutes)
	TESSERA_SOAK=1 $(BIN)/pytest tests/test_live_properties.py tests/test_kill9.py

map: install  # the README's picture
	$(BIN)/tessera simulate --cluster examples/topology/cluster.yaml --workload examples/topology/workload.yaml \
		--map docs/topology-map.svg > /dev/null

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
