# spvis: the two commands are `make demo` and `make test`; both set themselves up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench clean

setup:  ## create .venv, install torch, ROS 2 wheels, spvis_msgs and the project (idempotent)
	@bash scripts/setup.sh

demo: setup  ## the main job on an embedded default (see README: what exists so far)
	@echo "[demo] The node + rosbag demo arrives with the node and bag-replay work (issues 6, 7)."
	@echo "[demo] Until then this shows the foundation working: the build, and the compiled"
	@echo "[demo] MSDeformAttn op against the PyTorch reference at Mask2Former pixel-decoder shapes."
	@$(VENV)/bin/spvis info
	@$(PY) bench/msda.py --device cpu --batch 1 --repeats 3

test: setup  ## lint + the whole test suite (CUDA tests skip without a GPU)
	@$(VENV)/bin/ruff check .
	@$(PY) -m pytest -q

lint: setup
	@$(VENV)/bin/ruff check .

bench: setup  ## op benchmark (CPU here; add DEVICE=cuda on a GPU machine)
	@$(PY) bench/msda.py --device $(or $(DEVICE),cpu)

clean:
	rm -rf build spvis_model/_C*.so *.egg-info
