# Two commands for a newcomer: `make demo` (the phantom demo) and `make test` (the test suite).
# Both create .venv if it is missing and install the workbook into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-browser test-exercises install lint notebooks clean-artifacts

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m cxr_helpers demo

# Everything, the real-browser test included (it needs Debian's Chromium: apt-get install chromium).
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# The real-browser test alone (JupyterLab + Debian's Chromium through Playwright).
test-browser: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m browser tests/test_browser_e2e.py

# Every exercise check against its solution, the stubs and wrong answers, and again without solutions.py.
test-exercises: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests/test_exercises.py

lint: $(STAMP)
	$(BIN)/ruff check cxr_helpers tests benchmarks

# Re-pair notebooks with their py:percent twins after editing the .py files.
notebooks: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.py

clean-artifacts:
	rm -rf artifacts data/phantom
