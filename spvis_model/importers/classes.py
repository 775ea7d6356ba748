"""Class lists: the published datasets' categories (package data) or a user's file.

Class index i of an imported model's class head is entry i of its list (Mask2Former, MinVIS
and DVIS number the categories contiguously in the order of their dataset ids).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ImportCheckpointError

CLASSES_DIR = Path(__file__).resolve().parent.parent / "classes"
#: Built-in lists: name -> number of classes.
CLASS_LISTS: dict[str, int] = {"coco": 80, "ytvis2019": 40, "ytvis2021": 40, "ovis": 25}


@dataclass(frozen=True)
class ClassList:
    """A named list of classes.

    Attributes:
        key: the built-in name (``coco``, ...) or the file's path.
        names: class names, index = the model's class index.
        ids: the dataset's category ids (COCO's run 1..90 with gaps), or 1..K for a file
            without ids.
        description: where the list comes from.
    """

    key: str
    names: list[str]
    ids: list[int]
    description: str


def load_class_list(spec: str | Path) -> ClassList:
    """A built-in list by name, or a file.

    Files: JSON, either a list of names or ``{"categories": [{"id": 1, "name": "..."}, ...]}``
    (the built-in files' layout, COCO-style), or plain text with one name per line (blank
    lines and lines starting with ``#`` ignored). Names must be non-empty and unique.
    """
    spec_s = str(spec)
    if spec_s in CLASS_LISTS:
        path = CLASSES_DIR / f"{spec_s}.json"
        out = _read_file(path, key=spec_s)
        if len(out.names) != CLASS_LISTS[spec_s]:
            raise ImportCheckpointError(f"class list {spec_s!r} ({path}) has {len(out.names)} "
                                        f"classes, expected {CLASS_LISTS[spec_s]}")
        return out
    path = Path(spec)
    if not path.is_file():
        raise ImportCheckpointError(f"--classes {spec_s!r}: not one of {', '.join(CLASS_LISTS)} "
                                    "and no such file")
    return _read_file(path, key=str(path))


def _read_file(path: Path, key: str) -> ClassList:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportCheckpointError(f"class list {path}: cannot read ({exc})") from exc
    description = f"class list file {path.name}"
    ids: list[int] | None = None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportCheckpointError(f"class list {path}: not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            cats = data.get("categories")
            if not isinstance(cats, list) or not all(
                    isinstance(c, dict) and isinstance(c.get("name"), str)
                    and isinstance(c.get("id"), int) for c in cats):
                raise ImportCheckpointError(f"class list {path}: key 'categories' must be a "
                                            'list of {"id": int, "name": str}')
            names = [c["name"] for c in cats]
            ids = [c["id"] for c in cats]
            description = str(data.get("description", description))
        elif isinstance(data, list) and all(isinstance(n, str) for n in data):
            names = list(data)
        else:
            raise ImportCheckpointError(f"class list {path}: JSON must be a list of names or "
                                        'an object with "categories"')
    else:
        names = [ln.strip() for ln in text.splitlines()
                 if ln.strip() and not ln.strip().startswith("#")]
    if not names:
        raise ImportCheckpointError(f"class list {path}: no class names")
    empty = [i for i, n in enumerate(names) if not n.strip()]
    if empty:
        raise ImportCheckpointError(f"class list {path}: empty name at index {empty[0]}")
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise ImportCheckpointError(f"class list {path}: name {n!r} at index {i} is "
                                        "repeated (names must be unique)")
        seen.add(n)
    return ClassList(key=key, names=names, ids=ids or list(range(1, len(names) + 1)),
                     description=description)
