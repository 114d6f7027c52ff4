# Two commands on a fresh machine with only python3 and make:
#   make book   install into .venv, execute every chapter with papermill, build the HTML book
#   make test   install into .venv, run the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
STAMP := $(VENV)/.installed

.PHONY: install book notebooks html exercises sync test test-fast bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

notebooks: $(STAMP)
	$(PY) scripts/execute_book.py --profile $(PROFILE)

html: $(STAMP)
	$(VENV)/bin/jupyter-book build _build/src --path-output . --warningiserror --keep-going
	@echo "The book is at _build/html/index.html"

book: notebooks html

# Student editions of book/exercises (no solutions, no outputs) and a zip of them with the busutils wheel
# their set-up cell installs (no network or public address needed), in _build/exercises; the instructor's
# guide (rubrics, answers, expected values), kept apart, in _build/instructor
exercises: $(STAMP)
	$(PY) scripts/make_exercises.py

# Rewrite the Colab set-up cell of every notebook in _toc.yml (after changing _config.yml's repository url
# or pyproject.toml's version: the cell installs busutils from the tag v<version>)
sync: $(STAMP)
	$(PY) scripts/sync_notebooks.py

# The test files run in TEST_WORKERS processes (pytest-xdist), each file whole in one of them, so that
# a file's shared fixtures are made once; TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 2
TEST_ARGS := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP)
	$(PY) -m pytest $(TEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(TEST_ARGS)

# Timings on this machine, into _build/bench/results.json (the book's Performance appendix shows them).
# The paper-profile runs take long on a CPU: BENCH_PAPER=0 skips them (keeping earlier ones).
BENCH_PAPER ?= 1
bench: $(STAMP)
	$(PY) benchmarks/bench_phantom.py
	$(PY) benchmarks/run_benchmarks.py $(if $(filter 0,$(BENCH_PAPER)),--no-paper)

clean:
	rm -rf _build
