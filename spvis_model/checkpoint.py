"""Checkpoints: one file with the config, the weights, the class names, a format version and a
checksum of the weights.

Loading never executes code from the file (`torch.load(..., weights_only=True)`), and a wrong or
corrupt file raises `CheckpointError` saying which key or field, and which shape, is wrong:

- a file that is not a torch file at all (``/etc/passwd``, random bytes) is refused by its first
  bytes, before any unpickling;
- ``weights_sha256`` (written by `save_checkpoint`, i.e. ``model.save``) is the SHA-256 of the
  stored weights (`weights_checksum`); `load_checkpoint` recomputes it, so a flipped bit in any
  tensor is caught. Checkpoints written before the checksum existed (no such key) still load;
- a floating-point tensor holding NaN or inf is refused, naming the tensor (a model with NaN
  weights finds nothing, forever, which looks exactly like an empty scene).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from spvis_model.atomic import atomic_write
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


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\s*\n|$)", re.S)


def refused_global(exc: BaseException) -> str | None:
    """The global (``module.name``) that `torch.load(weights_only=True)` refused to load, or
    None when `exc` is not such a refusal."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    found = _REFUSED_GLOBAL.search(str(exc))
    return found.group(1) if found else None


def describe_load_error(exc: BaseException) -> str:
    """What `torch.load(weights_only=True)` refused, in one line without torch's advice.

    torch's own message for a refused pickle says that loading with ``weights_only=False``
    "will likely succeed", which for an untrusted file is exactly what must not be done; this
    keeps only the global it refused or the unpickler's reason.
    """
    text = str(exc)
    name = refused_global(exc)
    if name is not None:
        return (f"refused to load global {name}: loading runs no code from the file, it takes "
                "only tensors and plain containers; the file was not read further")
    if isinstance(exc, pickle.UnpicklingError):
        detail = _UNPICKLER_DETAIL.search(text)
        if detail:
            return f"the weights-only unpickler refused it: {' '.join(detail.group(1).split())}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


CHECKSUM_KEY = "weights_sha256"
# First bytes of what torch.save writes: a zip archive (the default since torch 1.6), or the
# legacy format (a pickle of the magic number, protocol 2).
_TORCH_MAGICS = (b"PK\x03\x04", b"\x80\x02\x8a\x0a")


class CheckpointError(ValueError):
    """The file is not a usable spvis checkpoint; the message names the file and the problem."""


def weights_checksum(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a state dict: every key in sorted order with its dtype, shape and raw
    bytes. Equal for equal weights whatever the device; any changed bit changes it."""
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key].detach().cpu().contiguous()
        h.update(key.encode("utf-8"))
        h.update(f"|{value.dtype}|{tuple(value.shape)}|".encode())
        if value.numel():
            h.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[tuple[str, int, int]]:
    """``(key, non-finite count, element count)`` of every floating-point tensor holding NaN or
    inf, in key order."""
    bad = []
    for key in sorted(state):
        value = state[key]
        if value.is_floating_point() or value.is_complex():
            count = int((~torch.isfinite(value)).sum())
            if count:
                bad.append((key, count, value.numel()))
    return bad


def verify_weights(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Check a read checkpoint's weights: the stored checksum (when there is one) and finite
    values. Raises CheckpointError naming the file and the tensor."""
    state = payload["state_dict"]
    bad = non_finite_tensors(state)
    described = "; ".join(f"tensor {k!r} has {n} non-finite (NaN/inf) values of {total}"
                          for k, n, total in bad[:3]) + (f"; and {len(bad) - 3} more tensors"
                                                         if len(bad) > 3 else "")
    stored = payload.get(CHECKSUM_KEY)
    if stored is not None:
        if not isinstance(stored, str):
            raise CheckpointError(f"checkpoint {path}: key {CHECKSUM_KEY!r} = {stored!r}, "
                                  "expected a hex string")
        actual = weights_checksum(state)
        if actual != stored:
            raise CheckpointError(
                f"checkpoint {path}: the weights do not match their checksum (key "
                f"{CHECKSUM_KEY!r} = {stored[:16]}..., the weights hash to {actual[:16]}...): "
                f"the file is corrupt or was edited" + (f"; {described}" if bad else ""))
    if bad:
        raise CheckpointError(f"checkpoint {path}: {described}; refusing weights that cannot "
                              "produce detections")


def save_checkpoint(model: SPVIS, path: str | Path, *, half: bool = False,
                    meta: dict[str, Any] | None = None) -> None:
    """Write `model` to `path` atomically (`spvis_model.atomic.atomic_write`: nothing is left
    behind when the write fails, and the OSError propagates). `half` stores floating-point
    weights as float16 (they are cast back to float32 on load).

    Checked first, before anything is written: `model.cfg` is valid again (it is not
    re-checked after construction: an edit such as ``cfg.tracker.output_score = 1.5`` would
    write a file that no loader accepts; ConfigError naming the field), and the target's
    folder exists (FileNotFoundError naming the path, not the temporary file)."""
    path = Path(path)
    try:
        model.cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"cannot save {path}: model.cfg is invalid: {exc}") from exc
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save checkpoint {path}: folder {path.parent} does "
                                "not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot save checkpoint {path}: it is a folder (give a file "
                                "path, e.g. model.pt)")
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
             for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.cfg.to_dict(),
        "class_names": list(model.cfg.class_names),
        "state_dict": state,
        CHECKSUM_KEY: weights_checksum(state),
        "meta": dict(meta or {}),
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check the outer structure of a checkpoint file (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({exc})") from exc
    if not head.startswith(_TORCH_MAGICS):
        raise CheckpointError(f"checkpoint {path}: not a readable spvis checkpoint (not a torch "
                              f"file: it starts with bytes {head!r})")
    try:
        with warnings.catch_warnings():
            # Corrupt data makes the unpickler warn about odd pickle protocols before failing.
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as exc:
        raise CheckpointError(f"checkpoint {path}: not a readable spvis checkpoint "
                              f"({describe_load_error(exc)})") from exc
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
    for key, value in payload["state_dict"].items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: state_dict entry {key!r} is a "
                                  f"{type(value).__name__}, expected a tensor")
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> SPVIS:
    """Build the model a checkpoint describes and load its weights (every key, every shape),
    after checking them (`verify_weights`: checksum when stored, finite values). `device`:
    see `spvis_model.devices.resolve_device` (a device this machine cannot serve is a
    ValueError naming it, before the file is read)."""
    from spvis_model.devices import resolve_device
    from spvis_model.model import SPVIS

    device = resolve_device(device)
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
    verify_weights(path, payload)
    model.meta = dict(payload.get("meta") or {})
    return model.to(device).eval()
