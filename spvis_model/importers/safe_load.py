"""Reading published checkpoints without running anything from them.

- detectron2 ``.pkl`` files (Mask2Former's model zoo) are pickles of numpy arrays in plain
  dicts. :class:`RestrictedUnpickler` rebuilds only numpy arrays, numpy dtypes and scalars and
  plain containers; any other global (``os.system``, ``builtins.eval``, a torch rebuild
  function, ...) and any persistent id is refused with :class:`UnsafeFileError` naming it,
  before anything is called.
- Everything else (``.pth``: MinVIS / DVIS, detectron2 Checkpointer files) is loaded with
  ``torch.load(weights_only=True)`` (numpy's array / dtype / scalar rebuilders added to its
  allowed globals, nothing else); a refused global is reported the same way.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spvis_model.checkpoint import describe_load_error, refused_global
from spvis_model.hashing import file_sha256

from .errors import ImportCheckpointError, UnsafeFileError

_multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray

#: The only globals a ``.pkl`` may name: (module, name) -> the object used. numpy pickles its
#: arrays as ``_reconstruct(ndarray, shape, dtype)`` + state, scalars as ``scalar(dtype, bytes)``;
#: protocol-2 pickles of bytes use ``_codecs.encode``. Old (numpy < 2) module names included.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
}



class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS` and no persistent ids.

    Args:
        file: the open binary file.
        source: the file's name, for error messages.
    """

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed global; refuse every other one (nothing is imported or called)."""
        obj = ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise UnsafeFileError(
                f"{self.source}: refused to load global {module}.{name}: a detectron2 .pkl "
                "may hold only numpy arrays, dtypes and plain containers; this file asks for "
                "something else (possibly code) and was not read further", f"{module}.{name}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids (torch's tensor storage records) are not plain data: refuse."""
        raise UnsafeFileError(
            f"{self.source}: refused a persistent id record ({str(pid)[:60]!r}): not a "
            "detectron2 numpy pickle (a torch file? name it .pth)", "persistent_id")


def read_pickle(path: Path) -> Any:
    """Unpickle a detectron2 ``.pkl`` with :class:`RestrictedUnpickler` (latin1 strings)."""
    with path.open("rb") as f:
        try:
            return RestrictedUnpickler(f, str(path)).load()
        except UnsafeFileError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, MemoryError) as exc:
            raise ImportCheckpointError(f"{path}: not a readable pickle "
                                        f"({type(exc).__name__}: {exc})") from exc


def _numpy_data_globals() -> list[Any]:
    """numpy's array / dtype / scalar rebuilders (data only), for .pth files that hold numpy
    values (e.g. in a detectron2 trainer state)."""
    found = [_multiarray._reconstruct, _multiarray.scalar, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return found


def read_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU, with numpy's data-only rebuilders also
    allowed; a refused global raises UnsafeFileError."""
    try:
        with torch.serialization.safe_globals(_numpy_data_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        name = refused_global(exc)
        if name is not None:
            raise UnsafeFileError(
                f"{path}: refused to load global {name} (torch.load with "
                "weights_only=True allows only tensors and plain containers); the file was "
                "not read further", name) from exc
        raise ImportCheckpointError(f"{path}: not a readable torch file "
                                    f"({describe_load_error(exc)})") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            IndexError) as exc:
        raise ImportCheckpointError(f"{path}: not a readable torch file "
                                    f"({describe_load_error(exc)})") from exc


@dataclass
class SourceFile:
    """A source checkpoint, read safely.

    Attributes:
        path: the file.
        sha256: hex digest of its bytes.
        format: "detectron2-pkl" (numpy pickle) or "torch" (torch.load).
        tensors: the model's tensors by source key (numpy arrays converted, not copied twice).
        top_level_dropped: top-level entries beside the state dict (e.g. "iteration",
            "optimizer", "__author__"), dropped.
    """

    path: Path
    sha256: str
    format: str
    tensors: dict[str, torch.Tensor]
    top_level_dropped: list[str] = field(default_factory=list)


#: Top-level entries of a detectron2 / Checkpointer file that are not the model and are dropped.
TOP_LEVEL_DROPPED: dict[str, str] = {
    "__author__": "provenance string of detectron2 model-zoo files",
    "matching_heuristics": "detectron2 loading hint",
    "iteration": "training iteration",
    "optimizer": "optimizer state (training only)",
    "scheduler": "learning-rate scheduler state (training only)",
    "grad_scaler": "mixed-precision scaler state (training only)",
    "trainer": "detectron2 trainer state: iteration, hooks (LR scheduler), optimizer, grad "
               "scaler (training only)",
}


def read_source_file(path: str | Path) -> SourceFile:
    """Read a published checkpoint: ``.pkl`` with the restricted unpickler, anything else
    with ``torch.load(weights_only=True)``; return its tensors by key.

    Accepted layouts: ``{"model": {key: array}, ...}`` (detectron2 model zoo and Checkpointer)
    or a bare ``{key: array}`` state dict. Every array must be numeric.
    """
    path = Path(path)
    if not path.is_file():
        raise ImportCheckpointError(f"{path}: no such file")
    digest = file_sha256(path)
    if path.suffix == ".pkl":
        data, fmt = read_pickle(path), "detectron2-pkl"
    else:
        data, fmt = read_torch(path), "torch"
    if not isinstance(data, dict):
        raise ImportCheckpointError(f"{path}: top level is a {type(data).__name__}, expected a "
                                    "dict (detectron2 checkpoint or state dict)")
    dropped: list[str] = []
    if "model" in data:
        state = data["model"]
        for key in data:
            if key == "model":
                continue
            if key not in TOP_LEVEL_DROPPED:
                raise ImportCheckpointError(
                    f"{path}: unknown top-level entry {key!r} beside 'model'; known and "
                    f"dropped: {sorted(TOP_LEVEL_DROPPED)}")
            dropped.append(key)
        if not isinstance(state, dict):
            raise ImportCheckpointError(f"{path}: entry 'model' is a {type(state).__name__}, "
                                        "expected a dict of tensors")
    else:
        state = data
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise ImportCheckpointError(f"{path}: state-dict key {key!r} is not a string")
        tensors[key] = _as_tensor(value, key, path)
    return SourceFile(path=path, sha256=digest, format=fmt, tensors=tensors,
                      top_level_dropped=dropped)


def _as_tensor(value: Any, key: str, path: Path) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub":
            raise ImportCheckpointError(f"{path}: key {key!r} holds a numpy array of dtype "
                                        f"{arr.dtype}, expected a numeric array")
        return torch.from_numpy(np.ascontiguousarray(arr))
    raise ImportCheckpointError(f"{path}: key {key!r} holds a {type(value).__name__}, expected "
                                "an array or tensor")
