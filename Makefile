PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/full_wppm_fit_example.py

test: $(STAMP)
	$(PY) -m pytest -q -ra --durations=15

bench: $(STAMP)
	$(PY) benchmarks/bench_likelihood.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
