"""The tracker's evaluation sets (configs/eval_sets.yaml): generate them and cache the
segmenter's outputs on them, both on first use.

    sets = load_sets()                                  # {name: EvalSet}
    path = ensure_dataset(sets["val_lowfps"], "data/eval")   # data/eval/val_lowfps/annotations.json
    cache = ensure_cache(model, sets["val_lowfps"], "data/eval", "cache")

Both are rebuilt when they no longer match: a dataset whose recorded generator configuration
differs from the set's entry is regenerated, a cache built from other annotation bytes rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spvis_model.atomic import atomic_write
from spvis_model.data.synthetic import generate, info_config, preset
from spvis_model.feature_cache import FeatureCache, build_cache, segmenter_digest
from spvis_model.hashing import file_sha256
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
    """The set's annotations.json, generated under data_root/<name>/ if missing. A folder
    generated from another configuration (the set's entry changed since, e.g. more videos) is
    regenerated, saying which fields differ: a stale set is never scored as the new one."""
    out = Path(data_root) / s.name
    ann = out / "annotations.json"
    if ann.exists():
        changed = config_changes(ann, s.config())
        if not changed:
            return ann
        print(f"[eval_sets] {out}: generated from another configuration of {s.name} "
              f"({'; '.join(changed)}): regenerating", flush=True)
        shutil.rmtree(out)
    generate(s.config(), out)
    return ann


def config_changes(ann: Path, config: Any) -> list[str]:
    """'field: was -> now' for each generator field where the annotations' recorded
    configuration (info.config) differs from `config`; one line saying so when the file has
    no readable record."""
    try:
        recorded = json.loads(ann.read_text()).get("info", {}).get("config")
    except (OSError, json.JSONDecodeError) as exc:
        return [f"annotations not readable ({exc})"]
    if not isinstance(recorded, dict):
        return ["no recorded configuration"]
    wanted = json.loads(json.dumps(info_config(config)))
    return [f"{k}: {recorded.get(k)!r} -> {wanted.get(k)!r}"
            for k in sorted(set(wanted) | set(recorded)) if recorded.get(k) != wanted.get(k)]


def ensure_cache(model: SPVIS, s: EvalSet, data_root: str | Path,
                 cache_root: str | Path, progress: bool = True) -> FeatureCache:
    """The set's segmenter-output cache for this model, built under
    cache_root/<segmenter digest>/<name>/ if missing (one folder per segmenter)."""
    ann = ensure_dataset(s, data_root)
    where = Path(cache_root) / segmenter_digest(model)[:12] / s.name
    digest = file_sha256(ann)
    marker = where / "dataset.sha256"  # the annotations the cache's files come from
    if marker.exists():
        if marker.read_text().strip() == digest:
            if (where / "meta.json").exists():
                return FeatureCache(where)
            # An interrupted build of these annotations, or one running now in another
            # process: build_cache resumes (or joins) it, never deleting its files.
            return build_cache(model, ann, where, progress=progress)
        print(f"[eval_sets] {where}: built from other annotations than {ann}: rebuilding",
              flush=True)
        shutil.rmtree(where)  # never resume over another dataset's per-video files
    elif any(where.glob("video_*.pt")):
        print(f"[eval_sets] {where}: per-video files without a record of their annotations: "
              "rebuilding", flush=True)
        shutil.rmtree(where)
    where.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all: a half-written record read by a second builder would look
    # like another dataset's and make it delete this build.
    atomic_write(marker, lambda f: f.write(f"{digest}\n".encode()))
    return build_cache(model, ann, where, progress=progress)
