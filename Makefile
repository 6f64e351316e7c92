# Two commands from a fresh clone: `make train` and `make test`. Each installs what it needs first.
PYTHON3 ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CONFIG ?= configs/demo.yaml

.PHONY: install train test tensorboard lint bench clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt
	$(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

train: $(INSTALLED)
	$(PY) -m lightning_resnet fit --config $(CONFIG)

test: $(INSTALLED)
	$(PY) -m pytest -q

tensorboard: $(INSTALLED)
	$(VENV)/bin/tensorboard --logdir logs

lint: $(INSTALLED)
	$(VENV)/bin/ruff check lightning_resnet tests

clean:
	rm -rf $(VENV) .pytest_cache
