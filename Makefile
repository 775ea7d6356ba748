# spvis: the two commands are `make demo` and `make test`; both set themselves up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench gpu-check gpu-train clean

setup:  ## create .venv, install torch, ROS 2 wheels, spvis_msgs and the project (idempotent)
	@bash scripts/setup.sh

demo: setup  ## the main job on an embedded default: bags -> real node -> record -> score (README)
	@test -f /usr/share/doc/opencv-doc/examples/data/vtest.avi || { \
	  echo "[demo] installing Debian's opencv-doc for the street video vtest.avi"; \
	  { apt-get install -y -q opencv-doc >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q opencv-doc >/dev/null 2>&1; }; } || \
	  echo "[demo] could not install opencv-doc: the real-video part will be skipped"; }
	@$(PY) scripts/demo.py $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT))

test: setup  ## lint + the whole test suite (CUDA tests skip without a GPU)
	@$(VENV)/bin/ruff check .
	@$(PY) -m pytest -q

lint: setup
	@$(VENV)/bin/ruff check .

bench: setup  ## op benchmark (CPU here; add DEVICE=cuda on a GPU machine)
	@$(PY) bench/msda.py --device $(or $(DEVICE),cpu)

gpu-check:  ## the CUDA check (scripts/gpu_check.sh) into OUT (default out/gpu-check); DRY=1: CPU dry run
	@bash scripts/gpu_check.sh $(if $(DRY),--dry-run) $(or $(OUT),out/gpu-check)

gpu-train:  ## stage 1 on the GPU sized to its deadline (scripts/gpu_train.sh) into OUT (default out/gpu-train); DRY=1: CPU dry run
	@bash scripts/gpu_train.sh $(if $(DRY),--dry-run) $(or $(OUT),out/gpu-train)

clean:
	rm -rf build spvis_model/_C*.so *.egg-info
