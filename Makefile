# Every target creates .venv when it is missing and installs placer with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SIZE ?=

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing placer and its dev extras into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install --upgrade pip > $(VENV)/install.log 2>&1 || (tail -30 $(VENV)/install.log; exit 1)
	@$(BIN)/python -m pip install -e ".[dev]" >> $(VENV)/install.log 2>&1 || (tail -30 $(VENV)/install.log; exit 1)
	@$(BIN)/python -c "import placer, ortools, kubernetes, boto3, moto, ruamel.yaml, scipy, highspy"
	@touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check placer providers policies tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(SIZE),--size $(SIZE),) $(if $(TIME_LIMIT),--time-limit $(TIME_LIMIT),) $(if $(METHODS),--methods $(METHODS),)

clean:
	rm -rf $(VENV) .placer .pytest_cache .mypy_cache .ruff_cache
