"""Loading of the compiled extension ``spvis_model._C``.

A missing or broken build is reported when the op is called, with the command that builds
it; nothing falls back to the pure-PyTorch reference on its own.
"""

from __future__ import annotations

import importlib
from types import ModuleType

BUILD_HINT = (
    "build it with `make setup` from the repository root, or "
    "`pip install -e . --no-build-isolation` in the environment that has torch"
)

_module: ModuleType | None = None
_error: str | None = None


def load() -> ModuleType:
    """Return the compiled module, or raise RuntimeError saying how to build it."""
    global _module, _error
    if _module is not None:
        return _module
    if _error is None:
        try:
            _module = importlib.import_module("spvis_model._C")
            return _module
        except ImportError as exc:  # missing file, or built against another torch
            _error = f"{type(exc).__name__}: {exc}"
    raise RuntimeError(f"the compiled MSDeformAttn op (spvis_model._C) is not usable ({_error}); "
                       f"{BUILD_HINT}")


def is_built() -> bool:
    """True when ``spvis_model._C`` imports."""
    try:
        load()
    except RuntimeError:
        return False
    return True


def with_cuda() -> bool:
    """True when the compiled module has CUDA kernels."""
    return is_built() and bool(load().with_cuda())
