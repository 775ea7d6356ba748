"""Tests of the synthetic video generator (spvis_model.data.synthetic) on small videos."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from spvis_model import __version__
from spvis_model.config import ConfigError
from spvis_model.data.shapes import CLASS_NAMES, SHAPE_CLASSES, shape_alpha
from spvis_model.data.synthetic import (
    PRESETS,
    SyntheticConfig,
    SyntheticVideo,
    generate,
    generate_dataset,
    generate_video,
    main,
    preset,
)
from spvis_model.data.textures import BACKGROUNDS, PHOTOS, load_photo
from spvis_model.eval import evaluate, load_ground_truth

# Crowded, occluded, irregular: every dynamic the generator has, at 160x120.
CROWDED = SyntheticConfig(
    width=160, height=120, videos=3, frames=16, objects=(3, 4), crowding=0.9, occluders=(1, 1),
    occluder_size=0.35, fps=(8.0, 12.0), drop_prob=0.2, jitter=0.1, speed=(0.2, 0.5),
    turn=1.5, camera_pan=0.1, camera_zoom=0.1, leave_prob=0.3, noise=3.0, seed=5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synthetic")
    path = generate(CROWDED, out)
    return out, path, json.loads(path.read_text())


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("fps", (0.5, 10.0), "in [1.0, 30.0]"),
    ("fps", (20.0, 10.0), "min must be <= max"),
    ("objects", (3, 2), "min must be <= max"),
    ("objects", (1.5, 2), "pair of integers"),
    ("classes", ("disk", "blob"), "unknown ['blob']"),
    ("backgrounds", (), "non-empty"),
    ("width", 8, "in [32, 4096]"),
    ("jitter", 0.5, "in [0.0, 0.3]"),
    ("drop_prob", float("nan"), "in [0.0, 0.9]"),
    ("image_format", "gif", "must be one of"),
    ("frames", True, "must be an integer"),
])
def test_config_errors_name_field_and_value(field, value, words):
    with pytest.raises(ConfigError) as err:
        SyntheticConfig(**{field: value})
    assert str(err.value).startswith(f"{field} = {value!r}:")
    assert words in str(err.value)


def test_presets_are_valid_and_heldout_differs():
    configs = {name: preset(name) for name in PRESETS}
    for cfg in configs.values():
        cfg.validate()
    held = configs["heldout"]
    assert held.seed not in {c.seed for n, c in configs.items() if n != "heldout"}
    assert held.fps == (2.0, 5.0)
    assert held.frames > configs["medium"].frames
    assert held.occluders[0] >= 2
    with pytest.raises(ConfigError, match="preset = 'huge'"):
        preset("huge")


def test_photos_are_real_packaged_images_and_classes_use_their_own():
    textures = [c.texture for c in SHAPE_CLASSES]
    assert len(set(textures)) == len(textures), "each class needs its own texture photo"
    assert not set(textures) & set(BACKGROUNDS), "class textures must not be backgrounds"
    for name, photo in PHOTOS.items():
        img = load_photo(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and min(img.shape[:2]) >= 200, name
        assert img.std() > 10, f"{name} looks flat"
        assert photo.licence


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    out, path, _ = dataset
    again = generate(CROWDED, tmp_path / "again")
    assert again.read_bytes() == path.read_bytes()
    first = sorted((out / "JPEGImages").rglob("*.jpg"))
    assert len(first) == CROWDED.videos * CROWDED.frames
    for f in first[::7]:
        assert f.read_bytes() == (tmp_path / "again" / f.relative_to(out)).read_bytes()

    frames_a, stamps_a, tracks_a = generate_video(CROWDED, 1)
    frames_b, stamps_b, tracks_b = generate_video(CROWDED, 1)
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))
    assert stamps_a == stamps_b
    assert [t.rles for t in tracks_a] == [t.rles for t in tracks_b]

    other = dataclasses.replace(CROWDED, seed=6)
    frames_c, stamps_c, _ = generate_video(other, 1)
    assert stamps_c != stamps_a
    assert not np.array_equal(frames_c[0], frames_a[0])
    assert generate(other, tmp_path / "other").read_bytes() != path.read_bytes()


def test_json_loads_in_evaluator_and_rles_decode(dataset):
    out, path, data = dataset
    gt = load_ground_truth(path)
    assert len(gt.videos) == CROWDED.videos
    assert gt.categories == {i + 1: n for i, n in enumerate(CLASS_NAMES)}
    h, w = CROWDED.height, CROWDED.width
    for video in data["videos"]:
        assert video["length"] == len(video["file_names"]) == len(video["timestamps"])
        assert 8.0 <= video["fps"] <= 12.0
        img = cv2.imread(str(out / "JPEGImages" / video["file_names"][-1]))
        assert img.shape == (h, w, 3)
    assert data["annotations"]
    for ann in data["annotations"]:
        assert ann["iscrowd"] == 0
        n = len(ann["segmentations"])
        assert n == len(ann["bboxes"]) == len(ann["areas"]) == len(ann["occlusion"])
        assert any(s is not None for s in ann["segmentations"])
        for seg, box, area, occ in zip(ann["segmentations"], ann["bboxes"], ann["areas"],
                                       ann["occlusion"], strict=True):
            if seg is None:
                assert box is None and area is None
                continue
            assert isinstance(seg["counts"], str)
            m = _decode(seg)
            assert m.shape == (h, w)
            assert int(m.sum()) == area >= CROWDED.min_visible_area
            ys, xs = np.nonzero(m)
            assert box == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1,
                           int(ys.max() - ys.min()) + 1]
            assert occ is not None and 0.0 <= occ < 1.0


def test_visible_masks_of_a_frame_never_overlap(dataset):
    _, _, data = dataset
    for video in data["videos"]:
        anns = [a for a in data["annotations"] if a["video_id"] == video["id"]]
        for t in range(video["length"]):
            count = np.zeros((video["height"], video["width"]), np.int32)
            for a in anns:
                if a["segmentations"][t] is not None:
                    count += _decode(a["segmentations"][t])
            assert count.max() <= 1, f"video {video['id']} frame {t}: masks overlap"


def _full_frame(roi, roi_mask, shape):
    out = np.zeros(shape, bool)
    if roi is not None:
        y0, y1, x0, x1 = roi
        out[y0:y1, x0:x1] = roi_mask
    return out


def test_visible_masks_follow_depth_order_and_occlusion_is_the_hidden_share():
    shape = (CROWDED.height, CROWDED.width)
    overlaps = 0
    for index in range(2):
        video = SyntheticVideo(CROWDED, index)
        _, _, tracks = generate_video(CROWDED, index)
        by_id = {t.track_id: t for t in tracks}
        for t in range(CROWDED.frames):
            frame = video.render(t)
            full = [_full_frame(v.roi, v.full, shape) for v in frame.objects]
            vis = [_full_frame(v.roi, v.visible, shape) for v in frame.objects]
            for i, vi in enumerate(vis):
                assert not (vi & ~full[i]).any()
                in_front = np.zeros(shape, bool)
                for j in range(len(vis)):
                    if video.depths[j] > video.depths[i]:
                        in_front |= full[j]
                assert not (vi & in_front).any(), "a visible mask covers an object in front"
                hidden_by_objects = int((full[i] & in_front).sum())
                if hidden_by_objects and i + 1 in by_id and by_id[i + 1].in_frame[t]:
                    overlaps += 1
                    track = by_id[i + 1]
                    assert track.full_areas[t] == full[i].sum()
                    visible = vi.sum()
                    assert visible <= track.full_areas[t] - hidden_by_objects
                    assert track.occlusion[t] == pytest.approx(
                        1 - visible / track.full_areas[t], abs=1e-4)
                    assert track.occlusion[t] > 0
                    if track.rles[t] is not None:
                        assert track.areas[t] == visible < track.full_areas[t]
                        assert np.array_equal(track.mask(t), vi)
    assert overlaps >= 5, "the crowded config should produce occlusions"


def test_fully_hidden_object_has_no_mask_but_full_occlusion():
    hidden = 0
    for index in range(3):
        _, _, tracks = generate_video(CROWDED, index)
        for track in tracks:
            for t, rle in enumerate(track.rles):
                if rle is None and track.in_frame[t]:
                    hidden += 1
                    assert track.occlusion[t] > 1 - CROWDED.min_visible_area / \
                        track.full_areas[t]
                if not track.in_frame[t]:
                    assert rle is None and track.occlusion[t] is None
    assert hidden >= 1


def test_object_leaving_and_reentering_keeps_its_annotation(tmp_path):
    cfg = dataclasses.replace(CROWDED, videos=2, frames=30, objects=(3, 3), leave_prob=1.0,
                              speed=(0.8, 1.0), crowding=0.0, occluders=(0, 0), drop_prob=0.0)
    path = generate(cfg, tmp_path)
    data = json.loads(path.read_text())
    found = 0
    for index in range(cfg.videos):
        _, _, tracks = generate_video(cfg, index)
        anns = [a for a in data["annotations"] if a["video_id"] == index + 1]
        assert len(anns) == len(tracks)
        for track, ann in zip(tracks, anns, strict=True):
            assert ann["segmentations"] == track.rles
            assert ann["category_id"] == track.category_id
            inside = np.array(track.in_frame)
            seen = np.flatnonzero(inside)
            if seen.size and not inside[seen[0]:seen[-1] + 1].all():
                gap = seen[0] + int(np.argmin(inside[seen[0]:]))
                after = gap + int(np.argmax(inside[gap:]))
                assert ann["segmentations"][gap] is None
                assert ann["occlusion"][gap] is None
                assert any(s is not None for s in ann["segmentations"][:gap])
                assert any(s is not None for s in ann["segmentations"][after:])
                found += 1
    assert found >= 1, "no object left the frame and came back"


def test_timestamps_increase_and_show_dropped_frames():
    steady = dataclasses.replace(CROWDED, drop_prob=0.0, jitter=0.1, frames=40)
    video = SyntheticVideo(steady, 0)
    gaps = np.diff(video.stamps) * video.fps
    assert video.stamps[0] == 0.0
    assert gaps.min() >= 0.9 - 1e-4 and gaps.max() <= 1.1 + 1e-4
    assert not video.dropped.any()

    dropping = dataclasses.replace(CROWDED, drop_prob=0.3, jitter=0.1, frames=40)
    video = SyntheticVideo(dropping, 0)
    _, stamps, _ = generate_video(dropping, 0)
    assert stamps == video.stamps.tolist()
    gaps = np.diff(video.stamps) * video.fps
    assert (gaps > 0).all()
    dropped = video.dropped[1:]
    assert dropped.any() and not dropped.all()
    np.testing.assert_array_less(np.abs(gaps - (1 + dropped)), 0.1 + 1e-4)
    assert ((gaps > 1.5) == (dropped > 0)).all()

    long = SyntheticVideo(dataclasses.replace(CROWDED, width=64, height=48, frames=3000,
                                              fps=(2.0, 2.0)), 0)
    assert (np.diff(long.stamps) > 0).all() and long.stamps[-1] > 1400
    assert long.render(2999).image.shape == (48, 64, 3)


def test_dataset_json_carries_stamps_and_drops(dataset):
    _, _, data = dataset
    for i, video in enumerate(data["videos"]):
        planned = SyntheticVideo(CROWDED, i)
        assert video["timestamps"] == planned.stamps.tolist()
        assert video["dropped_frames"] == int(planned.dropped.sum())
        assert video["fps"] == planned.fps


def test_every_class_appears_in_a_few_videos(dataset):
    _, _, data = dataset
    assert {a["category_id"] for a in data["annotations"]} == set(range(1, len(CLASS_NAMES) + 1))
    assert len(CLASS_NAMES) >= 5


def _shape_features(alpha: np.ndarray) -> np.ndarray:
    """Rotation- and scale-invariant: solidity (area / convex hull area), fill of the smallest
    enclosing circle, number of holes."""
    m = (alpha >= 128).astype(np.uint8)
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    outer = max((c for c, h in zip(contours, hierarchy[0], strict=True) if h[3] < 0),
                key=cv2.contourArea)
    holes = sum(1 for h in hierarchy[0] if h[3] >= 0)
    area = float(m.sum())
    solidity = area / cv2.contourArea(cv2.convexHull(outer))
    _, radius = cv2.minEnclosingCircle(outer)
    return np.array([solidity, area / (np.pi * radius**2), holes])


def test_shapes_are_distinguishable_under_rotation_and_scale():
    """Nearest neighbour on (solidity, circle fill, holes) of the class alphas recognises
    rotated, rescaled copies of every shape."""
    refs = {name: _shape_features(shape_alpha(name, 96)) for name in CLASS_NAMES}
    rng = np.random.default_rng(0)
    for name in CLASS_NAMES:
        for _ in range(5):
            size = int(rng.integers(28, 80))
            alpha = shape_alpha(name, size)
            rot = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2),
                                          float(rng.uniform(0, 360)), 1.0)
            feat = _shape_features(cv2.warpAffine(alpha, rot, (size, size),
                                                  flags=cv2.INTER_LINEAR))
            best = min(refs, key=lambda n: float(np.abs(refs[n] - feat).sum()))
            assert best == name, (name, size, feat, refs)


def test_class_textures_are_distinguishable_by_colour_statistics():
    """Per instance and frame: mean RGB and luminance std of the visible pixels of the rendered
    frame. Class centroids from one set of videos classify instances of the other videos."""
    cfg = dataclasses.replace(CROWDED, videos=12, frames=4, objects=(3, 4), occluders=(0, 0),
                              crowding=0.2)

    def features(indices):
        rows, labels = [], []
        for index in indices:
            frames, _, tracks = generate_video(cfg, index)
            for track in tracks:
                for t, frame in enumerate(frames):
                    m = track.mask(t)
                    if m is None or m.sum() < 150:
                        continue
                    # Leave out the anti-aliased rim, where the background shows through.
                    core = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
                    px = frame[core].astype(np.float64)
                    lum = px.mean(axis=1)
                    rows.append([*px.mean(axis=0), lum.std()])
                    labels.append(track.category_id)
        return np.array(rows), np.array(labels)

    train_x, train_y = features(range(0, 12, 2))
    test_x, test_y = features(range(1, 12, 2))
    classes = sorted(set(train_y))
    assert len(classes) == len(CLASS_NAMES)
    centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in classes])
    # Each feature in units of its pooled within-class spread (a diagonal Gaussian classifier).
    scale = np.sqrt(np.mean([train_x[train_y == c].var(axis=0) for c in classes], axis=0))
    dist = np.linalg.norm((test_x[:, None] - centroids[None]) / scale, axis=2)
    predicted = np.array(classes)[dist.argmin(axis=1)]
    accuracy = float((predicted == test_y).mean())
    assert len(test_y) >= 30
    assert accuracy >= 0.95, f"colour/texture nearest-centroid accuracy {accuracy:.2f}"


def test_ground_truth_scored_against_itself_gives_ap_one(dataset):
    _, path, data = dataset
    predictions = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
                    "segmentations": a["segmentations"]} for a in data["annotations"]]
    metrics = evaluate(path, predictions)
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["AR10"] == pytest.approx(1.0)
    # Control: the same masks with the wrong classes score nothing.
    shifted = [dict(p, category_id=p["category_id"] % len(CLASS_NAMES) + 1)
               for p in predictions]
    assert evaluate(path, shifted)["AP"] < 0.5


def test_camera_pan_and_zoom_move_the_whole_scene():
    still = dataclasses.replace(CROWDED, objects=(0, 0), occluders=(0, 0), noise=0.0,
                                camera_pan=0.0, camera_zoom=0.0)
    frames, _, tracks = generate_video(still, 0)
    assert tracks == []
    assert all(np.array_equal(frames[0], f) for f in frames)

    moving = dataclasses.replace(still, camera_pan=0.3)
    frames, _, _ = generate_video(moving, 0)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64) for f in frames]
    (dx, dy), _ = cv2.phaseCorrelate(grey[0], grey[-1])
    assert math.hypot(dx, dy) > 1.0, "the background did not move with the camera"


def test_cli_writes_dataset_and_rejects_bad_values(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["--out", str(out), "--preset", "easy", "--videos", "2", "--frames", "5",
                 "--size", "96x64", "--seed", "3", "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "2 videos, 10 frames" in text and "mean occlusion" in text
    assert str(out / "annotations.json") in text
    data = json.loads((out / "annotations.json").read_text())
    assert data["videos"][0]["width"] == 96 and data["videos"][0]["height"] == 64
    assert (out / "JPEGImages" / data["videos"][1]["file_names"][4]).is_file()

    assert main(["--out", str(out), "--preset", "easy", "--frames", "0"]) == 2
    assert "frames = 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--size", "96by64"])
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["--out", str(blocker / "x"), "--preset", "easy", "--videos", "1",
                 "--frames", "1", "--no-progress"]) == 1
    assert "spvis generate: error:" in capsys.readouterr().err


# The presets that existed before the real-footage options, at small sizes (easy as it is).
# Hashes computed with the generator of commit aee32e3, before those options were added: sha256
# of annotations.json (with info.version replaced by "X"), of every frame's RGB bytes
# (generate_video, all videos in order) and of every JPEG file (sorted paths). They pin the
# bytes that held-out measurements depend on. They also depend on the OpenCV build (resize,
# warpAffine, libjpeg): after an OpenCV upgrade, recompute them from the generator as it was
# and check that nothing else changed. Recomputed for OpenCV 5.1.0 (requirements.txt pins it):
# the annotations hash is unchanged, the rendered frames differ from OpenCV 5.0.0's by at most
# one grey level in 0.1% of the values (heldout), and the JPEG bytes differ with them.
OLD_PRESETS = {"easy": {}, "medium": dict(videos=2, frames=8, width=160, height=120),
               "hard": dict(videos=2, frames=8, width=160, height=120),
               "heldout": dict(videos=2, frames=10, width=160, height=120)}
OLD_PRESET_HASHES = {
    "easy": ("a373ecf6dcf9484383d62bd88ab294fa29b78647103fb8592b2e96c1d80deead",
             "96d5abed139c42a687e5b5f3da63e509227884a6f1d781f459594ff9dbadae4f",
             "2ef58c5223e66e95a51de26d4a19f4fc546b7ffff262771a79f880724f82ac81"),
    "medium": ("2642f32a9ad63210a1b9805c8618e0c7cc93f67f2b4675e4946358cfa4465648",
               "3ef4f32e3d3fb4037bf8607fb2ac5bbec408ddda64e24e3b345a35560eb45b42",
               "9891fbbfe11c3e2e4c65d8ce74b0358880533b282e53552216f55b0f0c87b8f8"),
    "hard": ("840dbfd0def16bc984031c929ad9be5404f340106e269e046df03344b691d318",
             "7e3a0c754f2ac58a528e6d256fea0d0133945dade32c478d82527f7c79949b21",
             "0b7771d3f3ef6b3be2bd0b4322ad2fd91ad8e738603055f0699165f3ca4d646d"),
    "heldout": ("dfd234437ae33eae04c4670790330a83fbf9af4e9ea75f5c221935319127f9a1",
                "29833adbf3e43594baaab49737427516ee024399cc3ce91bd43f6b2ab2111d97",
                "f031a0734d115594c12a39f86d5c3312cddcd474e38833e9cd85058801374633"),
}


@pytest.mark.parametrize("name", list(OLD_PRESETS))
def test_old_presets_write_the_same_bytes_as_before_real_footage(name, tmp_path):
    cfg = dataclasses.replace(preset(name), **OLD_PRESETS[name])
    assert not cfg.uses_real_media
    path = generate(cfg, tmp_path)
    text = path.read_bytes().replace(f'"version":"{__version__}"'.encode(), b'"version":"X"')
    jpegs = b"".join(p.read_bytes() for p in sorted(Path(tmp_path, "JPEGImages").rglob("*.jpg")))
    rgb = hashlib.sha256()
    for index in range(cfg.videos):
        for frame in generate_video(cfg, index)[0]:
            rgb.update(frame.tobytes())
    assert (hashlib.sha256(text).hexdigest(), rgb.hexdigest(),
            hashlib.sha256(jpegs).hexdigest()) == OLD_PRESET_HASHES[name]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_parallel_jobs_write_the_same_bytes_as_one_process(tmp_path):
    """`jobs` renders videos in worker processes; annotations.json (ids in video order) and
    every frame are byte-identical to one process's, real-footage videos included."""
    cfg = dataclasses.replace(preset("real_mix"), videos=5, frames=6, seed=5)
    one = generate_dataset(cfg, tmp_path / "one")
    three = generate_dataset(cfg, tmp_path / "three", jobs=3)
    assert one.real_backgrounds >= 2 and one.instances > 0  # the real-footage path ran
    assert (three.real_backgrounds, three.empty_videos, three.instances) == \
           (one.real_backgrounds, one.empty_videos, one.instances)
    assert _tree_bytes(tmp_path / "one") == _tree_bytes(tmp_path / "three")
    with pytest.raises(ConfigError, match=r"jobs = 0"):
        generate_dataset(cfg, tmp_path / "bad", jobs=0)


