PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test lint test-studies bench clean docs figures

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/full_wppm_fit_example.py

# Two workers, one test file each at a time: the suite is dominated by XLA
# compilation, which is single-threaded (measured on 2 cores: 27.7 min in one
# process after the L-BFGS default, against about half that with two workers).
test: $(STAMP) lint
	$(PY) -m pytest -q -ra --durations=15 -n 2 --dist loadfile -m "not study"

# ruff (pyflakes, isort, pyupgrade, bugbear) and mypy, configured in pyproject.toml.
lint: $(STAMP)
	$(PY) -m ruff check psyphy_pp tests benchmarks examples
	$(PY) -m mypy

# The checks make test leaves out for time (marker study; about 20 min on 2 cores).
test-studies: $(STAMP)
	$(PY) -m pytest -q -ra --durations=15 -m study

bench: $(STAMP)
	$(PY) -m benchmarks.bench_likelihood
	$(PY) -m benchmarks.bench_map
	$(PY) -m benchmarks.bench_sharding

$(DOCS_STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

# The documentation site, built into site/ (warnings are errors).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# Regenerate the PNGs shown in the docs (a few minutes on 2 cores).
figures: $(STAMP)
	$(PY) examples/full_wppm_fit_example.py --no-progress --output-dir docs/figures
	$(PY) docs/scripts/loop_agreement.py --output-dir docs/figures

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
