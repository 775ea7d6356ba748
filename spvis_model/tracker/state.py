"""TrackerState: the explicit, bounded memory of one stream.

Fixed-size tensors only: M track slots, K memory snapshots per track, a low-resolution mask per
track. Nothing grows with stream length: memory is O(M·K·C + M·R²) however long the stream runs.
`step` takes a state and returns a new one; the model keeps none.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

FREE, TENTATIVE, ACTIVE, LOST = 0, 1, 2, 3
STATUS_NAMES = {FREE: "free", TENTATIVE: "tentative", ACTIVE: "active", LOST: "lost"}
STATE_FORMAT_VERSION = 3
"""3 added `frame_hw`; a version-2 dict (no frame size) still loads, with the size unknown."""
READABLE_FORMAT_VERSIONS = (2, 3)
MAX_FIRST_ID = 2**62
"""The largest id a stream may start from (ids are int64; far from wrapping)."""

_FLOAT_FIELDS_FINITE = ("query", "ref", "proto", "snapshots", "snap_time", "box", "mask",
                        "score", "class_logits", "visibility", "first_seen", "last_seen")


@dataclass
class TrackerState:
    """Per-stream tracker memory (M slots, C channels, K snapshots, R×R masks, K1 = classes + 1).

    Attributes:
        query: (M, C) propagated track query (RCP output of the last frame it was matched).
        ref: (M, C) unit-norm reference embedding used for association.
        proto: (M, C) unit-norm memory prototype μ (similarity-weighted fusion of snapshots).
        snapshots: (M, K, C) high-quality past queries, FIFO.
        snap_time: (M, K) float64 stamps of the snapshots.
        snap_valid: (M, K) bool.
        snap_next: (M,) int64 FIFO write position.
        box: (M, 4) last box (cx, cy, w, h), normalised to the frame.
        mask: (M, R, R) float last mask (probabilities) on a frame-normalised R×R grid.
        score: (M,) track score: the mean score of the detections the track was matched to.
        hits: (M,) int64 frames the track was matched on.
        class_logits: (M, K1) mean class logits over the matched frames.
        visibility: (M,) last visibility.
        status: (M,) int64 FREE / TENTATIVE / ACTIVE / LOST.
        ids: (M,) int64 track ids, -1 for free slots.
        first_seen: (M,) float64 stamp of the first frame of the track.
        last_seen: (M,) float64 stamp of the last frame the track was matched.
        next_id: () int64 next id to hand out: ids start at 1 (0 means background in label
            images) and are never reused within the stream.
        last_stamp: () float64 stamp of the last processed frame (NaN before the first).
        frame_hw: (2,) int64 (H, W) of the stream's frames, [0, 0] before the first frame
            (and after `reset`). Boxes and masks above are normalised to this frame, so
            `SPVIS.step` refuses a frame of another size: one state per camera, and
            `reset()` when a camera's resolution changes.
    """

    query: torch.Tensor
    ref: torch.Tensor
    proto: torch.Tensor
    snapshots: torch.Tensor
    snap_time: torch.Tensor
    snap_valid: torch.Tensor
    snap_next: torch.Tensor
    box: torch.Tensor
    mask: torch.Tensor
    score: torch.Tensor
    hits: torch.Tensor
    class_logits: torch.Tensor
    visibility: torch.Tensor
    status: torch.Tensor
    ids: torch.Tensor
    first_seen: torch.Tensor
    last_seen: torch.Tensor
    next_id: torch.Tensor
    last_stamp: torch.Tensor
    frame_hw: torch.Tensor

    @classmethod
    def empty(cls, max_tracks: int, channels: int, memory_size: int, mask_res: int,
              num_logits: int, device: torch.device | str = "cpu") -> TrackerState:
        """A state with every slot free."""
        m, c, k, r = max_tracks, channels, memory_size, mask_res
        f32 = {"dtype": torch.float32, "device": device}
        f64 = {"dtype": torch.float64, "device": device}
        i64 = {"dtype": torch.int64, "device": device}
        state = cls(
            query=torch.zeros(m, c, **f32), ref=torch.zeros(m, c, **f32),
            proto=torch.zeros(m, c, **f32), snapshots=torch.zeros(m, k, c, **f32),
            snap_time=torch.zeros(m, k, **f64),
            snap_valid=torch.zeros(m, k, dtype=torch.bool, device=device),
            snap_next=torch.zeros(m, **i64), box=torch.zeros(m, 4, **f32),
            mask=torch.zeros(m, r, r, **f32), score=torch.zeros(m, **f32),
            hits=torch.zeros(m, **i64),
            class_logits=torch.zeros(m, num_logits, **f32), visibility=torch.zeros(m, **f32),
            status=torch.zeros(m, **i64), ids=torch.full((m,), -1, **i64),
            first_seen=torch.zeros(m, **f64), last_seen=torch.zeros(m, **f64),
            next_id=torch.ones((), **i64), last_stamp=torch.full((), math.nan, **f64),
            frame_hw=torch.zeros(2, **i64),
        )
        state._host_frame_hw = (state.frame_hw, (0, 0))  # see frame_size
        return state

    @staticmethod
    def layout(max_tracks: int, channels: int, memory_size: int, mask_res: int,
               num_logits: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """{field: (shape, dtype)} of a state of this configuration (what `empty` builds),
        without allocating anything: the model checks a state it is given against it."""
        m, c, k, r = max_tracks, channels, memory_size, mask_res
        f32, f64, i64 = torch.float32, torch.float64, torch.int64
        return {
            "query": ((m, c), f32), "ref": ((m, c), f32), "proto": ((m, c), f32),
            "snapshots": ((m, k, c), f32), "snap_time": ((m, k), f64),
            "snap_valid": ((m, k), torch.bool), "snap_next": ((m,), i64),
            "box": ((m, 4), f32), "mask": ((m, r, r), f32), "score": ((m,), f32),
            "hits": ((m,), i64), "class_logits": ((m, num_logits), f32),
            "visibility": ((m,), f32), "status": ((m,), i64), "ids": ((m,), i64),
            "first_seen": ((m,), f64), "last_seen": ((m,), f64), "next_id": ((), i64),
            "last_stamp": ((), f64), "frame_hw": ((2,), i64),
        }

    # --- views ----------------------------------------------------------------------------------
    @property
    def max_tracks(self) -> int:
        return self.query.shape[0]

    def live(self) -> torch.Tensor:
        """(M,) bool: slots holding a track (tentative, active or lost)."""
        return self.status != FREE

    def num_live(self) -> int:
        return int(self.live().sum())

    def nbytes(self) -> int:
        """Total bytes of all tensors (constant for a given configuration)."""
        return sum(t.numel() * t.element_size() for t in self._tensors().values())

    def has_stamp(self) -> bool:
        return not math.isnan(float(self.last_stamp))

    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) of the frames this state's stream has seen, None before its first frame (or
        after `reset`). Read from the host copy `SPVIS.step` leaves on the states it returns
        when there is one (no device read), else from `frame_hw`."""
        cached = getattr(self, "_host_frame_hw", None)
        if cached is not None and cached[0] is self.frame_hw:
            hw = cached[1]
        else:
            hw = (int(self.frame_hw[0]), int(self.frame_hw[1]))
        return None if hw == (0, 0) else hw

    def reset(self) -> TrackerState:
        """An empty state of the same shapes and device that keeps counting ids from where this
        one stopped: tracks are forgotten, ids are still never reused in the stream. The frame
        size is forgotten too (`frame_hw` = [0, 0]): the next frame may have any size. Use it
        when a stream restarts (a camera's clock went back, its resolution changed); use
        `SPVIS.init_state()` for a new stream."""
        k, r = self.snapshots.shape[1], self.mask.shape[1]
        fresh = TrackerState.empty(self.max_tracks, self.query.shape[1], k, r,
                                   self.class_logits.shape[1], self.query.device)
        fresh.next_id = self.next_id.clone()
        return fresh

    # --- copies, devices, serialisation --------------------------------------------------------
    def _tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def _keep_host_copy(self, other: TrackerState) -> TrackerState:
        """`other` (a copy of self) with self's host copy of the frame size, when valid."""
        cached = getattr(self, "_host_frame_hw", None)
        if cached is not None and cached[0] is self.frame_hw:
            other._host_frame_hw = (other.frame_hw, cached[1])
        return other

    def clone(self) -> TrackerState:
        return self._keep_host_copy(
            TrackerState(**{k: v.clone() for k, v in self._tensors().items()}))

    def detach(self) -> TrackerState:
        """The same values cut from the autograd graph (stage 2's truncated backpropagation
        through a long clip: gradients stop at this state)."""
        return self._keep_host_copy(
            TrackerState(**{k: v.detach() for k, v in self._tensors().items()}))

    def to(self, device: torch.device | str) -> TrackerState:
        return self._keep_host_copy(
            TrackerState(**{k: v.to(device) for k, v in self._tensors().items()}))

    def to_dict(self) -> dict[str, Any]:
        """CPU tensors plus a format version: safe to torch.save and load with weights_only."""
        out: dict[str, Any] = {k: v.detach().cpu().clone() for k, v in self._tensors().items()}
        out["format_version"] = STATE_FORMAT_VERSION
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], like: TrackerState | None = None,
                  device: torch.device | str | None = None) -> TrackerState:
        """Rebuild a state saved by `to_dict`. With `like` (e.g. `model.init_state()`), every
        tensor's shape and dtype must match it; a mismatch raises ValueError naming the field.

        `device`: where the state goes; default `like`'s device when `like` is given (so
        `from_dict(d, like=model.init_state())` lands on the model's device), else the CPU.
        A version-2 dict (saved before states recorded their frame size) loads with
        `frame_hw` = [0, 0]: the next frame sets it. The values are checked too: statuses in
        0..3, finite floats, ids below `next_id` (ValueError naming the field)."""
        if not isinstance(data, dict):
            raise ValueError(f"tracker state must be a dict, got {type(data).__name__}")
        version = data.get("format_version")
        if isinstance(version, bool) or version not in READABLE_FORMAT_VERSIONS:
            raise ValueError(f"tracker state format_version = {version!r}, expected one of "
                             f"{list(READABLE_FORMAT_VERSIONS)}")
        names = [f.name for f in dataclasses.fields(cls)]
        if version == 2:
            if "frame_hw" in data:
                raise ValueError("tracker state format_version = 2 has a field frame_hw (added "
                                 "in version 3)")
            data = {**data, "frame_hw": torch.zeros(2, dtype=torch.int64)}
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"tracker state is missing field(s) {missing}")
        unknown = sorted(set(data) - set(names) - {"format_version"})
        if unknown:
            raise ValueError(f"tracker state has unknown field(s) {unknown}")
        for name in names:
            if not isinstance(data[name], torch.Tensor):
                raise ValueError(f"tracker state field {name} must be a tensor, got "
                                 f"{type(data[name]).__name__}")
        if like is not None:
            for name, ref in like._tensors().items():
                got = data[name]
                if got.shape != ref.shape or got.dtype != ref.dtype:
                    raise ValueError(f"tracker state field {name}: shape {tuple(got.shape)} "
                                     f"{got.dtype}, the model expects {tuple(ref.shape)} "
                                     f"{ref.dtype}")
        _check_values(data)
        if device is None:
            device = like.query.device if like is not None else "cpu"
        return cls(**{n: data[n].to(device) for n in names})


