"""Files written whole or not at all, safe when several processes write the same file."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a temporary file beside `path`, then rename it over `path`.

    Each call has a temporary file of its own (two evaluations building one feature cache
    never share one), opened with the usual permissions; the last writer's file wins. On any
    error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
