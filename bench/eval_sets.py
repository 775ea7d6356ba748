"""The tracker's evaluation sets (configs/eval_sets.yaml): generate them and cache the
segmenter's outputs on them, both on first use.

    sets = load_sets()                                  # {name: EvalSet}
    path = ensure_dataset(sets["val_lowfps"], "data/eval")   # data/eval/val_lowfps/annotations.json
    cache = ensure_cache(model, sets["val_lowfps"], "data/eval", "cache")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spvis_model.data.synthetic import generate, preset
from spvis_model.feature_cache import FeatureCache, build_cache, segmenter_digest
from spvis_model.model import SPVIS

SETS_FILE = Path(__file__).resolve().parent.parent / "configs" / "eval_sets.yaml"
ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class EvalSet:
    name: str
    role: str
    preset: str
    overrides: dict[str, Any]

    def config(self) -> Any:
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in self.overrides.items()}
        return dataclasses.replace(preset(self.preset), **fields)


def load_sets(path: Path = SETS_FILE) -> dict[str, EvalSet]:
    data = yaml.safe_load(path.read_text())
    out = {}
    for name, raw in data.items():
        spec = dict(raw)
        role = spec.pop("role")
        if role not in ROLES:
            raise ValueError(f"{path}: set {name}: role = {role!r}, must be one of {ROLES}")
        out[name] = EvalSet(name, role, spec.pop("preset"), spec)
    return out


def ensure_dataset(s: EvalSet, data_root: str | Path) -> Path:
    """The set's annotations.json, generated under data_root/<name>/ if missing."""
    out = Path(data_root) / s.name
    ann = out / "annotations.json"
    if not ann.exists():
        generate(s.config(), out)
    return ann


def ensure_cache(model: SPVIS, s: EvalSet, data_root: str | Path,
                 cache_root: str | Path, progress: bool = True) -> FeatureCache:
    """The set's segmenter-output cache for this model, built under
    cache_root/<segmenter digest>/<name>/ if missing (one folder per segmenter)."""
    ann = ensure_dataset(s, data_root)
    where = Path(cache_root) / segmenter_digest(model)[:12] / s.name
    if (where / "meta.json").exists():
        return FeatureCache(where)
    return build_cache(model, ann, where, progress=progress)
