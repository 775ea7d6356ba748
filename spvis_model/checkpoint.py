"""Checkpoints: one file with the config, the weights, the class names and a format version.

Loading never executes code from the file (`torch.load(..., weights_only=True)`), and a wrong or
corrupt file raises `CheckpointError` saying which key or field, and which shape, is wrong.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from spvis_model.config import ConfigError, ModelConfig
from spvis_model.state_dict import StateDictMismatchError, load_state_dict_exact

if TYPE_CHECKING:
    from spvis_model.model import SPVIS

FORMAT = "spvis-checkpoint"
FORMAT_VERSION = 1


# What torch.load(weights_only=True) raises for a file that is not a (safe) torch file.
LOAD_ERRORS: tuple[type[Exception], ...] = (pickle.UnpicklingError, RuntimeError, EOFError,
                                           zipfile.BadZipFile, ValueError, OSError, IndexError,
                                           KeyError)


class CheckpointError(ValueError):
    """The file is not a usable spvis checkpoint; the message names the file and the problem."""


def save_checkpoint(model: SPVIS, path: str | Path, *, half: bool = False,
                    meta: dict[str, Any] | None = None) -> None:
    """Write `model` to `path` atomically (temp file + rename). `half` stores floating-point
    weights as float16 (they are cast back to float32 on load)."""
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
             for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.cfg.to_dict(),
        "class_names": list(model.cfg.class_names),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check the outer structure of a checkpoint file (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as exc:
        raise CheckpointError(f"checkpoint {path}: not a readable spvis checkpoint "
                              f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path}: top level is {type(payload).__name__}, "
                              "expected a dict")
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: key 'format' = {payload.get('format')!r}, "
                              f"expected {FORMAT!r}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: key 'format_version' = "
                              f"{payload.get('format_version')!r}, this spvis reads "
                              f"{FORMAT_VERSION}")
    for key, kind in (("config", dict), ("state_dict", dict), ("class_names", list)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"checkpoint {path}: key {key!r} must be a {kind.__name__}, "
                                  f"got {type(payload.get(key)).__name__}")
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> SPVIS:
    """Build the model a checkpoint describes and load its weights (every key, every shape)."""
    from spvis_model.model import SPVIS

    payload = read_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: key 'config': {exc}") from exc
    if payload["class_names"] != cfg.class_names:
        raise CheckpointError(f"checkpoint {path}: key 'class_names' {payload['class_names']} "
                              f"disagrees with config.class_names {cfg.class_names}")
    model = SPVIS(cfg, pretrained_backbone=False)
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v
             for k, v in payload["state_dict"].items()}
    try:
        load_state_dict_exact(model, state, source=str(path))
    except StateDictMismatchError as exc:
        raise CheckpointError(str(exc)) from exc
    model.meta = dict(payload.get("meta") or {})
    return model.to(device).eval()
