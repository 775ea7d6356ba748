"""The published masks' guided-filter refinement (spvis_model.mask_refine, tracker.mask_refine)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic_clip import crossing_clip

from spvis_model.config import ConfigError, preset
from spvis_model.mask_refine import _inverse_3x3, box_mean, guided_filter, output_masks
from spvis_model.model import FrameGeometry
from spvis_model.tracker.reference import reference_postprocess, reference_step


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_box_mean_is_the_clipped_window_mean():
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    r = 2
    got = box_mean(x, r)
    want = torch.empty_like(x)
    for i in range(9):
        for j in range(11):
            win = x[:, :, max(0, i - r): i + r + 1, max(0, j - r): j + r + 1]
            want[:, :, i, j] = win.mean((-2, -1))
    torch.testing.assert_close(got, want)


def test_inverse_3x3_matches_linalg():
    a = torch.rand(4, 3, 3, 5, 6, dtype=torch.float64)
    spd = torch.einsum("nijhw,nkjhw->nikhw", a, a) + 0.1 * torch.eye(3, dtype=a.dtype)[
        None, :, :, None, None]
    want = torch.linalg.inv(spd.permute(0, 3, 4, 1, 2)).permute(0, 3, 4, 1, 2)
    torch.testing.assert_close(_inverse_3x3(spd), want)


def test_flat_image_leaves_a_smoothed_mask_and_constants_stay():
    guide = torch.full((3, 20, 30), 0.4)
    prob = torch.full((2, 20, 30), 0.7)
    torch.testing.assert_close(guided_filter(prob, guide, 3, 1e-3), prob, atol=1e-4, rtol=0)
    torch.testing.assert_close(guided_filter(prob, guide, 3, 1e-3, passes=3), prob, atol=1e-4,
                               rtol=0)
    assert guided_filter(prob[:0], guide, 3, 1e-3).shape == (0, 20, 30)


def test_each_pass_filters_the_previous_output():
    """passes=k is the one-pass filter applied k times, each to the last output clipped to
    [0, 1] (the image's statistics, computed once, are the same every pass); a second pass
    changes the output."""
    gen = torch.Generator().manual_seed(4)
    guide = torch.rand(3, 24, 32, generator=gen, dtype=torch.float64)
    prob = torch.rand(2, 24, 32, generator=gen, dtype=torch.float64)
    once = guided_filter(prob, guide, 2, 1e-3)
    twice = guided_filter(once.clamp(0, 1), guide, 2, 1e-3)
    thrice = guided_filter(twice.clamp(0, 1), guide, 2, 1e-3)
    torch.testing.assert_close(guided_filter(prob, guide, 2, 1e-3, passes=2), twice)
    torch.testing.assert_close(guided_filter(prob, guide, 2, 1e-3, passes=3), thrice)
    assert float((twice - once).abs().max()) > 1e-2


def _disc_scene(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with two discs of other colours; (frame, the discs' masks)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frame = (rng.integers(60, 120, (h, w, 3))).astype(np.uint8)
    masks = []
    for cy, cx, rad, colour in ((0.4, 0.3, 0.06, (220, 40, 40)), (0.6, 0.7, 0.04, (30, 200, 60))):
        m = (yy - cy * h) ** 2 + (xx - cx * w) ** 2 <= (rad * min(h, w)) ** 2
        frame[m] = colour
        masks.append(m)
    return frame, np.stack(masks)


@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("size", [(240, 320), (480, 640)])
def test_guided_masks_follow_image_edges_better_than_bilinear(size, passes):
    """Blurred stride-4 logits of the true masks (seen at 320 px input, as the segmenter sees
    them): the guided masks are closer to the truth than the bilinear ones, at the input's own
    size and on a frame twice as large (a and b upsampled)."""
    h, w = size
    frame, truth = _disc_scene(h, w)
    rh, rw = 240, 320
    geom = FrameGeometry((h, w), (rh, rw), (rh, rw))
    small = F.interpolate(torch.from_numpy(truth).float()[None], (rh // 4, rw // 4),
                          mode="area")[0]
    small = F.avg_pool2d(small[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    logits = 8.0 * (small - 0.5)
    plain = output_masks(logits, geom).numpy()
    guided = output_masks(logits, geom, "guided", 5.0, 1e-3,
                          torch.from_numpy(frame), passes=passes).numpy()
    for k in range(len(truth)):
        before, after = _iou(plain[k], truth[k]), _iou(guided[k], truth[k])
        assert after > before + 0.05, (k, before, after)
        assert after > 0.95, (k, after)


def test_guided_needs_the_frame_of_its_geometry():
    geom = FrameGeometry((48, 64), (48, 64), (64, 64))
    logits = torch.zeros(1, 16, 16)
    with pytest.raises(ValueError, match="needs the frame"):
        output_masks(logits, geom, "guided")
    with pytest.raises(ValueError, match="frame shape"):
        output_masks(logits, geom, "guided", frame=torch.zeros(64, 48, 3, dtype=torch.uint8))


@pytest.mark.parametrize(("field", "value"), [("mask_refine", "crf"),
                                              ("mask_refine_radius", 0.0),
                                              ("mask_refine_radius", float("nan")),
                                              ("mask_refine_eps", 0.0),
                                              ("mask_refine_eps", "1e-3"),
                                              ("mask_refine_passes", 0),
                                              ("mask_refine_passes", 5),
                                              ("mask_refine_passes", 2.0),
                                              ("mask_refine_passes", True)])
def test_config_refuses_bad_refinement_naming_the_field(field, value):
    cfg = preset("tiny")
    setattr(cfg.tracker, field, value)
    with pytest.raises(ConfigError, match=f"tracker.{field}"):
        cfg.validate()


@pytest.fixture
def refining(trained_tiny):
    """The trained tiny model with `mask_refine: guided` (radius 2 on its 128 px input), its
    own config restored afterwards."""
    old = trained_tiny.cfg
    tcfg = dataclasses.replace(old.tracker, mask_refine="guided", mask_refine_radius=2.0)
    trained_tiny.cfg = dataclasses.replace(old, tracker=tcfg).validate()
    yield trained_tiny
    trained_tiny.cfg = old


def test_step_refines_and_matches_the_reference_path(refining):
    """`step` with `mask_refine: guided` gives the reference composition's instances (the
    same refined masks through the one-read postprocess), and its masks differ from the
    unrefined ones: the setting is applied."""
    model = refining
    frames, _ = crossing_clip(8)
    state, ref = model.init_state(), model.init_state()
    heads = model.segmenter.decoder
    plain_cfg = dataclasses.replace(model.cfg.tracker, mask_refine="none")
    changed = published = 0
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            state, inst = model.step(state, frame, 0.2 * i)
            images, geom = model.preprocess(frame)
            feats = model.frame_features(model.segment(images), 0, geom)
            ref, step = reference_step(model.tracker, ref, feats, 0.2 * i, heads)
            want = reference_postprocess(model, step, geom, frame=torch.from_numpy(frame))
            assert inst.ids.tolist() == want.ids.tolist(), i
            np.testing.assert_array_equal(inst.masks, want.masks)
            np.testing.assert_array_equal(inst.boxes, want.boxes)
            plain = model.postprocess(step, geom, plain_cfg)
            published += len(inst)
            if plain.masks.shape == inst.masks.shape:
                changed += int((plain.masks != inst.masks).any())
    assert published > 0
    assert changed > 0


def test_step_batch_refines_like_step(refining):
    model = refining
    frames, _ = crossing_clip(4)
    one = [model.init_state(), model.init_state()]
    both = [model.init_state(), model.init_state()]
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            pair = [frame, np.ascontiguousarray(frame[:, ::-1])]
            alone = []
            for k in range(2):
                one[k], inst = model.step(one[k], pair[k], 0.2 * i)
                alone.append(inst)
            out = model.step_batch(both, pair, [0.2 * i, 0.2 * i])
            both = [s for s, _ in out]
            for k in range(2):
                assert out[k][1].ids.tolist() == alone[k].ids.tolist()
                np.testing.assert_array_equal(out[k][1].masks, alone[k].masks)


def test_postprocess_without_the_frame_says_so(refining):
    model = refining
    frame = crossing_clip(1)[0][0]
    with torch.inference_mode():
        images, geom = model.preprocess(frame)
        feats = model.frame_features(model.segment(images), 0, geom)
        _, result = model.track(model.init_state(), feats, 0.0)
        with pytest.raises(ValueError, match="mask_refine = 'guided' needs the frame"):
            model.postprocess(result, geom)


@pytest.mark.parametrize(("original", "resized", "passes"), [((240, 320), (240, 320), 1),
                                                             ((480, 640), (240, 320), 1),
                                                             ((250, 333), (250, 333), 1),
                                                             ((721, 1283), (180, 320), 1),
                                                             ((240, 320), (240, 320), 2),
                                                             ((480, 640), (240, 320), 4)])
def test_cropped_path_agrees_with_the_whole_frame(original, resized, passes):
    """The CPU's per-mask crops give the whole-frame filter's masks: objects of several sizes,
    one at the image border, one absent (all logits below the support), on a textured frame
    and at resize ratios 1, 2 and uneven ones, with one pass and with several (the crop grows
    with the passes)."""
    gen = torch.Generator().manual_seed(1)
    h, w = original
    padded = (-(-resized[0] // 32) * 32, -(-resized[1] // 32) * 32)
    geom = FrameGeometry(original, resized, padded)
    frame, _ = _disc_scene(h, w, seed=3)
    hp4, wp4 = padded[0] // 4, padded[1] // 4
    yy, xx = torch.meshgrid(torch.arange(hp4, dtype=torch.float32),
                            torch.arange(wp4, dtype=torch.float32), indexing="ij")
    v4h, v4w = geom.valid_stride4
    logits = []
    for cy, cx, rad in ((0.4, 0.3, 0.12), (0.6, 0.7, 0.05), (0.0, 0.98, 0.1), (0.5, 0.5, 0.3)):
        dist = ((yy - cy * v4h) ** 2 + (xx - cx * v4w) ** 2).sqrt()
        noise = 0.5 * torch.randn(hp4, wp4, generator=gen)
        logits.append(4.0 * (1.0 - dist / (rad * v4w)) + noise)
    logits.append(torch.full((hp4, wp4), -6.0))
    logits = torch.stack(logits)
    img = torch.from_numpy(frame)
    whole = output_masks(logits, geom, "guided", 5.0, 1e-3, img, crop=False, passes=passes)
    cropped = output_masks(logits, geom, "guided", 5.0, 1e-3, img, crop=True, passes=passes)
    assert whole.shape == cropped.shape == (5, h, w)
    assert whole[:4].flatten(1).any(1).all() and not whole[4].any()
    differ = (whole != cropped).flatten(1).float().mean(1)
    assert float(differ.max()) <= 1e-4, differ.tolist()


def test_node_parameter_choices_are_the_model_modes():
    from spvis_model.config import REFINE_MODES
    from spvis_ros.params import MASK_REFINES, SPECS

    assert tuple(MASK_REFINES) == ("checkpoint", *REFINE_MODES)
    assert SPECS["mask_refine"].choices == MASK_REFINES
    assert SPECS["mask_refine"].default == "checkpoint"


def test_whole_frame_batches_give_the_unbatched_masks(monkeypatch):
    """A working-memory budget that fits 3 masks, or 1, gives the masks of one batch."""
    import spvis_model.mask_refine as mr

    gen = torch.Generator().manual_seed(2)
    frame = torch.randint(0, 256, (60, 80, 3), dtype=torch.uint8, generator=gen)
    logits = 3.0 * torch.randn(7, 30, 40, generator=gen)
    whole = mr.refine_masks(logits, frame, (30, 40), 3.0, 1e-3, passes=2)
    per_mask = mr.FIT_FLOATS * 30 * 40 + mr.OUTPUT_FLOATS * 60 * 80
    for fits in (3, 1):
        monkeypatch.setattr(mr, "BATCH_FLOATS", fits * per_mask)
        assert torch.equal(mr.refine_masks(logits, frame, (30, 40), 3.0, 1e-3, passes=2), whole)
    assert mr.refine_masks(logits[:0], frame, (30, 40), 3.0, 1e-3).shape == (0, 60, 80)


def test_crop_batches_group_similar_sizes_within_the_budget(monkeypatch):
    import spvis_model.mask_refine as mr

    spans = [(100, 100), (20, 20), (22, 18), (21, 21), (100, 96)]
    # Sorted by area: the three small crops together, the two large ones together.
    assert mr._crop_batches(spans, 1.0) == [[2, 1, 3], [4, 0]]
    # No padding allowed: only crops of one size share a batch.
    monkeypatch.setattr(mr, "CROP_BATCH_PIXELS", 0)
    assert mr._crop_batches([(8, 8), (8, 8), (9, 8)], 1.0) == [[0, 1], [2]]
    # A budget of one large crop's working memory: each large crop alone.
    monkeypatch.setattr(mr, "CROP_BATCH_PIXELS", 96 * 96)
    one = 100 * 100 * (2 * mr.FIT_FLOATS + mr.CROP_OUTPUT_FLOATS * 4.0)
    monkeypatch.setattr(mr, "BATCH_FLOATS", int(one))
    assert mr._crop_batches(spans, 4.0) == [[2, 1, 3], [4], [0]]


@pytest.mark.parametrize(("budget", "padding"), [(None, 0), (1, 96 * 96), (None, 10 ** 9)])
def test_cropped_batches_give_the_same_masks(monkeypatch, budget, padding):
    """However the crops are batched (each alone, only equal sizes together, all in one),
    the masks are the same."""
    import spvis_model.mask_refine as mr

    geom = FrameGeometry((480, 640), (240, 320), (256, 320))
    frame, _ = _disc_scene(480, 640, seed=5)
    gen = torch.Generator().manual_seed(6)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(80.0), indexing="ij")
    logits = torch.stack([4.0 * (1.0 - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() / rad)
                          + 0.5 * torch.randn(64, 80, generator=gen)
                          for cy, cx, rad in ((20, 20, 3), (40, 60, 12), (10, 70, 5),
                                              (50, 15, 8), (30, 40, 2))])
    img = torch.from_numpy(frame)
    want = output_masks(logits, geom, "guided", 5.0, 3e-4, img, crop=True, passes=2)
    if budget is not None:
        monkeypatch.setattr(mr, "BATCH_FLOATS", budget)
    monkeypatch.setattr(mr, "CROP_BATCH_PIXELS", padding)
    got = output_masks(logits, geom, "guided", 5.0, 3e-4, img, crop=True, passes=2)
    assert want.flatten(1).any(1).all()
    assert torch.equal(got, want)
