# Every target installs what it needs into .venv first (Python 3.11, PyPI).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install models serve test lint format bench clean manifests

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Converts the shipped dlib weights to ONNX once (cached in FACESERVE_MODEL_DIR).
models: install
	$(BIN)/faceserve models prepare

serve: models
	$(BIN)/faceserve serve

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: models
	$(BIN)/python -m bench.run --output BENCHMARKS.md

# The `full` load-test profile against a service started here (about 11 minutes on 2 cores):
# writes its section of BENCHMARKS.md and docs/loadtest/full.png. Run on a quiet machine.
.PHONY: loadtest
loadtest: models
	$(BIN)/faceserve loadtest --sla loadtests/sla.yaml --profile full \
		--benchmarks BENCHMARKS.md --output loadtest-results/full

# Regenerates the RayService's serveConfigV2 (manifests/rayservice.yaml) from serve_config.yaml.
manifests: install
	$(BIN)/python scripts/sync_rayservice.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
