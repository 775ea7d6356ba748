"""Each tracker stage on hand-made inputs: assignment, correction, association, births, slot
allocation, expiry, status transitions, memory, settings, and the method table."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from spvis_model.config import ASSOCIATIONS, ConfigError, ModelConfig, TrackerConfig, preset
from spvis_model.tracker.association import assignment_cost, associate, gated_assignment
from spvis_model.tracker.correction import corrected_assignment, correction_applies
from spvis_model.tracker.detections import Detections
from spvis_model.tracker.lifecycle import (
    advance,
    allocate_slots,
    expire,
    place_births,
    select_births,
)
from spvis_model.tracker.memory import prototype, write_snapshots
from spvis_model.tracker.methods import METHODS
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.state import ACTIVE, FREE, LOST, TENTATIVE, TrackerState
from spvis_model.tracker.tracker import Tracker

C, R = 4, 4


def unit(*xs: float) -> torch.Tensor:
    v = torch.tensor(xs, dtype=torch.float32)
    return v / v.norm()


def square(y: int, x: int, size: int = 2) -> torch.Tensor:
    m = torch.zeros(R, R)
    m[y:y + size, x:x + size] = 1
    return m


def dets(embeds: list[torch.Tensor], masks: list[torch.Tensor], scores: list[float],
         detect_score: float = 0.3) -> Detections:
    e = torch.stack(embeds)
    s = torch.tensor(scores)
    return Detections(embed=e, unit=e / e.norm(dim=1, keepdim=True), score=s,
                      low=torch.stack(masks), box=torch.zeros(len(scores), 4),
                      pooled_features=torch.zeros(C, R, R),
                      candidates=torch.nonzero(s >= detect_score).flatten())


def state_with(tracks: list[dict], m: int = 4) -> TrackerState:
    """A state whose slot k holds tracks[k] ({status, ref, mask, last_seen, proto?, id})."""
    s = TrackerState.empty(m, C, 2, R, 2)
    for k, t in enumerate(tracks):
        s.status[k] = t["status"]
        s.ids[k] = t.get("id", k + 1)
        s.ref[k] = t.get("ref", torch.zeros(C))
        s.mask[k] = t.get("mask", torch.zeros(R, R))
        s.last_seen[k] = t.get("last_seen", 0.0)
        if "proto" in t:
            s.snapshots[k, 0] = t["proto"]
            s.snap_valid[k, 0] = True
            s.proto[k] = t["proto"]
    s.next_id = torch.tensor(len(tracks) + 1)
    return s


CFG = TrackerConfig(active_gate=1.2, lost_gate=0.6, iou_weight=1.0, new_track_score=0.5)



# --- assignment ------------------------------------------------------------------------------
def test_gated_assignment_drops_pairs_above_gate_and_they_do_not_steer_the_rest():
    cost = torch.tensor([[0.1, 5.0], [0.2, 0.3]])
    rows, cols = gated_assignment(cost, gate=1.0)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (1, 1)]
    # Row 0's only admissible detection is column 0; an inadmissible 5.0 must not make the
    # solver prefer leaving row 1 unmatched.
    rows, cols = gated_assignment(torch.tensor([[0.1, 9.0], [0.15, 9.0]]), gate=1.0)
    assert rows.numel() == 1 and cols.tolist() == [0]
    assert gated_assignment(torch.zeros(0, 3), 1.0)[0].numel() == 0


def test_assignment_cost_charges_unmatched_rows():
    cost = torch.tensor([[0.2, 0.9], [0.4, 0.1]])
    assert assignment_cost(cost, torch.tensor([0]), torch.tensor([0]), 1.0) == pytest.approx(1.2)


def test_correction_adopts_only_a_clearly_cheaper_assignment():
    cost = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    swapped = torch.tensor([0, 1])  # step a took the expensive pairs (total 1.8)
    assert corrected_assignment(cost, swapped, 1.2, 0.1).tolist() == [1, 0]
    # Within the margin: keep step a.
    assert corrected_assignment(cost, swapped, 1.2, 2.0).tolist() == [0, 1]
    # An unmatched track costs the gate: matching it is better, leaving it is not.
    assert corrected_assignment(torch.tensor([[0.3]]), torch.tensor([-1]), 1.2, 0.1).tolist() \
        == [0]
    assert corrected_assignment(torch.tensor([[1.15]]), torch.tensor([-1]), 1.2, 0.1).tolist() \
        == [-1]


def test_correction_runs_only_after_short_frame_intervals():
    cfg = dataclasses.replace(CFG, use_correction=True, correction_max_interval=0.1)
    assert correction_applies(cfg, 0.033) and correction_applies(cfg, 0.1)
    assert not correction_applies(cfg, 0.2)            # 5 fps
    assert not correction_applies(cfg, math.nan)       # the stream's first frame
    assert not correction_applies(dataclasses.replace(cfg, use_correction=False), 0.033)
    every = dataclasses.replace(cfg, correction_max_interval=math.inf)
    assert correction_applies(every, 1000.0)
    for bad in (0.0, -1.0, math.nan, "0.1", True):
        with pytest.raises(ConfigError, match="correction_max_interval"):
            ModelConfig(tracker=dataclasses.replace(cfg, correction_max_interval=bad)).validate()


def test_tracker_step_corrects_on_close_frames_only():
    """Tracker.step calls step c on a frame 0.05 s after the last, not on one 0.5 s after."""
    from tracker_scenes import StubHeads, region, scene

    calls: list[float] = []

    class Recording(Tracker):
        def _correct(self, heads, live, refined, dets, plan):
            calls.append(self._stamp)
            return super()._correct(heads, live, refined, dets, plan)

    cfg = dataclasses.replace(preset("tiny").tracker, use_correction=True,
                              correction_max_interval=0.1)
    tracker = Recording(cfg, 64, 64, 3, 2).eval()
    heads = StubHeads(64)
    state = tracker.init_state()
    with torch.no_grad():
        for i, stamp in enumerate([0.0, 0.05, 0.55, 0.6, 1.6]):
            tracker._stamp = stamp
            state, _ = tracker.step(state, scene({1: region(2, 2), 2: region(8, 8)}, seed=i),
                                    stamp, heads)
    assert calls == [0.05, 0.6]


# --- association ------------------------------------------------------------------------------
def test_associate_active_by_position_then_lost_by_memory():
    a, b, c = unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0)
    state = state_with([
        {"status": ACTIVE, "ref": a, "mask": square(0, 0)},
        {"status": LOST, "ref": unit(1, 1, 1, 1), "proto": b, "mask": square(2, 2)},
        {"status": LOST, "ref": c, "proto": c, "mask": square(2, 0)},
    ])
    # Detection 0: the active track, in place. Detection 1: the first lost track's memory,
    # far from where it was. Detection 2: looks like the second lost track but scores too low
    # to re-identify it.
    d = dets([a, b, c], [square(0, 0), square(0, 2), square(2, 0)], [0.9, 0.9, 0.4])
    out = associate(state, d, CFG)
    assert out.match.tolist() == [0, 1, -1, -1]
    assert out.by_memory.tolist() == [False, True, False, False]
    off = associate(state, d, dataclasses.replace(CFG, use_reid=False))
    assert off.match.tolist() == [0, -1, -1, -1]


def test_associate_active_gate_rejects_a_far_dissimilar_detection():
    state = state_with([{"status": ACTIVE, "ref": unit(1, 0, 0, 0), "mask": square(0, 0)}])
    d = dets([unit(0, 1, 0, 0)], [square(2, 2)], [0.9])
    assert associate(state, d, dataclasses.replace(CFG, use_reid=False)).match[0] == -1


def test_tentative_tracks_are_matched_by_position_but_not_by_memory():
    a = unit(1, 0, 0, 0)
    state = state_with([{"status": TENTATIVE, "ref": a, "proto": a, "mask": square(0, 0)}])
    near = dets([a], [square(0, 0)], [0.9])
    far = dets([a], [square(2, 2)], [0.9])
    assert associate(state, near, CFG).match[0] == 0
    assert associate(state, far, dataclasses.replace(CFG, active_gate=0.5)).match[0] == -1


# --- births and slots -------------------------------------------------------------------------
def test_select_births_greedy_by_score_without_duplicates():
    e = [unit(1, 0, 0, 0)] * 4
    d = dets(e, [square(0, 0), square(0, 0), square(2, 2), square(0, 2)], [0.6, 0.9, 0.8, 0.45])
    match = torch.tensor([-1, -1, -1, -1])
    # 1 (0.9) first; 0 duplicates it; 2 (0.8) is elsewhere; 3 is below new_track_score.
    assert select_births(d, match, 0.5).tolist() == [1, 2]
    # A detection that duplicates a matched one is no birth either.
    assert select_births(d, torch.tensor([2, -1, -1, -1]), 0.5).tolist() == [1]


def test_allocate_slots_free_first_then_waiting_tentative_then_oldest_lost_never_active():
    state = state_with([
        {"status": LOST, "last_seen": 5.0},
        {"status": ACTIVE, "last_seen": 0.0},
        {"status": LOST, "last_seen": 1.0},
        {"status": TENTATIVE, "last_seen": 9.0},
        {"status": LOST, "last_seen": 0.5},
        {"status": FREE},
    ], m=6)
    matched = torch.tensor([False, False, False, False, True, False])  # slot 4 seen again
    slots = allocate_slots(state, matched, 10)
    assert slots.tolist() == [5, 3, 2, 0]  # free, tentative, then lost by age; not 1, not 4
    assert allocate_slots(state, matched, 2).tolist() == [5, 3]


def test_place_births_gives_fresh_ids_and_forgets_evicted_memory():
    state = state_with([{"status": LOST, "proto": unit(1, 0, 0, 0), "id": 7}], m=2)
    state.next_id = torch.tensor(8)
    new, births = place_births(state, torch.tensor([3, 1]), torch.tensor([1, 0]), 2.5)
    assert births.slots.tolist() == [1, 0] and births.dets.tolist() == [3, 1]
    assert new.ids.tolist() == [9, 8]
    assert int(new.next_id) == 10
    assert new.status.tolist() == [TENTATIVE, TENTATIVE]
    assert not new.snap_valid.any()
    assert new.first_seen.tolist() == [2.5, 2.5] and new.hits.tolist() == [0, 0]
    # Fewer slots than births: the rest are dropped.
    _, few = place_births(state, torch.tensor([3, 1]), torch.tensor([1]), 2.5)
    assert few.dets.tolist() == [3]


def test_expire_by_time_per_status():
    state = state_with([
        {"status": LOST, "last_seen": 0.0, "proto": unit(1, 0, 0, 0)},
        {"status": LOST, "last_seen": 8.0},
        {"status": TENTATIVE, "last_seen": 8.5},
        {"status": TENTATIVE, "last_seen": 9.5},
        {"status": ACTIVE, "last_seen": 0.0},
    ], m=5)
    settings = TrackSettings(keep_seconds=5.0, tentative_seconds=1.0)
    nothing = torch.zeros(5, dtype=torch.bool)
    out = expire(state, 10.0, settings, nothing)
    assert out.status.tolist() == [FREE, LOST, FREE, TENTATIVE, ACTIVE]
    assert out.ids[0] == -1 and not out.snap_valid[0].any()
    # A slow stream (previous frame 2 s ago) gives tentative tracks 3 intervals = 6 s.
    state.last_stamp = torch.tensor(8.0, dtype=torch.float64)
    slow = TrackSettings(keep_seconds=5.0, tentative_seconds=1.0, tentative_intervals=3.0)
    assert expire(state, 10.0, slow, nothing).status.tolist() == [
        FREE, LOST, TENTATIVE, TENTATIVE, ACTIVE]
    # A track matched on this frame never expires, however long it was away.
    seen = torch.tensor([True, False, True, False, False])
    assert expire(state, 10.0, settings, seen).status.tolist() == [
        LOST, LOST, TENTATIVE, TENTATIVE, ACTIVE]


def test_tentative_tracks_confirm_at_one_frame_per_second_with_a_short_budget():
    from tracker_scenes import StubHeads, region, scene

    from spvis_model.config import preset
    from spvis_model.tracker.tracker import Tracker

    cfg = dataclasses.replace(preset("tiny").tracker, tentative_seconds=0.5,
                              tentative_intervals=0.0)
    torch.manual_seed(0)
    tracker, heads = Tracker(cfg, 64, 64, 3, 2).eval(), StubHeads(64)
    state = tracker.init_state()
    ids = []
    with torch.no_grad():
        for t in range(4):  # 1 fps: every gap is longer than the tentative budget
            state, r = tracker.step(state, scene({1: region(2, 2)}), float(t), heads)
            ids.append(int(r.ids[r.visible][0]))
    assert len(set(ids)) == 1
    assert int((state.status == ACTIVE).sum()) == 1


def test_advance_transitions():
    status = torch.tensor([TENTATIVE, TENTATIVE, TENTATIVE, ACTIVE, ACTIVE, LOST, LOST])
    matched = torch.tensor([True, True, False, True, False, True, False])
    born = torch.tensor([True, False, False, False, False, False, False])
    assert advance(status, matched, born).tolist() == [
        TENTATIVE, ACTIVE, TENTATIVE, ACTIVE, LOST, ACTIVE, LOST]


# --- memory -----------------------------------------------------------------------------------
def test_snapshots_fifo_and_prototype():
    s = TrackerState.empty(2, C, 2, R, 2)
    snaps = (s.snapshots, s.snap_time, s.snap_valid, s.snap_next)
    for t, v in enumerate([unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0)]):
        snaps = write_snapshots(*snaps, torch.tensor([1]), v[None], float(t))
    snapshots, times, valid, nxt = snaps
    assert valid.tolist() == [[False, False], [True, True]]
    assert times[1].tolist() == [2.0, 1.0] and nxt.tolist() == [0, 1]  # slot 0 overwritten
    mu = prototype(snapshots, valid)
    assert torch.allclose(mu[1], unit(0, 1, 1, 0), atol=1e-6)
    assert mu[0].abs().sum() == 0


def test_settings_validation_and_method_table():
    with pytest.raises(ValueError, match=r"keep_seconds = -1"):
        TrackSettings(keep_seconds=-1, tentative_seconds=1.0)
    with pytest.raises(ValueError, match=r"tentative_seconds = nan"):
        TrackSettings(keep_seconds=1.0, tentative_seconds=float("nan"))
    assert set(METHODS) == set(ASSOCIATIONS)


def test_mask_nms_keeps_the_best_of_overlapping_candidates():
    from spvis_model.tracker.detections import mask_nms

    low = torch.stack([square(0, 0), square(0, 0), square(0, 1), square(2, 2)])
    score = torch.tensor([0.6, 0.9, 0.8, 0.7])
    cand = torch.arange(4)
    # 1 (0.9) suppresses 0 (same mask); 2 overlaps 1 by 1/3 (kept at 0.5, gone at 0.3).
    assert mask_nms(cand, score, low, 0.5).tolist() == [1, 2, 3]
    assert mask_nms(cand, score, low, 0.3).tolist() == [1, 3]
    assert mask_nms(cand[:1], score, low, 0.3).tolist() == [0]


def test_hard_ios_nms_removes_a_part_inside_a_whole():
    from spvis_model.tracker.detections import candidates, mask_nms
    from spvis_model.tracker.geometry import hard_ios, mask_overlap, soft_iou

    whole = square(0, 0, size=4)                    # 16 cells
    part = square(0, 0, size=2)                     # 4 cells, all inside `whole`
    beside = square(0, 4, size=4)                   # touches nothing of `whole`
    faint = square(0, 0, size=4) * 0.4              # below 0.5 everywhere: an empty hard mask
    low = torch.stack([whole, part, beside, faint])
    # IoU of part and whole is 1/4, intersection over the smaller 1.
    assert float(soft_iou(part[None], whole[None])) == pytest.approx(0.25)
    assert float(hard_ios(part[None], whole[None])) == pytest.approx(1.0)
    assert float(hard_ios(faint[None], whole[None])) == 0.0
    assert torch.equal(mask_overlap(low, low, "soft_iou"), soft_iou(low, low))
    with pytest.raises(ValueError, match="measure = 'iou'"):
        mask_overlap(low, low, "iou")
    score = torch.tensor([0.9, 0.8, 0.7, 0.6])
    cand = torch.arange(4)
    assert mask_nms(cand, score, low, 0.5, "soft_iou").tolist() == [0, 1, 2, 3]
    assert mask_nms(cand, score, low, 0.5, "hard_ios").tolist() == [0, 2, 3]
    # The part goes whichever of the two scores higher.
    score = torch.tensor([0.8, 0.9, 0.7, 0.6])
    assert mask_nms(cand, score, low, 0.5, "hard_ios").tolist() == [1, 2, 3]
    assert candidates(score, low, 0.65, 0.5, "hard_ios").tolist() == [1, 2]


def test_publish_policies_coasting_and_duplicate_suppression():
    from spvis_model.tracker.publish import coasting, suppress_duplicates

    state = state_with([
        {"status": ACTIVE, "last_seen": 9.5},   # missed now, seen 0.5 s ago: coasts
        {"status": LOST, "last_seen": 5.0},     # seen 5 s ago: too long
        {"status": TENTATIVE, "last_seen": 9.5},  # never confirmed: no coasting
        {"status": ACTIVE, "last_seen": 9.5},   # its mask sits on a matched track's object
        {"status": ACTIVE, "last_seen": 10.0},  # matched
    ], m=5)
    slots = torch.arange(5)
    matched = torch.tensor([False, False, False, False, True])
    vis = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.9])
    low = torch.stack([square(0, 0), square(0, 2), square(2, 0), square(2, 2), square(2, 2)])
    out = coasting(state, slots, matched, vis, low, 10.0, coast_seconds=1.0)
    assert out.tolist() == [True, False, False, False, False]
    assert not coasting(state, slots, matched, vis, low, 10.0, coast_seconds=0.0).any()
    low_vis = vis.clone()
    low_vis[0] = 0.3
    assert not coasting(state, slots, matched, low_vis, low, 10.0, 1.0)[0]
    # Duplicates: of two published overlapping tracks the better-scoring one stays.
    visible = torch.tensor([True, True, True, False])
    score = torch.tensor([0.6, 0.9, 0.8, 0.99])
    masks = torch.stack([square(0, 0), square(0, 0), square(2, 2), square(2, 2)])
    assert suppress_duplicates(visible, score, masks, 0.5).tolist() == [False, True, True, False]
    assert suppress_duplicates(visible, score, masks, 1.0).tolist() == visible.tolist()


def test_track_score_model_ranks_tracks_seen_often_above_one_frame_tracks():
    from spvis_model.tracker.publish import track_score

    score = torch.tensor([0.98, 0.98, 0.6, 0.9])
    hits = torch.tensor([1, 9, 3, 1])
    b, w_s, w_h = -4.0, 1.5, 0.7
    got = track_score(score, hits, [b, w_s, w_h])
    want = torch.sigmoid(b + w_s * torch.logit(score) + w_h * hits.double().log()).float()
    torch.testing.assert_close(got, want)
    # The one-frame 0.98 track now ranks below the same scores seen nine times.
    assert got[0] < got[1] and got.dtype == score.dtype
    # Scores of exactly 0 or 1 stay finite.
    edge = track_score(torch.tensor([0.0, 1.0]), torch.tensor([1, 1]), [b, w_s, w_h])
    assert torch.isfinite(edge).all() and 0 < edge[0] < edge[1] < 1


def test_lost_by_position_matches_a_lost_track_where_it_was():
    a = unit(1, 0, 0, 0)
    # Its memory key is unlike the detection (no re-identification), but it is back in place.
    state = state_with([{"status": LOST, "ref": a, "proto": unit(0, 1, 0, 0),
                         "mask": square(0, 0)}])
    d = dets([a], [square(0, 0)], [0.9])
    assert associate(state, d, CFG).match[0] == -1
    assert associate(state, d, dataclasses.replace(CFG, lost_by_position=True)).match[0] == 0


def test_score_masks_full_keeps_an_object_smaller_than_a_low_res_cell():
    from spvis_model.tracker.detections import detection_tensors
    from spvis_model.tracker.types import FrameFeatures

    h, w = 64, 64
    masks = torch.full((2, h, w), -8.0)
    masks[0, 10:13, 10:13] = 8.0          # 3x3 of a 64x64 grid: under one 4x4 cell of R = 16
    masks[1, 20:52, 20:52] = 8.0          # a large object
    logits = torch.tensor([[4.0, -4.0, -4.0], [4.0, -4.0, -4.0]])
    feats = FrameFeatures(query_embed=torch.randn(2, C), pred_logits=logits, pred_masks=masks,
                          mask_features=torch.zeros(C, h, w), memory=torch.zeros(1, 4),
                          spatial_shapes=torch.tensor([[1, 1]]),
                          level_start_index=torch.tensor([0]), valid_hw=(h, w))
    low = detection_tensors(feats, 16, "low")
    full = detection_tensors(feats, 16, "full")
    assert float(low.score[0]) == 0.0            # its R×R mask is empty
    assert float(full.score[0]) > 0.9
    assert float(full.score[1]) == pytest.approx(float(low.score[1]), abs=0.02)
    assert torch.equal(low.low, full.low)        # only the score changes
    with pytest.raises(ValueError, match="score_masks = 'mid'"):
        detection_tensors(feats, 16, "mid")
    # Births on the R×R masks: the small object is followed on stride-4 scores but starts no
    # track; the large one does.
    hybrid = detection_tensors(feats, 16, "full", "low")
    assert torch.equal(hybrid.score, full.score)
    assert torch.equal(hybrid.birth_score, low.score)
    cand = dataclasses.replace(hybrid, candidates=torch.tensor([0, 1]))
    none = torch.tensor([-1])
    assert select_births(cand, none, 0.5).tolist() == [1]
    both_full = detection_tensors(feats, 16, "full", "full")
    assert torch.equal(both_full.birth_score, full.score)
    assert select_births(dataclasses.replace(both_full, candidates=torch.tensor([0, 1])), none,
                         0.5).tolist() == [1, 0]
    with pytest.raises(ValueError, match="birth_masks = 'mid'"):
        detection_tensors(feats, 16, "full", "mid")