def test_class_pool_puts_same_class_objects_together_and_leaves_defaults_alone(tmp_path):
    """class_pool n: each video's objects come from n classes (same-class crowds); the default
    (0) neither records the field nor changes the random stream of the other videos."""
    base = dataclasses.replace(CROWDED, videos=4, frames=4, objects=(5, 5))
    pooled = dataclasses.replace(base, class_pool=2)
    data = json.loads(generate(pooled, tmp_path / "pooled").read_text())
    assert data["info"]["config"]["class_pool"] == 2
    for video in data["videos"]:
        classes = {a["category_id"] for a in data["annotations"] if a["video_id"] == video["id"]}
        assert 1 <= len(classes) <= 2
    plain = json.loads(generate(base, tmp_path / "plain").read_text())
    assert "class_pool" not in plain["info"]["config"]
    assert max(len({a["category_id"] for a in plain["annotations"] if a["video_id"] == v["id"]})
               for v in plain["videos"]) > 2
    never = json.loads(generate(dataclasses.replace(pooled, class_pool_prob=0.0),
                                tmp_path / "never").read_text())
    assert never["info"]["config"]["class_pool_prob"] == 0.0
    assert max(len({a["category_id"] for a in never["annotations"] if a["video_id"] == v["id"]})
               for v in never["videos"]) > 2
    with pytest.raises(ConfigError, match=r"^class_pool = 7:"):
        SyntheticConfig(class_pool=7)
    with pytest.raises(ConfigError, match=r"^class_pool_prob = 1.5:"):
        SyntheticConfig(class_pool=2, class_pool_prob=1.5)
