"""bench/eval_sets.py: an evaluation set whose entry changed is regenerated, and a feature cache
built from other annotations is rebuilt, never scored as the new set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from eval_sets import EvalSet, config_changes, ensure_cache, ensure_dataset

SMALL = {"width": 96, "height": 64, "frames": 4, "objects": [1, 2], "occluders": [0, 0],
         "classes": ["disk", "square"], "seed": 5}


def _set(videos: int) -> EvalSet:
    return EvalSet("tiny_set", "val", "easy", {**SMALL, "videos": videos})


def _video_ids(ann: Path) -> list[int]:
    return [v["id"] for v in json.loads(ann.read_text())["videos"]]


def test_a_changed_entry_regenerates_the_set(tmp_path, capsys):
    ann = ensure_dataset(_set(1), tmp_path)
    assert len(_video_ids(ann)) == 1
    first = ann.read_bytes()
    assert ensure_dataset(_set(1), tmp_path).read_bytes() == first  # unchanged: kept
    assert "regenerating" not in capsys.readouterr().out
    ann2 = ensure_dataset(_set(2), tmp_path)
    assert "videos: 1 -> 2" in capsys.readouterr().out
    assert len(_video_ids(ann2)) == 2
    # Video i comes from SeedSequence([seed, i]): the bigger set starts with the old one.
    old, new = json.loads(first), json.loads(ann2.read_text())
    assert new["annotations"][: len(old["annotations"])] == old["annotations"]


def test_config_changes_names_the_fields(tmp_path):
    ann = ensure_dataset(_set(1), tmp_path)
    assert config_changes(ann, _set(1).config()) == []
    assert config_changes(ann, _set(3).config()) == ["videos: 1 -> 3"]
    ann.write_text(json.dumps({"videos": [], "annotations": []}))
    assert config_changes(ann, _set(1).config()) == ["no recorded configuration"]


@pytest.mark.slow
def test_a_cache_of_other_annotations_is_rebuilt(trained_tiny, tmp_path, capsys):
    data, cache_root = tmp_path / "data", tmp_path / "cache"
    cache = ensure_cache(trained_tiny, _set(1), data, cache_root, progress=False)
    assert cache.video_ids == _video_ids(data / "tiny_set" / "annotations.json")
    again = ensure_cache(trained_tiny, _set(1), data, cache_root, progress=False)
    assert again.root == cache.root and "rebuilding" not in capsys.readouterr().out
    bigger = ensure_cache(trained_tiny, _set(2), data, cache_root, progress=False)
    assert "rebuilding" in capsys.readouterr().out
    assert bigger.video_ids == _video_ids(data / "tiny_set" / "annotations.json")
    assert len(bigger.video_ids) == 2


@pytest.mark.slow
def test_a_build_in_progress_is_joined_and_unrecorded_files_are_rebuilt(trained_tiny, tmp_path,
                                                                        capsys):
    data, cache_root = tmp_path / "data", tmp_path / "cache"
    cache = ensure_cache(trained_tiny, _set(1), data, cache_root, progress=False)
    # Another process has recorded the annotations and is building: nothing is deleted.
    (cache.root / "meta.json").unlink()
    kept = next(cache.root.glob("video_*.pt"))
    before = kept.stat().st_mtime_ns
    joined = ensure_cache(trained_tiny, _set(1), data, cache_root, progress=False)
    assert "rebuilding" not in capsys.readouterr().out
    assert kept.stat().st_mtime_ns == before and joined.video_ids == cache.video_ids
    # Per-video files with no record of their annotations are never trusted.
    (cache.root / "dataset.sha256").unlink()
    kept.write_bytes(b"left over from an unknown dataset")
    rebuilt = ensure_cache(trained_tiny, _set(1), data, cache_root, progress=False)
    assert "without a record of their annotations: rebuilding" in capsys.readouterr().out
    assert len(rebuilt.video(rebuilt.video_ids[0])) > 0
    assert not list(rebuilt.root.glob("*.tmp"))


def test_every_set_keeps_real_media_and_people_to_its_role():
    """Training sets show only train media and train people; validation sets no training ones
    (a val person in a training set would make val_real_movers optimistic)."""
    from eval_sets import load_sets

    from spvis_model.data.real_media import MEDIA
    from spvis_model.data.real_movers import CUTOUTS

    sets = load_sets()
    assert {"train_s1_movers", "val_real_movers"} <= set(sets)
    for name, s in sets.items():
        cfg = s.config()
        people = {CUTOUTS[n].role for n in cfg.mover_cutouts} if cfg.movers[1] > 0 else set()
        media = {MEDIA[n].role for n in cfg.real_media} if cfg.uses_real_media else set()
        if s.role == "train":
            assert people <= {"train"} and media <= {"train"}, (name, people, media)
        else:
            assert "train" not in people, (name, people)
    assert sets["val_real_movers"].config().movers[1] > 0
    assert sets["train_s1_movers"].config().movers[1] > 0
