"""Shared pytest set-up: marker handling for CUDA and ROS tests.

- `cuda` tests are skipped when torch sees no CUDA device or the extension has no CUDA kernels
  (a CPU-only machine); on the GPU machine they run.
- `ros` tests always run where the project's set-up installed ROS 2 (make test does): a missing
  rclpy is a failure, not a skip. Only SPVIS_ALLOW_NO_ROS=1 (for GPU machines that carry no ROS
  wheelhouse) turns them into skips.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

# One thread per process. On a small shared machine (CI: 2 cores) two OpenMP threads in each of
# several busy processes (pytest, a node process, a recorder) stall each other: measured 10-120x
# slower. Node processes started by tests inherit the variable. Tests that need several threads
# to reach a code path set them explicitly.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


def _cuda_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device"
    from spvis_model.ops import is_built, with_cuda

    if not is_built():
        return None  # let the test fail with the build hint
    if not with_cuda():
        return "spvis_model._C was built without CUDA kernels"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    cuda_reason = _cuda_reason()
    no_ros = (os.environ.get("SPVIS_ALLOW_NO_ROS") == "1"
              and importlib.util.find_spec("rclpy") is None)
    for item in items:
        if cuda_reason and "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=cuda_reason))
        if no_ros and "ros" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="SPVIS_ALLOW_NO_ROS=1 and rclpy not installed"))


@pytest.fixture(scope="session")
def trained_tiny():
    """The tiny preset trained (segmenter, stage 1) on synthetic disk/square scenes for a short
    time on the CPU; shared by the tests that need a model that actually sees objects."""
    import numpy as np
    from synthetic_clip import CLASSES, random_scene, targets_for

    from spvis_model.config import preset
    from spvis_model.model import SPVIS
    from spvis_model.training.criterion import SetCriterion

    cfg = preset("tiny")
    cfg.class_names = list(CLASSES)
    cfg.input.max_size = 96
    torch.manual_seed(0)
    model = SPVIS(cfg).train()
    criterion = SetCriterion(cfg.num_classes, num_points=512)
    params = [p for p in model.segmenter.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    for _ in range(TRAIN_STEPS):
        images, targets = [], []
        for _ in range(4):
            img, labels, masks = random_scene(rng)
            x, _ = model.preprocess(img)
            images.append(x)
            targets.append(targets_for(labels, masks))
        out = criterion(model.segment(torch.cat(images)).decoder, targets)
        opt.zero_grad()
        out.total().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval()


TRAIN_STEPS = 300


# --- the export tests' model (test_export.py, test_export_audit.py) -----------------------------
EXPORT_SIZE = (128, 96)
"""(W, H) of the export tests' frames: the tiny preset keeps 128x96 (max_size 128)."""


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A random-weight tiny checkpoint (seed 0), one per test module."""
    from spvis_model.config import preset
    from spvis_model.model import SPVIS

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("export") / "tiny.pt"
    SPVIS(preset("tiny")).save(path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_ckpt):
    """The model of `tiny_ckpt` (a test module may define its own `tiny`)."""
    from spvis_model.model import SPVIS

    return SPVIS.from_checkpoint(tiny_ckpt)


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tiny_ckpt):
    """The default export beside the checkpoint (tiny.onnx), as the backend finds it."""
    from spvis_model.export import ExportOptions, export_onnx

    export_onnx(tiny, tiny_ckpt.with_suffix(".onnx"), ExportOptions(size=EXPORT_SIZE))
    return tiny_ckpt.with_suffix(".onnx")
