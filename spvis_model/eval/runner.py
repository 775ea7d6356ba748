"""Hook for `spvis eval --checkpoint ckpt --data data.json`: run the model over a dataset.

The model lands with its own issue. Until `spvis_model.build_model` exists the CLI refuses this
mode with a clear message; once it exists the CLI calls `run_model_on_dataset`, whose body is
wired up together with the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import spvis_model

MODES: tuple[str, ...] = ("online", "clip")

MODEL_MISSING = ("spvis eval --checkpoint needs the model runner, which lands with the model "
                 "issue (spvis_model.build_model does not exist yet). Evaluate saved predictions "
                 "with: spvis eval --gt data.json --pred results.json")


def model_available() -> bool:
    """Whether the model package exposes `build_model` (the runner's entry point)."""
    return hasattr(spvis_model, "build_model")


def run_model_on_dataset(checkpoint: Path, data: Path, mode: str = "online",
                         images: Path | None = None) -> list[dict[str, Any]]:
    """Run the checkpoint over every video of the dataset JSON and return the results list.

    Contract for the implementation: load the checkpoint with `torch.load(...,
    weights_only=True)` (or safetensors) into `spvis_model.build_model(...)`; for each video read
    its frames (`file_names` relative to `images`), run the tracker frame by frame
    (`mode="online"`) or on clips (`mode="clip"`), collect one `FrameInstances` per frame, and
    convert with `spvis_model.eval.results.results_from_tracks(video_id, frames,
    category_ids)` where category_ids lists the dataset's category ids in its categories order.

    Raises:
        ValueError: `mode` is not one of MODES.
        NotImplementedError: until the model runner is wired in.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not model_available():
        raise NotImplementedError(MODEL_MISSING)
    raise NotImplementedError(
        f"run_model_on_dataset(checkpoint={str(checkpoint)!r}, data={str(data)!r}, "
        f"mode={mode!r}, images={str(images) if images else None!r}): spvis_model.build_model "
        "exists but the dataset runner is not wired to it yet (spvis_model/eval/runner.py)")
