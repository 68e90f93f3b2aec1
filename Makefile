# Set-up and the everyday commands. Every target creates .venv on first use:
#   make test   -> create .venv, install torch 2.13.0 (CPU) then fer-hf[dev], run the offline tests
#   make demo   -> same set-up, then launch the Gradio demo on the bundled model
# Online users on a CPU-only box can add TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH_INDEX ?=
PYTEST_ARGS ?=

export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -c constraints.txt torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip check
	touch $@

.PHONY: install test test-slow lint prepare demo
install: $(BIN)/.installed

# Offline suite, headless-Chromium tests of the demo included: they need Debian's chromium at
# /usr/bin/chromium, which .ci/ensure-chromium installs when missing (as root; otherwise it says
# in one line what to run).
test: $(BIN)/.installed
	.ci/ensure-chromium
	$(BIN)/python -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

# Tests on the real FER2013 folder (../shared/data/fer2013, or FER_HF_FER2013); see README "Tests".
test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff format --check fer_hf tests bench space train.py
	$(BIN)/ruff check fer_hf tests bench space train.py

DATA ?= ../shared/data/fer2013
OUT ?= prepared/fer2013
prepare: $(BIN)/.installed
	$(BIN)/fer-hf prepare fer2013 --data-dir $(DATA) --output $(OUT) --resample oversample

# The Gradio demo (space/app.py) on the bundled checkpoints/fer2013-*, offline, on
# http://127.0.0.1:7860 (GRADIO_SERVER_PORT / FER_HF_MODELS override; see space/README.md).
demo: $(BIN)/.installed
	$(BIN)/python space/app.py
