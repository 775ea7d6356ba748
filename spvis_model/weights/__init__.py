"""Model weights shipped inside the package (the node's and `make demo`'s default checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "spvis_lite0.pt"


def default_checkpoint() -> Path:
    """The shipped checkpoint; FileNotFoundError (saying what to do) when it is not there."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"no model is shipped at {DEFAULT_CHECKPOINT} yet (the trained lite0 demo model "
            "arrives with the training work); pass a checkpoint file explicitly")
    return DEFAULT_CHECKPOINT


DEMO_KIND = "demo"


def demo_notice(model: Any) -> str | None:
    """What a user must be told once, at start, when `model` is a demo model (checkpoint meta
    ``kind: demo``), else None."""
    if getattr(model, "meta", {}).get("kind") != DEMO_KIND:
        return None
    names = ", ".join(model.class_names)
    return (f"this is the DEMO model: it knows only the synthetic generator's classes ({names}) "
            "and has never seen a real object class, so on camera images it should publish "
            "(almost) nothing. For real objects, bring a published Mask2Former / MinVIS / DVIS "
            "model with `spvis import` (docs/model.md, 'Use a published model') or train one on "
            "your data (docs/training.md), and pass checkpoint:=<that file>.")
