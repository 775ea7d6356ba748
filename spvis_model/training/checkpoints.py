"""Training checkpoints (`out_dir/ckpt/step_XXXXXX.pt`, `last.pt`): their format, reading them
back (tensors and primitives only, `torch.load(weights_only=True)`), initialising a model from
one or from an spvis model checkpoint, and the parameter digest that shows DDP ranks agree."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spvis_model.checkpoint import (
    CheckpointError,
    describe_load_error,
    read_checkpoint,
    verify_weights,
)
from spvis_model.model import SPVIS
from spvis_model.state_dict import StateDictMismatchError, load_state_dict_exact

TRAIN_FORMAT = "spvis-train-state"
TRAIN_FORMAT_VERSION = 1


def checkpoint_dir(out_dir: Path) -> Path:
    """Where a run's training checkpoints go: out_dir/ckpt."""
    return Path(out_dir) / "ckpt"


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (weights_only=True) and check its outer structure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for corrupt / unsafe files
        raise CheckpointError(f"training checkpoint {path}: not readable "
                              f"({describe_load_error(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != TRAIN_FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"training checkpoint {path}: key 'format' = {got!r}, expected "
                              f"{TRAIN_FORMAT!r}")
    if payload.get("format_version") != TRAIN_FORMAT_VERSION:
        raise CheckpointError(f"training checkpoint {path}: key 'format_version' = "
                              f"{payload.get('format_version')!r}, this spvis reads "
                              f"{TRAIN_FORMAT_VERSION}")
    for key in ("model", "optimizer", "scheduler", "scaler", "step", "epoch", "rank_states",
                "train_config", "model_config", "world_size"):
        if key not in payload:
            raise CheckpointError(f"training checkpoint {path}: missing key {key!r}")
    return payload


def load_init_weights(model: SPVIS, path: str | Path) -> None:
    """Fill `model` from an spvis model checkpoint or a training checkpoint (weights only;
    every key and shape must match, and the class names must agree)."""
    path = Path(path)
    try:
        payload = load_training_checkpoint(path)
        state, cfg_dict = payload["model"], payload["model_config"]
    except CheckpointError:
        payload = read_checkpoint(path)  # raises CheckpointError naming the problem
        verify_weights(path, payload)  # checksum and finite values, as loading a model does
        state, cfg_dict = payload["state_dict"], payload["config"]
    names = cfg_dict.get("class_names") if isinstance(cfg_dict, dict) else None
    if names != model.cfg.class_names:
        raise CheckpointError(f"init checkpoint {path}: class_names {names} differ from the "
                              f"model config's {model.cfg.class_names}")
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v
             for k, v in state.items()}
    try:
        load_state_dict_exact(model, state, source=str(path))
    except StateDictMismatchError as exc:
        raise CheckpointError(str(exc)) from exc


def params_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter's name and bytes: equal on every rank of a DDP run whose
    gradients are synchronised (buffers such as BatchNorm statistics are left out: each rank
    updates them from its own batch)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def step_checkpoints(ckpt_dir: Path) -> list[Path]:
    """ckpt_dir's step_<N>.pt files, oldest (smallest N) first. Sorted by N, not by name: past
    step 999999 the name has seven digits and would sort before the six-digit ones."""
    found = []
    for p in ckpt_dir.glob("step_*.pt"):
        digits = p.stem[len("step_"):]
        if digits.isdigit():
            found.append((int(digits), p))
    return [p for _, p in sorted(found)]
