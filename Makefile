# clock_distill: every target is idempotent; `make setup` is the only one that installs.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
export DETECTRON2_DATASETS ?= datasets
# Pytest's own options; override e.g. `make test PYTEST_ARGS="-k kitti -x"`.
PYTEST_ARGS ?=
# Test files run in this many processes (pytest-xdist, one file per process at a time, so
# module fixtures run once): measured on 2 cores, 18 min in one process, 15 min in two.
PYTEST_WORKERS ?= 2
# `make demo` is the distillation demo (tools/demo.py): teacher, student alone and student with
# CLoCKDistill on the synthetic KITTI, evaluated and compared in OUT/report.md. FAMILY picks the
# family (deformable_detr, dino, dab_detr); a second run reuses the finished stages. Measured on
# 2 idle CPU cores: 24.3 min the first time (the stand-in backbones aside), 20 s the second.
FAMILY   ?= deformable_detr
DEMO_OUT ?= output/demo_$(FAMILY)

.PHONY: setup demo test bench clean

# The pip step re-runs only when requirements.txt changes (stamp); the detectron2 step and
# the editable install check themselves and take seconds when nothing changed.
setup: $(VENV)/.requirements.stamp
	$(PY) tools/install_detectron2.py --python $(PY)
	@$(PY) -c "import clock_distill" 2>/dev/null || $(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@$(PY) -c "import clock_distill, detectron2, torch; print('clock_distill ready: torch', torch.__version__, '| detectron2', detectron2.__version__, '| python', __import__('sys').version.split()[0])"

$(VENV)/.requirements.stamp: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

demo: setup
	$(PY) tools/demo.py --family $(FAMILY) --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest tests -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# transformers is the peer of the comparisons (tools/peer_train.py, tools/benchmark.py speed);
# only the benchmarks need it.
$(VENV)/.bench.stamp: requirements-bench.txt $(VENV)/.requirements.stamp
	$(PY) -m pip install -q -r requirements-bench.txt
	@touch $@

bench: setup $(VENV)/.bench.stamp
	$(PY) tools/benchmark.py eval
	$(PY) tools/benchmark.py speed --readme README.md

clean:
	rm -rf $(VENV) .cache output