def _check_values(data: dict[str, torch.Tensor]) -> None:
    """Raise ValueError naming the field when a state dict's values cannot be a stream's
    state (shapes are checked by the caller)."""
    status = data["status"]
    if status.is_floating_point() or bool(((status < FREE) | (status > LOST)).any()):
        raise ValueError(f"tracker state field status: values {sorted(set(status.tolist()))}, "
                         f"must be in {sorted(STATUS_NAMES)} ({STATUS_NAMES})")
    for name in _FLOAT_FIELDS_FINITE:
        t = data[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"tracker state field {name}: holds NaN or inf values")
    last = data["last_stamp"]
    if last.is_floating_point() and bool(torch.isinf(last).any()):
        raise ValueError(f"tracker state field last_stamp = {last.tolist()}: must be finite "
                         "(NaN: no frame yet)")
    next_id = data["next_id"]
    if next_id.numel() == 1 and int(next_id.reshape(())) < 1:
        raise ValueError(f"tracker state field next_id = {int(next_id.reshape(()))}: must be "
                         ">= 1")
    ids, live = data["ids"], status != FREE
    if ids.shape == status.shape and bool(live.any()) and next_id.numel() == 1:
        nid = int(next_id.reshape(()))
        bad = ids[live & ((ids < 1) | (ids >= nid))]
        if bad.numel():
            raise ValueError(f"tracker state field ids: live track id(s) {bad.tolist()[:5]} "
                             f"are not in [1, next_id = {nid})")
    hw = data["frame_hw"]
    if hw.numel() == 2 and (bool((hw < 0).any()) or (int(hw.min()) == 0) != (int(hw.max()) == 0)):
        raise ValueError(f"tracker state field frame_hw = {hw.tolist()}: must be (H, W) > 0, or "
                         "[0, 0] (no frame yet)")
