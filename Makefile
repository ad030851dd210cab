# clock_distill: every target is idempotent; `make setup` is the only one that installs.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
export DETECTRON2_DATASETS ?= datasets
SYNTH  := $(DETECTRON2_DATASETS)/kitti_synthetic
# Pytest's own options; override e.g. `make test PYTEST_ARGS="-k kitti -x"`.
PYTEST_ARGS ?=
# Test files run in this many processes (pytest-xdist, one file per process at a time, so
# module fixtures run once): measured on 2 cores, 18 min in one process, 14 min in two.
PYTEST_WORKERS ?= 2
# `make demo` trains the CPU-sized Deformable DETR briefly (DEMO_ITERS steps, lr x0.1 for the
# last fifth) and prints its KITTI table; the full run is the config itself (1000 steps).
DEMO_CONFIG ?= configs/deformable_detr/deformable_detr_r18_kitti_synthetic.py
DEMO_ITERS  ?= 200
DEMO_OUT    ?= output/demo

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
	$(PY) tools/make_synthetic_kitti.py --out $(SYNTH) --if-missing
	$(PY) tools/dataset_stats.py --root $(SYNTH) --splits train tune val
	$(PY) tools/lazyconfig_train_net.py --config-file $(DEMO_CONFIG) train.output_dir=$(DEMO_OUT) \
		train.max_iter=$(DEMO_ITERS) train.eval_period=$(DEMO_ITERS) train.checkpointer.period=$(DEMO_ITERS) \
		"lr_multiplier.scheduler.milestones=[$$(( $(DEMO_ITERS) * 4 / 5 )),$(DEMO_ITERS)]"
	@cat $(DEMO_OUT)/kitti_report.md

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
