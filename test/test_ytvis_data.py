"""YTVISDataset, ClipSampler / ClipDataset and the clip transforms.

Data: a tiny dataset from the synthetic generator (easy preset) and hand-made datasets of flat
coloured rectangles on grey (PNG, so colours are exact) whose JSON spells every segmentation
format out by hand.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch.nn import functional as F
from torch.utils.data import DataLoader

from spvis_model.config import ConfigError
from spvis_model.data.sampler import (
    ClipDataset,
    ClipSampler,
    ClipSpec,
    clip_frame_indices,
    collate_clips,
)
from spvis_model.data.synthetic import generate, generate_video, preset
from spvis_model.data.transforms import ClipAugment, ClipResize
from spvis_model.data.ytvis import DEFAULT_FPS, Clip, YTVISDataset

H, W = 48, 64
BACKGROUND = (128, 128, 128)
COLOURS = {11: (230, 30, 30), 12: (30, 200, 40), 13: (40, 60, 230)}  # annotation id -> RGB


# --- helpers ------------------------------------------------------------------------------------
def _rle_str(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])],
            "counts": rle["counts"].decode("ascii")}


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE by hand: column-major runs, starting with a (maybe empty) 0 run."""
    flat = mask.astype(bool).flatten(order="F")
    counts, current, run = [], False, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = bool(v), 1
    counts.append(run)
    return counts


