"""Counting host round trips: where Python code waits for the device, measurable on the CPU.

On CUDA, every read of a device value by the host (``.item()``, ``bool(t)``, ``.tolist()``,
``.cpu()``, a boolean-mask index or ``nonzero``, whose output size the host must know) and every
upload from pageable host memory (``torch.tensor(data, device=...)``) blocks the host until the
GPU has caught up: a sync. ``torch.cuda.set_sync_debug_mode`` reports them on a GPU. On the CPU
nothing waits, so `count_syncs` counts the same places instead, treating every tensor as if it
lived on the device:

- ``aten._local_scalar_dense`` (``item``, ``bool``, ``int``, ``float`` of a tensor);
- ops whose output size depends on the data: ``nonzero``, ``masked_select``, ``unique``, a
  boolean-mask index or index_put, ``repeat_interleave`` without ``output_size``;
- ``Tensor.tolist`` / ``Tensor.numpy`` / ``Tensor.cpu`` (a device-to-host copy; ``.cpu()``
  followed by ``.numpy()`` counts once);
- ``torch.tensor`` / ``torch.as_tensor`` of host data (lists, numbers, numpy arrays): an upload
  from pageable memory, which synchronises on CUDA;
- `spvis_model.tracker.host.to_host` (the tracker's one packed copy per decision point).

Code that runs on host copies (inside `host_side()`) is not counted: on CUDA it touches no
device memory. Each event is recorded with the project source line that caused it.

    with count_syncs() as count:
        state, inst = model.step(state, frame, stamp)
    count.total, count.by_site      # 3, {"spvis_model/tracker/host.py:88 (to_host)": 3}
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parent.parent
_THIS = str(Path(__file__).resolve())
_STATE = threading.local()

_SCALAR_OPS = {"aten._local_scalar_dense", "aten.is_nonzero", "aten.item"}
_SHAPE_OPS = {"aten.nonzero", "aten.masked_select", "aten._unique2", "aten.unique_dim",
              "aten.unique_consecutive", "aten._unique", "aten.argwhere", "aten.equal"}


@dataclass
class SyncCount:
    """Host round trips seen inside `count_syncs`.

    Attributes:
        by_kind: {"scalar" | "shape" | "d2h" | "h2d" | "to_host": count}.
        by_site: {"path:line (what)": count}, path relative to the repository.
    """

    by_kind: Counter = field(default_factory=Counter)
    by_site: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return int(sum(self.by_kind.values()))

    def add(self, kind: str, what: str) -> None:
        self.by_kind[kind] += 1
        self.by_site[f"{_site()} ({what})"] += 1

    def summary(self, top: int = 12) -> str:
        """One line per source site, most frequent first."""
        lines = [f"{n:4d}  {site}" for site, n in self.by_site.most_common(top)]
        return "\n".join(lines)


def _site() -> str:
    """The innermost project source line on the stack (outside this module)."""
    frame = sys._getframe(2)
    first = None
    while frame is not None:
        name = frame.f_code.co_filename
        if name != _THIS and "torch" not in Path(name).parts[-3:-1]:
            path = Path(name)
            with contextlib.suppress(ValueError):
                rel = path.resolve().relative_to(ROOT)
                if rel.parts and rel.parts[0] in ("spvis_model", "spvis_ros", "bench", "test"):
                    return f"{rel}:{frame.f_lineno}"
            first = first or f"{path.name}:{frame.f_lineno}"
        frame = frame.f_back
    return first or "?"


def _active() -> SyncCount | None:
    if getattr(_STATE, "host_depth", 0) > 0:
        return None
    return getattr(_STATE, "count", None)


@contextlib.contextmanager
def host_side() -> Iterator[None]:
    """Mark code that works on host copies (not counted; on CUDA it touches no device memory)."""
    _STATE.host_depth = getattr(_STATE, "host_depth", 0) + 1
    try:
        yield
    finally:
        _STATE.host_depth -= 1


def record(kind: str, what: str) -> None:
    """Count one round trip (used by the tracker's explicit copies)."""
    count = _active()
    if count is not None:
        count.add(kind, what)


class _Mode(TorchDispatchMode):
    def __init__(self, count: SyncCount) -> None:
        super().__init__()
        self.count = count

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = str(func.overloadpacket) if hasattr(func, "overloadpacket") else str(func)
        name = name if name.startswith("aten.") else f"aten.{name}"
        if _active() is not None:
            if name in _SCALAR_OPS:
                self.count.add("scalar", name.split(".", 1)[1])
            elif name in _SHAPE_OPS or _bool_index(name, args, kwargs):
                self.count.add("shape", name.split(".", 1)[1])
            elif (name == "aten.repeat_interleave" and "Tensor" in func._overloadname
                  and kwargs.get("output_size") is None):
                self.count.add("shape", "repeat_interleave")
        return func(*args, **kwargs)


def _bool_index(name: str, args: tuple, kwargs: dict) -> bool:
    if name not in ("aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"):
        return False
    indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
               for i in indices or ())


def _host_data(data: Any) -> bool:
    return not isinstance(data, torch.Tensor)


@contextlib.contextmanager
def count_syncs() -> Iterator[SyncCount]:
    """Count host round trips in the block (see the module docstring). Not re-entrant across
    threads: the count belongs to the calling thread."""
    if getattr(_STATE, "count", None) is not None:
        raise RuntimeError("count_syncs: already counting in this thread")
    count = SyncCount()
    orig = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy", "cpu")}
    orig_tensor, orig_as_tensor = torch.tensor, torch.as_tensor

    def tolist(self: torch.Tensor) -> Any:
        if not getattr(self, "_spvis_host", False):
            record("d2h", "tolist")
        return orig["tolist"](self)

    def numpy(self: torch.Tensor, *a: Any, **k: Any) -> np.ndarray:
        if not getattr(self, "_spvis_host", False):
            record("d2h", "numpy")
        return orig["numpy"](self, *a, **k)

    def cpu(self: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
        if getattr(self, "_spvis_host", False):
            return self
        record("d2h", "cpu")
        out = orig["cpu"](self, *a, **k)
        if out is self:  # a CPU tensor: return a distinct host copy to mark
            out = self.clone()
        out._spvis_host = True  # type: ignore[attr-defined]
        return out

    def tensor(data: Any, *a: Any, **k: Any) -> torch.Tensor:
        if _host_data(data):
            record("h2d", "torch.tensor")
        return orig_tensor(data, *a, **k)

    def as_tensor(data: Any, *a: Any, **k: Any) -> torch.Tensor:
        if _host_data(data):
            record("h2d", "torch.as_tensor")
        return orig_as_tensor(data, *a, **k)

    _STATE.count = count
    for name in orig:
        setattr(torch.Tensor, name, locals()[name])
    torch.tensor, torch.as_tensor = tensor, as_tensor
    try:
        with _Mode(count):
            yield count
    finally:
        for name, fn in orig.items():
            setattr(torch.Tensor, name, fn)
        torch.tensor, torch.as_tensor = orig_tensor, orig_as_tensor
        _STATE.count = None
