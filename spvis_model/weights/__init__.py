"""Model weights shipped inside the package (the node's and `make demo`'s default checkpoint)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "spvis_lite0.pt"


def default_checkpoint() -> Path:
    """The shipped checkpoint; FileNotFoundError (saying what to do) when it is not there."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"no model is shipped at {DEFAULT_CHECKPOINT} yet (the trained lite0 demo model "
            "arrives with the training work); pass a checkpoint file explicitly")
    return DEFAULT_CHECKPOINT
