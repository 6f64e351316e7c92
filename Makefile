# Two commands from a fresh clone: `make train` and `make test`. Each installs what it needs first.
# `make bench` runs the benchmarks (benchmarks/README.md) and keeps their tables in logs/bench/latest.md.
PYTHON3 ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CONFIG ?= configs/demo.yaml

.PHONY: install train test check tensorboard lint bench clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt
	$(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

train: $(INSTALLED)
	$(PY) -m lightning_resnet fit --config $(CONFIG)

# Debian's PostgreSQL and Chromium first (.ci/system-packages), then the suite in 2 processes, a file each at a time,
# the slowest files first (tests/conftest.py's SLOWEST_FILES); it prints its 15 slowest tests, so that the next slow
# one is seen the day it lands
test: $(INSTALLED)
	.ci/system-packages
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# the tests a contributor runs between commits: those marked neither slow, system nor ddp (pyproject.toml's markers):
# no service, no process of the command line, no loader worker; at most 90 s (benchmarks/README.md: the suite's tiers)
check: $(INSTALLED)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow and not system and not ddp" --durations=15

tensorboard: $(INSTALLED)
	$(VENV)/bin/tensorboard --logdir logs

# ruff, and the layers of pyproject.toml's [tool.importlinter] (docs/architecture.md)
lint: $(INSTALLED)
	$(VENV)/bin/ruff check lightning_resnet tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache

# bench_peer.py times timm's own train.py from a checkout (benchmarks/README.md names the commit measured)
TIMM ?= ../pytorch-image-models

bench: $(INSTALLED)
	mkdir -p logs/bench
	{ for script in backbone loop input fast_paths time_to_accuracy startup streaming open_set serve data_problems near_copies feature_cache calibration_size lr_find checkpoint_choice few_labels multilabel label_set_commands semi_supervised resize paper_epoch pretrained_inspection deploy distillation similar extend; do \
		PYTHONPATH=. $(PY) benchmarks/bench_$$script.py || exit 1; \
	done; PYTHONPATH=. $(PY) benchmarks/bench_distillation.py --data photo_like --teachers resnet50 && \
	PYTHONPATH=. $(PY) benchmarks/bench_semi_supervised.py --per_class 40 && \
	PYTHONPATH=. $(PY) benchmarks/bench_semi_supervised.py --data digits && \
	PYTHONPATH=. $(PY) benchmarks/bench_extend.py --data fashion_mnist && \
	PYTHONPATH=. $(PY) benchmarks/bench_peer.py --timm $(TIMM); } | tee logs/bench/latest.md
