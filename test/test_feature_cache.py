"""The segmenter-output cache and everything that runs on it: features equal the live ones,
stale or corrupt caches are refused, stage 2 trains on it (also through `spvis train`), and the
ablation harness scores tracker variants on it."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from spvis_model.ablation import (
    ABLATION,
    folder_name,
    make_variant,
    published_per_frame,
    run_variants,
    score,
    variant_results,
)
from spvis_model.eval.runner import read_frame, video_stamps
from spvis_model.feature_cache import CacheError, FeatureCache, build_cache, segmenter_digest
from spvis_model.training.cached_clips import CachedClipDataset
from spvis_model.training.tracker_task import TrackerTask


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory):
    from spvis_model.data.synthetic import generate, preset

    root = tmp_path_factory.mktemp("cache_data")
    cfg = dataclasses.replace(preset("easy"), width=96, height=64, videos=2, frames=6,
                              classes=("disk", "square"), objects=(2, 2), seed=11)
    return generate(cfg, root)


@pytest.fixture(scope="module")
def tiny_cache(trained_tiny, tiny_videos, tmp_path_factory):
    return build_cache(trained_tiny, tiny_videos, tmp_path_factory.mktemp("cache"),
                       progress=False)


def test_cached_features_equal_the_live_ones(trained_tiny, tiny_videos, tiny_cache):
    from spvis_model.eval.data import load_ground_truth

    model = trained_tiny.eval()
    gt = load_ground_truth(tiny_videos)
    vid = tiny_cache.video_ids[0]
    video = tiny_cache.video(vid)
    assert len(video) == 6
    assert video.stamps.tolist() == pytest.approx(video_stamps(gt.videos[vid]))
    heads = model.segmenter.decoder
    for t, name in enumerate(gt.videos[vid].file_names):
        frame = read_frame(tiny_videos.parent / "JPEGImages", vid, t, name)
        with torch.inference_mode():
            images, geom = model.preprocess(frame)
            live = model.frame_features(model.segment(images), 0, geom)
        cached = video.features(t, heads)
        assert geom == video.geometry and cached.valid_hw == live.valid_hw
        assert torch.equal(cached.query_embed, live.query_embed)
        assert torch.equal(cached.pred_logits, live.pred_logits)
        # float16 storage of the mask features: mask logits agree to a small fraction of
        # their range.
        scale = float(live.pred_masks.abs().max())
        assert float((cached.pred_masks - live.pred_masks).abs().max()) < 2e-3 * scale
        assert torch.allclose(cached.memory, live.memory, rtol=1e-3, atol=1e-3)


def test_stale_or_corrupt_cache_is_refused(trained_tiny, tiny_videos, tiny_cache, tmp_path):
    other = dataclasses.replace(trained_tiny.cfg)
    from spvis_model.model import SPVIS

    torch.manual_seed(123)
    stranger = SPVIS(other)
    assert segmenter_digest(stranger) != segmenter_digest(trained_tiny)
    with pytest.raises(CacheError, match="was built with segmenter"):
        tiny_cache.check_model(stranger)
    with pytest.raises(CacheError, match="another segmenter"):
        build_cache(stranger, tiny_videos, tiny_cache.root, progress=False)
    (tmp_path / "meta.json").write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(CacheError, match="format 'something-else'"):
        FeatureCache(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text((tiny_cache.root / "meta.json").read_text())
    (broken / f"video_{tiny_cache.video_ids[0]}.pt").write_bytes(b"not a torch file")
    with pytest.raises(CacheError, match="not readable"):
        FeatureCache(broken).video(tiny_cache.video_ids[0])


class _Payload:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _cache_with_file(tiny_cache, folder, content) -> tuple[FeatureCache, object]:
    folder.mkdir()
    (folder / "meta.json").write_text((tiny_cache.root / "meta.json").read_text())
    vid = tiny_cache.video_ids[0]
    torch.save(content, folder / f"video_{vid}.pt")
    return FeatureCache(folder), folder / f"video_{vid}.pt"


def test_malicious_cache_file_is_one_line_without_torchs_retry_advice(tiny_cache, tmp_path):
    marker = tmp_path / "pwned"
    cache, path = _cache_with_file(tiny_cache, tmp_path / "evil",
                                   {"x": _Payload(f"touch {marker}")})
    with pytest.raises(CacheError) as err:
        cache.video(tiny_cache.video_ids[0])
    text = str(err.value)
    assert text.startswith(f"feature cache file {path}: not readable (refused to load global "
                           "posix.system"), text
    assert "\n" not in text and "weights_only" not in text, text
    assert not marker.exists()


def _edit(key: str, value: object):
    def edit(data: dict) -> dict:
        data = dict(data)
        if value is None:
            del data[key]
        else:
            data[key] = value
        return data
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: {}, r"missing key 'stamps'"),
    (lambda d: [1, 2], r"holds a list, expected a dict of tensors"),
    (_edit("memory", None), r"missing key 'memory'"),
    (_edit("geometry", [1, 2, 3, 4, 5, 6]), r"key 'geometry' holds a list, expected a tensor"),
    (_edit("geometry", torch.zeros(4, dtype=torch.int64)),
     r"key 'geometry' has shape \(4,\) .* expected 6 integers"),
    (_edit("stamps", torch.zeros(2, dtype=torch.float64)),
     r"per-frame keys disagree on the number of frames .*'stamps': 2"),
])
def test_cache_file_of_the_wrong_structure_names_the_key(tiny_cache, tmp_path, edit, message):
    vid = tiny_cache.video_ids[0]
    good = torch.load(tiny_cache.root / f"video_{vid}.pt", weights_only=True)
    cache, path = _cache_with_file(tiny_cache, tmp_path / "bad", edit(good))
    with pytest.raises(CacheError, match=rf"^feature cache file {path}: {message}"):
        cache.video(vid)


def test_stage2_loss_on_cached_clips_matches_the_live_loss(trained_tiny, tiny_videos,
                                                          tiny_cache):
    from spvis_model.data.ytvis import YTVISDataset

    videos = YTVISDataset(tiny_videos)
    data = CachedClipDataset(tiny_cache, videos, clip_len=4, stride_min=1, stride_max=1,
                             seed=3, length=4)
    clip = data[0]
    assert len(clip.cached) == 4 and len(clip.labels) == 4
    # The live path resizes nothing here (96x64 fits max_size 96), so the same clip through
    # the segmenter must give (almost) the same loss as the cached clip.
    live = videos.load_clip(clip.video_id, clip.frame_indices)
    task = TrackerTask(drop_prob=0.0, disappear_prob=0.0, noisy_match_prob=0.0)
    model = trained_tiny.eval()
    cached_loss, _ = task.loss(model, [clip], torch.Generator().manual_seed(0))
    live_loss, _ = task.loss(model, [live], torch.Generator().manual_seed(0))
    assert float(cached_loss) == pytest.approx(float(live_loss), rel=2e-3)
    # Clips from another segmenter's cache are refused.
    clip.segmenter_digest = "0" * 64
    with pytest.raises(CacheError, match="feature cache was built with segmenter"):
        task.loss(model, [clip], torch.Generator().manual_seed(0))


def test_cli_stage2_on_a_feature_cache(trained_tiny, tiny_videos, tmp_path, capsys):
    from spvis_model.cli import main
    from spvis_model.model import SPVIS

    init = tmp_path / "stage1.pt"
    trained_tiny.save(init)
    (tmp_path / "train.yaml").write_text(
        "stage: 2\nsteps: 3\nbatch_size: 1\nclip_len: 4\nlr: 1e-3\nwarmup_steps: 1\n"
        "checkpoint_every: 3\nlog_every: 1\nnum_workers: 0\ndevice: cpu\n"
        "data: {stride_min: 1, stride_max: 2}\n")
    args = ["train", "--config", str(tmp_path / "train.yaml"), "--data", str(tiny_videos),
            "--init", str(init), "--out", str(tmp_path / "run"), "--no-progress",
            "--feature-cache", str(tmp_path / "cache")]
    assert main(args) == 0
    assert "caching the segmenter's outputs" in capsys.readouterr().err
    trained = SPVIS.from_checkpoint(tmp_path / "run" / "model.pt")
    before, after = trained_tiny.state_dict(), trained.state_dict()
    assert all(torch.equal(before[k].float(), after[k].float()) for k in before
               if k.startswith("segmenter."))
    assert any(not torch.equal(before[k].float(), after[k].float()) for k in before
               if k.startswith("tracker."))
    # Stage 1 cannot use a feature cache.
    (tmp_path / "s1.yaml").write_text("stage: 1\nsteps: 1\nwarmup_steps: 0\ndevice: cpu\n")
    assert main(["train", "--config", str(tmp_path / "s1.yaml"), "--data", str(tiny_videos),
                 "--out", str(tmp_path / "run1"), "--feature-cache",
                 str(tmp_path / "cache")]) == 2
    assert "--feature-cache is for stage 2" in capsys.readouterr().err


def test_ablation_rows_on_the_cache(trained_tiny, tiny_videos, tiny_cache, tmp_path):
    rows = run_variants(trained_tiny, tiny_cache, tiny_videos, ABLATION, progress=False,
                        save_dir=tmp_path / "res", save_name="tiny.json")
    assert list(rows) == list(ABLATION)
    # Each row's results list is saved where bench/compare_results.py reads it, and scores
    # to the row's numbers.
    saved = tmp_path / "res" / "PGT_as_shipped_config_defaults" / "tiny.json"
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == sorted(
        folder_name(n) for n in ABLATION)
    again = score(tiny_videos, json.loads(saved.read_text()))
    assert again["AP"] == rows["PGT as shipped (config defaults)"]["AP"]
    for metrics in rows.values():
        assert {"AP", "AP50", "HOTA", "AssA", "IDF1", "IDSW"} <= set(metrics)
        assert 0.0 <= metrics["HOTA"] <= 1.0
    # The variants really differ: MinVIS keeps one track per query, PGT only what it finds.
    variants = [make_variant(trained_tiny, n, ABLATION[n])
                for n in ("MinVIS", "PGT as shipped (config defaults)")]
    assert variants[0].tracker.cfg.max_tracks >= trained_tiny.cfg.segmenter.num_queries
    results = variant_results(trained_tiny, tiny_cache, tiny_videos, variants, progress=False)
    assert results["MinVIS"] != results["PGT as shipped (config defaults)"]
    counts = published_per_frame(trained_tiny, tiny_cache, variants, 0.0, progress=False)
    pgt = counts["PGT as shipped (config defaults)"]
    assert sorted(pgt) == sorted(tiny_cache.video_ids) and all(len(c) == 6 for c in pgt.values())
    # Both objects of these easy clips are found on most frames.
    assert sum(map(sum, pgt.values())) >= 12
    none = published_per_frame(trained_tiny, tiny_cache, variants[1:], 1.01, progress=False)
    assert sum(map(sum, none["PGT as shipped (config defaults)"].values())) == 0
    # The harness gives what the model's own online run gives for the full tracker.
    from spvis_model.eval.runner import run_model_on_dataset

    tmp = tiny_cache.root.parent / "direct.pt"
    trained_tiny.save(tmp)
    direct = run_model_on_dataset(tmp, tiny_videos, progress=False)
    shipped = results["PGT as shipped (config defaults)"]
    assert [r["video_id"] for r in direct] == [r["video_id"] for r in shipped]
    assert np.allclose([r["score"] for r in direct], [r["score"] for r in shipped], atol=1e-3)


def test_two_builders_of_one_cache_do_not_collide(trained_tiny, tiny_videos, tmp_path,
                                                   monkeypatch):
    """Two evaluations started together build the same cache: one finishes every file while
    the other has written its first file and not yet renamed it into place. Both end with the
    same, loadable cache."""
    import spvis_model.feature_cache as fc

    real_save = torch.save
    raced = []

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if not raced:  # the other builder runs to the end right now
            raced.append(str(getattr(f, "name", f)))
            fc.build_cache(trained_tiny, tiny_videos, tmp_path, progress=False)

    monkeypatch.setattr(fc.torch, "save", save)
    cache = fc.build_cache(trained_tiny, tiny_videos, tmp_path, progress=False)
    monkeypatch.undo()
    assert raced and "video_1.pt" in raced[0]
    assert len(cache.video(cache.video_ids[0])) == 6
    assert not list(tmp_path.glob("*.tmp"))
    assert json.loads((tmp_path / "meta.json").read_text())["video_ids"] == cache.video_ids


def test_refined_variant_reads_the_frames_again(trained_tiny, tiny_videos, tiny_cache,
                                                tmp_path):
    """A variant with `mask_refine: guided` on the cache reads each video's frames from the
    dataset the cache was built from and publishes the masks `step` publishes live; a cache
    whose frames are gone says so, naming the cache."""
    from spvis_model.eval.data import load_ground_truth

    model = trained_tiny.eval()
    vid = tiny_cache.video_ids[0]
    gt = load_ground_truth(tiny_videos)
    frames = tiny_cache.frames(vid)
    assert len(frames) == len(gt.videos[vid].file_names)
    assert np.array_equal(frames[0], read_frame(tiny_videos.parent / "JPEGImages", vid, 0,
                                                gt.videos[vid].file_names[0]))
    refined = make_variant(model, "refined", {"mask_refine": "guided"})
    plain = make_variant(model, "plain", {})
    results = variant_results(model, tiny_cache, tiny_videos, [plain, refined], progress=False)
    assert results["refined"], "no published tracks to compare"
    assert [r["score"] for r in results["refined"]] == [r["score"] for r in results["plain"]]
    assert [r["segmentations"] for r in results["refined"]] != \
        [r["segmentations"] for r in results["plain"]]

    moved = tmp_path / "moved"
    moved.mkdir()
    for f in tiny_cache.root.iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    meta = json.loads((moved / "meta.json").read_text())
    meta["dataset"] = str(tmp_path / "gone" / "annotations.json")
    meta.pop("images", None)
    (moved / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="moved"):
        FeatureCache(moved).frames(vid)