def _rect(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _boxes_scene(length: int = 6) -> tuple[list[np.ndarray], dict[int, list[np.ndarray | None]]]:
    """Frames with a red box moving right (id 11), a static green box (12) and a blue box
    (13) present only in frames 2..3; visible masks (None where absent)."""
    frames, masks = [], {11: [], 12: [], 13: []}
    for t in range(length):
        img = np.empty((H, W, 3), np.uint8)
        img[:] = BACKGROUND
        boxes = {11: (6, 20, 2 + 4 * t, 16 + 4 * t), 12: (26, 44, 40, 60)}
        if t in (2, 3):
            boxes[13] = (30, 42, 4, 22)
        for aid in (11, 12, 13):
            if aid in boxes:
                y0, y1, x0, x1 = boxes[aid]
                img[y0:y1, x0:x1] = COLOURS[aid]
                masks[aid].append(_rect(y0, y1, x0, x1))
            else:
                masks[aid].append(None)
        frames.append(img)
    return frames, masks


def _boxes_dataset(root: Path, length: int = 6) -> Path:
    """Write the boxes scene as video 7 ("boxes") with PNG frames; returns the JSON path."""
    frames, masks = _boxes_scene(length)
    names = []
    for t, img in enumerate(frames):
        name = f"boxes/{t:05d}.png"
        _write_png(root / "JPEGImages" / name, img)
        names.append(name)
    anns = [{"id": aid, "video_id": 7, "category_id": cid, "iscrowd": 0,
             "segmentations": [None if m is None else _rle_str(m) for m in masks[aid]]}
            for aid, cid in ((11, 5), (12, 2), (13, 9))]
    data = {"videos": [{"id": 7, "name": "boxes", "width": W, "height": H, "length": length,
                        "file_names": names}],
            "annotations": anns,
            "categories": [{"id": 9, "name": "blue"}, {"id": 2, "name": "green"},
                           {"id": 5, "name": "red"}]}
    path = root / "boxes.json"
    path.write_text(json.dumps(data))
    return path


def _write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def _eroded(masks: torch.Tensor, r: int = 1) -> torch.Tensor:
    """Masks (n, H, W) bool shrunk by r pixels."""
    if masks.shape[0] == 0:
        return masks
    inv = (~masks).float()[:, None]
    return ~(F.max_pool2d(inv, 2 * r + 1, stride=1, padding=r)[:, 0] > 0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    cfg = dataclasses.replace(preset("easy"), width=64, height=48, videos=3, frames=12)
    root = tmp_path_factory.mktemp("synthetic")
    return cfg, generate(cfg, root)


@pytest.fixture()
def boxes(tmp_path: Path) -> YTVISDataset:
    return YTVISDataset(_boxes_dataset(tmp_path))


# --- reading ------------------------------------------------------------------------------------
def test_reads_generator_output(synthetic):
    cfg, path = synthetic
    ds = YTVISDataset(path)
    raw = json.loads(path.read_text())
    assert ds.image_root == path.parent / "JPEGImages"
    assert len(ds) == len(ds.videos) == 3
    assert ds.categories == [(c["id"], c["name"]) for c in raw["categories"]]
    assert ds.class_names == list(cfg.classes)
    assert ds.category_index == {c["id"]: k for k, c in enumerate(raw["categories"])}
    for i, video in enumerate(ds.videos):
        entry = raw["videos"][i]
        assert video.id == entry["id"] and video.name == entry["name"]
        assert (video.height, video.width, video.length) == (48, 64, 12)
        np.testing.assert_array_equal(video.stamps, entry["timestamps"])
        assert video.fps == entry["fps"]
    frames, stamps, tracks = generate_video(cfg, 1)
    video = ds.videos[1]
    clip = ds.load_clip(video.id, [0, 5, 11])
    assert clip.frames.shape == (3, 3, 48, 64) and clip.frames.dtype == torch.uint8
    np.testing.assert_array_equal(clip.stamps.numpy(), np.asarray(stamps)[[0, 5, 11]])
    for k, t in enumerate((0, 5, 11)):
        # RGB order, not BGR: the JPEG is close to the in-memory frame
        diff = np.abs(clip.frames[k].permute(1, 2, 0).numpy().astype(int) - frames[t].astype(int))
        assert diff.mean() < 4.0
        ann = [a for a in raw["annotations"] if a["video_id"] == video.id]
        expected = [(a["id"], ds.category_index[a["category_id"]], tracks[j].mask(t))
                    for j, a in enumerate(ann) if tracks[j].mask(t) is not None]
        assert clip.track_ids[k].tolist() == [e[0] for e in expected]
        assert clip.labels[k].tolist() == [e[1] for e in expected]
        for m, (_, _, gt) in zip(clip.masks[k], expected, strict=True):
            np.testing.assert_array_equal(m.numpy(), gt)
    assert sum(m.shape[0] for m in clip.masks) > 0


def test_segmentation_formats_decode_to_the_same_mask(tmp_path: Path):
    box = _rect(3, 9, 2, 7)  # rows 3..8, columns 2..6
    other = _rect(10, 20, 30, 50)
    counts = _uncompressed_counts(box)
    assert sum(counts) == H * W
    img = np.zeros((H, W, 3), np.uint8)
    for t in range(5):
        _write_png(tmp_path / "JPEGImages" / f"v/{t}.png", img)
    segs = [_rle_str(box),                                  # compressed, str counts
            {"size": [H, W], "counts": counts},             # uncompressed
            [[2, 3, 7, 3, 7, 9, 2, 9]],                      # polygon (half-open box)
            None,                                           # absent
            [[30, 10, 50, 10, 50, 20], [30, 10, 50, 20, 30, 20]]]  # two triangles = one box
    data = {"videos": [{"id": 1, "width": W, "height": H, "length": 5,
                        "file_names": [f"v/{t}.png" for t in range(5)]}],
            "annotations": [{"id": 4, "video_id": 1, "category_id": 3, "iscrowd": 0,
                             "segmentations": segs}],
            "categories": [{"id": 3, "name": "thing"}]}
    ds = YTVISDataset(_write_json(tmp_path / "a.json", data))
    assert ds.videos[0].name == "v"
    expected = [box, box, box, None, other]
    for t, exp in enumerate(expected):
        labels, masks, ids = ds.frame_targets(1, t)
        if exp is None:
            assert masks.shape == (0, H, W) and labels.numel() == 0 and ids.numel() == 0
        else:
            assert labels.tolist() == [0] and ids.tolist() == [4]
            np.testing.assert_array_equal(masks[0].numpy(), exp, err_msg=f"frame {t}")
    # bytes counts (only possible in a parsed dict) decode too
    rle = mask_utils.encode(np.asfortranarray(box.astype(np.uint8)))
    data["annotations"][0]["segmentations"][0] = {"size": [H, W], "counts": rle["counts"]}
    assert isinstance(rle["counts"], bytes)
    ds2 = YTVISDataset(data, image_root=tmp_path / "JPEGImages")
    np.testing.assert_array_equal(ds2.frame_targets(1, 0)[1][0].numpy(), box)


def test_default_stamps_crowd_and_missing_annotations(tmp_path: Path):
    vid = {"id": 2, "width": W, "height": H, "length": 4, "file_names": [f"a/{t}.jpg"
                                                                         for t in range(4)]}
    ds = YTVISDataset(_write_json(tmp_path / "test.json",
                                  {"videos": [vid], "annotations": None,
                                   "categories": [{"id": 1, "name": "x"}]}))
    np.testing.assert_allclose(ds.videos[0].stamps, np.arange(4) / DEFAULT_FPS)
    assert DEFAULT_FPS == 6.0 and ds.tracks(2) == []
    with_fps = {**vid, "fps": 2.0}
    crowd = {"id": 1, "video_id": 2, "category_id": 1, "iscrowd": 1,
             "segmentations": [_rle_str(_rect(0, 5, 0, 5))] * 4}
    ds = YTVISDataset(_write_json(tmp_path / "b.json",
                                  {"videos": [with_fps], "annotations": [crowd],
                                   "categories": [{"id": 1, "name": "x"}]}))
    np.testing.assert_allclose(ds.videos[0].stamps, [0.0, 0.5, 1.0, 1.5])
    assert len(ds.tracks(2)) == 1 and ds.tracks(2)[0].iscrowd
    assert ds.frame_targets(2, 0)[1].shape == (0, H, W)  # crowd: not a target
    with pytest.raises(ValueError, match="no videos to sample"):
        ClipSampler(ds, 2)


# --- malformed input ----------------------------------------------------------------------------
def _one_video(segs: list, category_id: int = 1, length: int = 3) -> dict:
    return {"videos": [{"id": 5, "width": W, "height": H, "length": length,
                        "file_names": [f"v/{t}.jpg" for t in range(length)]}],
            "annotations": [{"id": 8, "video_id": 5, "category_id": category_id, "iscrowd": 0,
                             "segmentations": segs}],
            "categories": [{"id": 1, "name": "x"}]}


def test_malformed_inputs_name_video_and_frame(tmp_path: Path):
    good = _rle_str(_rect(0, 4, 0, 4))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"videos": [')
    with pytest.raises(ValueError, match=r"bad\.json.*not valid JSON"):
        YTVISDataset(bad_json)
    with pytest.raises(ValueError, match=r"video_id=5.*segmentations has 2 frames.*has 3"):
        YTVISDataset(_write_json(tmp_path / "a.json", _one_video([good, None])))
    wrong_size = _rle_str(_rect(0, 4, 0, 4, h=H + 1))
    with pytest.raises(ValueError, match=r"id=8, video_id=5\)\.segmentations\[2\]\.size"):
        YTVISDataset(_write_json(tmp_path / "b.json", _one_video([good, None, wrong_size])))
    short_counts = {"size": [H, W], "counts": [5, 10]}
    with pytest.raises(ValueError, match=r"video_id=5\)\.segmentations\[1\].*cover 15 pixels"):
        YTVISDataset(_write_json(tmp_path / "c.json", _one_video([None, short_counts, None])))
    with pytest.raises(ValueError, match=r"video_id=5.*category_id 42"):
        YTVISDataset(_write_json(tmp_path / "d.json", _one_video([None] * 3, category_id=42)))
    names = _one_video([None] * 3)
    names["videos"][0]["file_names"] = ["v/0.jpg", "../../etc/passwd", "v/2.jpg"]
    with pytest.raises(ValueError, match=r"videos\[0\] \(id=5\)\.file_names\[1\].*relative"):
        YTVISDataset(_write_json(tmp_path / "e.json", names))
    no_names = _one_video([None] * 3)
    del no_names["videos"][0]["file_names"]
    with pytest.raises(ValueError, match=r"id=5\)\.file_names has 0 entries"):
        YTVISDataset(_write_json(tmp_path / "f.json", no_names))


def test_missing_or_wrong_frame_file_is_named_when_read(tmp_path: Path):
    path = _boxes_dataset(tmp_path)
    (tmp_path / "JPEGImages" / "boxes" / "00003.png").unlink()
    _write_png(tmp_path / "JPEGImages" / "boxes" / "00004.png", np.zeros((10, 10, 3), np.uint8))
    ds = YTVISDataset(path)  # frames are checked lazily
    ds.read_frame(7, 2)
    with pytest.raises(ValueError, match=r"video 7 \(boxes\) frame 3: frame file not found: "
                                         r".*boxes/00003\.png"):
        ds.load_clip(7, [1, 3, 5])
    with pytest.raises(ValueError, match=r"video 7 \(boxes\) frame 4: .*00004\.png' is 10x10"):
        ds.read_frame(7, 4)
    with pytest.raises(IndexError, match="frame index 6"):
        ds.read_frame(7, 6)
    with pytest.raises(KeyError, match="no video with id 99"):
        ds.load_clip(99, [0])


# --- sampling -----------------------------------------------------------------------------------
def test_stride_range_and_increasing_frames():
    sampler = ClipSampler({1: 200, 2: 150}, clip_len=4, stride_min=2, stride_max=5, seed=3)
    strides = set()
    for i in range(300):
        spec = sampler.sample(i, epoch=i % 3)
        idx = np.asarray(spec.frame_indices)
        assert len(idx) == 4 and idx.min() >= 0 and idx.max() < sampler.lengths[spec.video_id]
        gaps = np.diff(idx)
        assert (gaps == spec.stride).all() and 2 <= spec.stride <= 5
        strides.add(spec.stride)
    assert strides == {2, 3, 4, 5}
    # too short for the drawn stride: shrink it (below stride_min if need be)
    short = ClipSampler({1: 7}, clip_len=3, stride_min=4, stride_max=6)
    assert {short.sample(i, 0).frame_indices for i in range(20)} == {(0, 3, 6)}
    tiny = ClipSampler({1: 5}, clip_len=3, stride_min=4, stride_max=4)
    assert {tiny.sample(i, 0).frame_indices for i in range(20)} == {(0, 2, 4)}
    # shorter than the clip: every frame, then the last one repeated
    assert clip_frame_indices(2, 4, 7, 0.9) == ([0, 1, 1, 1], 1)
    assert clip_frame_indices(1, 1, 3, 0.99) == ([0], 3)


def test_videos_are_visited_evenly_and_reshuffled():
    lengths = {v: 30 for v in range(10, 17)}
    sampler = ClipSampler(lengths, clip_len=2, seed=0)
    for epoch in (0, 1):
        seen = [sampler.sample(i, epoch).video_id for i in range(3 * 7)]
        assert sorted(seen) == sorted(list(lengths) * 3)
    order0 = [sampler.sample(i, 0).video_id for i in range(7)]
    order1 = [sampler.sample(i, 1).video_id for i in range(7)]
    assert order0 != order1


def test_sampler_is_a_pure_function_of_seed_epoch_index():
    a = ClipSampler({1: 50, 2: 60, 3: 70}, clip_len=3, seed=7)
    b = ClipSampler({1: 50, 2: 60, 3: 70}, clip_len=3, seed=7)
    forward = [a.sample(i, 4) for i in range(40)]
    backward = [b.sample(i, 4) for i in reversed(range(40))][::-1]
    assert forward == backward
    assert all(isinstance(s, ClipSpec) for s in forward)
    assert [a.sample(i, 5) for i in range(40)] != forward
    assert [ClipSampler({1: 50, 2: 60, 3: 70}, 3, seed=8).sample(i, 4)
            for i in range(40)] != forward


def _clips_equal(x: Clip, y: Clip) -> bool:
    same = (x.video_id == y.video_id and x.frame_indices == y.frame_indices
            and torch.equal(x.frames, y.frames) and torch.equal(x.stamps, y.stamps)
            and x.image_size == y.image_size)
    for name in ("labels", "masks", "track_ids"):
        same = same and all(torch.equal(p, q) for p, q in
                            zip(getattr(x, name), getattr(y, name), strict=True))
    return same


def test_clip_dataset_determinism(synthetic):
    _, path = synthetic
    aug = ClipAugment(min_size=(40, 64), max_size=96, flip_prob=0.5, crop_prob=0.7)

    def make() -> ClipDataset:
        ds = YTVISDataset(path)
        return ClipDataset(ds, ClipSampler(ds, 3, seed=11), aug, length=6)

    first, second = make(), make()
    second.set_epoch(2)
    second.set_epoch(0)
    clips = [first[i] for i in range(6)]
    for i in reversed(range(6)):
        assert _clips_equal(clips[i], second[i]), i
    first.set_epoch(1)
    other = [first[i] for i in range(6)]
    assert sum(_clips_equal(c, o) for c, o in zip(clips, other, strict=True)) == 0
    with pytest.raises(IndexError, match="index 6"):
        first[6]


# --- augmentation -------------------------------------------------------------------------------
def _check_colours(clip: Clip) -> int:
    """Masks sit on their objects. Each pixel is given the nearest colour of the palette
    (background, padding and objects; a blended edge goes to the nearer side): every pixel one pixel
    inside a mask must get its object's colour, and each mask must have IoU >= 0.8 with the
    pixels of its object's colour (objects do not overlap in these scenes). Returns the number
    of mask pixels checked."""
    palette = torch.tensor([BACKGROUND, (0, 0, 0), *COLOURS.values()])  # (5, 3); black: padding
    own = {tid: k + 2 for k, tid in enumerate(COLOURS)}
    checked = 0
    for t in range(len(clip)):
        img = clip.frames[t].permute(1, 2, 0).to(torch.int64)
        nearest = (img[:, :, None] - palette).abs().sum(-1).argmin(-1)  # (H, W)
        inner = _eroded(clip.masks[t])
        for tid, m, core in zip(clip.track_ids[t].tolist(), clip.masks[t], inner, strict=True):
            colour = nearest == own[tid]
            where = (clip.frame_indices[t], tid)
            assert (colour[core]).all(), where
            iou = (colour & m).sum() / (colour | m).sum()
            assert iou >= 0.8, (*where, float(iou))
            checked += int(m.sum())
    return checked


def test_augmentation_keeps_frames_and_masks_aligned(boxes):
    clip0 = boxes.load_clip(7, [0, 2, 3, 5])
    assert _check_colours(clip0) > 0
    aug = ClipAugment(min_size=(40, 100), max_size=160, flip_prob=0.5, crop_prob=0.8,
                      crop_min_frac=0.4, size_divisibility=32)
    flipped = cropped = dropped = 0
    for seed in range(24):
        g = torch.Generator().manual_seed(seed)
        clip = aug(clip0, g)
        _, _, hp, wp = clip.frames.shape
        h, w = clip.image_size
        assert hp % 32 == 0 and wp % 32 == 0 and h <= hp and w <= wp
        assert clip.orig_size == (H, W)
        assert not clip.frames[:, :, h:].any() and not clip.frames[:, :, :, w:].any()
        for t in range(4):
            m = clip.masks[t]
            assert m.shape[1:] == (hp, wp) and not m[:, h:].any() and not m[:, :, w:].any()
            assert (m.flatten(1).sum(1) > 0).all()  # emptied instances are dropped
        assert _check_colours(clip) > 0
        # where is the red box (id 11) relative to the green one (12) in the first frame?
        ids = clip.track_ids[0].tolist()
        if 11 in ids and 12 in ids:
            cx = [clip.masks[0][ids.index(k)].nonzero()[:, 1].float().mean() for k in (11, 12)]
            flipped += int(cx[0] > cx[1])  # red is left of green unless mirrored
        cropped += int(abs(h / w - H / W) > 0.05)
        dropped += int(sum(len(ids) for ids in clip.track_ids)
                       < sum(len(ids) for ids in clip0.track_ids))
    assert flipped > 0 and cropped > 0 and dropped > 0


def test_flip_mirrors_frames_and_masks_together(boxes):
    clip0 = boxes.load_clip(7, [1, 4])
    aug = ClipAugment(min_size=(48, 48), max_size=64, flip_prob=1.0, crop_prob=0.0,
                      size_divisibility=0)
    clip = aug(clip0, torch.Generator().manual_seed(0))
    assert clip.frames.shape == clip0.frames.shape
    assert torch.equal(clip.frames, clip0.frames.flip(-1))
    for a, b in zip(clip.masks, clip0.masks, strict=True):
        assert torch.equal(a, b.flip(-1))
    for a, b in zip(clip.track_ids, clip0.track_ids, strict=True):
        assert torch.equal(a, b)


def test_crop_keeps_an_instance_when_it_can(tmp_path: Path):
    img = np.full((H, W, 3), 90, np.uint8)
    img[1:4, 1:4] = COLOURS[11]
    for t in range(3):
        _write_png(tmp_path / "JPEGImages" / f"c/{t}.png", img)
    seg = _rle_str(_rect(1, 4, 1, 4))
    data = {"videos": [{"id": 1, "width": W, "height": H, "length": 3,
                        "file_names": [f"c/{t}.png" for t in range(3)]}],
            "annotations": [{"id": 11, "video_id": 1, "category_id": 1, "iscrowd": 0,
                             "segmentations": [seg, seg, seg]}],
            "categories": [{"id": 1, "name": "corner"}]}
    ds = YTVISDataset(_write_json(tmp_path / "c.json", data))
    clip0 = ds.load_clip(1, [0, 1, 2])
    aug = ClipAugment(min_size=(48, 48), max_size=200, crop_prob=1.0, crop_min_frac=0.3,
                      flip_prob=0.0, size_divisibility=0, crop_retries=8)
    cropped = {}
    for retries in (8, 0):
        cropped[retries] = 0
        for seed in range(30):
            clip = dataclasses.replace(aug, crop_retries=retries)(
                clip0, torch.Generator().manual_seed(seed))
            assert all(m.shape[0] == 1 for m in clip.masks), seed
            assert _check_colours(clip) > 0
            cropped[retries] += int(clip.frames.shape[-1] * H != clip.frames.shape[-2] * W)
    # without retries a window that loses the object means no crop at all: fewer crops
    assert cropped[8] > cropped[0] + 5


def test_track_ids_consistent_across_frames(synthetic, boxes):
    clip = boxes.load_clip(7, [0, 1, 2, 3, 4, 5])
    assert [ids.tolist() for ids in clip.track_ids] == [[11, 12], [11, 12], [11, 12, 13],
                                                        [11, 12, 13], [11, 12], [11, 12]]
    names = boxes.class_names
    assert names == ["green", "red", "blue"]  # sorted by category id
    for t in range(6):
        label_of = dict(zip(clip.track_ids[t].tolist(), clip.labels[t].tolist(), strict=True))
        assert names[label_of[11]] == "red" and names[label_of[12]] == "green"
    _, path = synthetic
    ds = YTVISDataset(path)
    sampler = ClipSampler(ds, 4, seed=5)
    loader = ClipDataset(ds, sampler, ClipAugment(min_size=(48, 64), max_size=96), length=9)
    for i in range(len(loader)):
        clip = loader[i]
        cats: dict[int, int] = {}
        anns = {ds.annotation_id(tr): ds.category_index[tr.category_id]
                for tr in ds.tracks(clip.video_id)}
        for ids, labels in zip(clip.track_ids, clip.labels, strict=True):
            for tid, lab in zip(ids.tolist(), labels.tolist(), strict=True):
                assert anns[tid] == lab
                assert cats.setdefault(tid, lab) == lab


def test_eval_resize_matches_model_preprocess(boxes):
    clip0 = boxes.load_clip(7, [0, 3])
    clip = ClipResize(max_size=100)(clip0)
    assert clip.image_size == (75, 100) and clip.frames.shape[-2:] == (96, 128)
    assert _check_colours(clip) > 0
    clip = ClipResize(max_size=1000, min_size=24, size_divisibility=0)(clip0)
    assert clip.frames.shape[-2:] == (24, 32)
    clip = ClipResize(max_size=70, divisibility_mode="resize")(clip0)
    assert clip.frames.shape[-2:] == (64, 64) and clip.image_size == (64, 64)


def test_dataloader_with_collate_clips(synthetic):
    _, path = synthetic
    ds = YTVISDataset(path)
    data = ClipDataset(ds, ClipSampler(ds, 2, seed=0), ClipAugment(min_size=(32, 48),
                                                                    max_size=64), length=5)
    loader = DataLoader(data, batch_size=2, shuffle=False, num_workers=0,
                        collate_fn=collate_clips)
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(isinstance(c, Clip) and c.frames.shape[0] == 2 for b in batches for c in b)
    assert _clips_equal(batches[1][0], data[2])
    with pytest.raises(TypeError, match=r"batch\[0\]"):
        collate_clips([{"frames": 1}])


# --- validation ---------------------------------------------------------------------------------
def test_config_and_clip_validation(boxes):
    with pytest.raises(ConfigError, match=r"ClipAugment\.flip_prob = 1\.5"):
        ClipAugment(flip_prob=1.5)
    with pytest.raises(ConfigError, match=r"ClipAugment\.min_size = \(300, 200\)"):
        ClipAugment(min_size=(300, 200))
    with pytest.raises(ConfigError, match=r"ClipAugment\.crop_min_frac = 0"):
        ClipAugment(crop_min_frac=0)
    with pytest.raises(ConfigError, match="divisibility_mode = 'crop'"):
        ClipResize(divisibility_mode="crop")
    with pytest.raises(ValueError, match="stride_min = 5 must be <= stride_max = 2"):
        ClipSampler({1: 10}, 2, stride_min=5, stride_max=2)
    with pytest.raises(ValueError, match="clip_len = 0"):
        ClipSampler({1: 10}, 0)
    with pytest.raises(ValueError, match="epoch = -1"):
        ClipSampler({1: 10}, 2).sample(0, -1)
    with pytest.raises(ValueError, match="length = 0"):
        ClipDataset(boxes, ClipSampler(boxes, 2), None, 0)
    with pytest.raises(ValueError, match=r"videos \[3\] are not in the dataset"):
        ClipDataset(boxes, ClipSampler({3: 10}, 2), None, 4)
    clip = boxes.load_clip(7, [0, 1])
    with pytest.raises(ValueError, match=r"frame 1: masks must be bool \(2, 48, 64\)"):
        dataclasses.replace(clip, masks=[clip.masks[0], clip.masks[1][:, :10]])
    with pytest.raises(ValueError, match="stamps must be float64"):
        dataclasses.replace(clip, stamps=clip.stamps.float())
