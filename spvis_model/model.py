"""SPVIS: the segmenter plus the tracker, with the online API the node, the CLI and the docs use.

    model = build_model("tiny")            # or a ModelConfig, or SPVIS.from_checkpoint(path)
    state = model.init_state()             # one per stream (camera)
    state, instances = model.step(state, frame, stamp)   # frame: H×W×3 uint8 RGB, stamp: seconds
    state = state.reset()                  # the stream restarts: tracks forgotten, ids continue

The model holds weights only; each stream's memory is the `TrackerState` passed in and out.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spvis_model.config import ModelConfig, TrackerConfig, preset
from spvis_model.instances import Instances
from spvis_model.mask_refine import configured_masks
from spvis_model.modeling.segmenter import Segmenter, SegmenterOutput
from spvis_model.syncs import host_side
from spvis_model.tracker.geometry import masks_to_boxes
from spvis_model.tracker.host import to_device, to_host
from spvis_model.tracker.methods import METHODS
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.state import MAX_FIRST_ID, TrackerState
from spvis_model.tracker.tracker import Tracker
from spvis_model.tracker.types import FrameFeatures, TrackStep

if TYPE_CHECKING:
    from spvis_model.export.runtime import OnnxRuntimeSegmenter
    from spvis_model.graphs import SegmenterGraphs

PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MAX_FRAME_PIXELS = 8192 * 8192
MAX_STAMP_SECONDS = 1e11
"""Stamps are seconds; one beyond ±1e11 s (the year 5138) is refused: it is nanoseconds (a ROS
`Time.nanoseconds`, ~1.7e18 today) or milliseconds far in the future, and every time budget
would silently be that many times too short."""


@dataclass(frozen=True)
class FrameGeometry:
    """Sizes of a frame through preprocessing: original (H, W), resized, padded to 32."""

    original: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int]

    @property
    def valid_stride4(self) -> tuple[int, int]:
        """Rows/columns of the stride-4 grid that cover the resized frame."""
        return math.ceil(self.resized[0] / 4), math.ceil(self.resized[1] / 4)


class SPVIS(nn.Module):
    """Segmenter + SIM/PGT/RCP tracker.

    Args:
        cfg: the configuration (validated here).
        pretrained_backbone: override cfg.backbone.pretrained (checkpoint loading passes False:
            the checkpoint carries every weight).
    """

    def __init__(self, cfg: ModelConfig, pretrained_backbone: bool | None = None) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.segmenter = Segmenter(cfg, pretrained_backbone)
        self.tracker = make_tracker(cfg)
        backbone = self.segmenter.backbone
        # The input config's normalisation when it has one (imported models), else the
        # backbone's; in the network's channel order (see preprocess).
        mean = cfg.input.pixel_mean or list(backbone.pixel_mean)
        std = cfg.input.pixel_std or list(backbone.pixel_std)
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1),
                             persistent=False)
        self._precision = "float32"  # what `segment` autocasts to (see `precision`)
        self.meta: dict = {}  # provenance from the checkpoint (`save(meta=...)`), e.g. "kind"
        # Runs `segment` instead of the eager segmenter when set (`from_checkpoint(backend=...)`,
        # spvis_model.export.runtime); None = PyTorch.
        self.segment_backend: OnnxRuntimeSegmenter | None = None
        # The eager segmenter captured per input shape (`capture`, spvis_model.graphs); None =
        # eager.
        self.segment_graphs: SegmenterGraphs | None = None

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", *,
                        backend: str = "torch", onnx: str | Path | None = None) -> SPVIS:
        """Load a checkpoint written by `save` (see spvis_model.checkpoint).

        backend: "torch" (eager PyTorch) or "onnxruntime": the segmenter runs from the file
        `spvis export` wrote (`onnx`, default: the checkpoint's path with .onnx), the tracker
        and preprocessing stay in PyTorch (spvis_model.export.runtime; BackendError when the
        file is missing, was exported from other weights, or the provider is not installed)."""
        from spvis_model.checkpoint import load_checkpoint

        model = load_checkpoint(path, device=device)
        if backend == "torch" and onnx is None:
            return model
        from spvis_model.export.runtime import attach_backend

        return attach_backend(model, backend, checkpoint=path, onnx=onnx)

    def save(self, path: str | Path, *, half: bool = False, meta: dict | None = None) -> None:
        """Write one checkpoint file: config, weights (float16 storage with half=True), class
        names, format version, and `meta` (provenance). `meta` defaults to the model's own
        (`self.meta`: what its checkpoint carried, e.g. `kind: demo` or an import's source),
        so a re-saved model keeps it; `meta={}` writes none. The config is validated again
        (`model.cfg` is not re-checked after construction) and the folder must exist: both
        are refused naming the field or the path, before anything is written."""
        from spvis_model.checkpoint import save_checkpoint

        save_checkpoint(self, path, half=half, meta=self.meta if meta is None else meta)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def backend(self) -> str:
        """What runs the segmenter, for logs: "torch" or the onnxruntime session's description
        (version, execution provider, threads, file)."""
        return "torch" if self.segment_backend is None else self.segment_backend.describe()

    @property
    def class_names(self) -> list[str]:
        return list(self.cfg.class_names)

    @property
    def precision(self) -> str:
        """What the segmenter really runs in: the exported file's precision when a backend
        runs it (`from_checkpoint(backend="onnxruntime")`: fixed at export, `spvis export
        --precision`), else the `set_precision` choice ("float32" by default)."""
        backend = self.segment_backend
        return str(backend.precision) if backend is not None else self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self.set_precision(value)

    def set_precision(self, precision: str) -> SPVIS:
        """float32 everywhere; float16 / bfloat16 run the segmenter under CUDA autocast (the
        tracker stays float32). Half precision on a CPU model is refused, not ignored.

        With a backend attached (onnxruntime), the exported file fixes the precision: only that
        value is accepted (no autocast is involved; which devices may run a float16 file is
        the backend's check, spvis_model.export.runtime), anything else is refused naming the
        file's precision."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision = {precision!r}: must be one of {sorted(PRECISIONS)}")
        backend = self.segment_backend
        if backend is not None:
            if precision != backend.precision:
                raise ValueError(
                    f"precision = {precision!r}: the onnxruntime backend runs the exported file "
                    f"in {backend.precision} ({self.backend}); the precision is fixed at export "
                    f"(spvis export --precision): ask for {backend.precision!r} or export again")
            return self
        if precision != "float32" and self.device.type != "cuda":
            raise ValueError(f"precision = {precision!r} needs the model on a CUDA device; it is "
                             f"on {self.device} (use float32 there)")
        self._precision = precision
        return self

    # --- state ----------------------------------------------------------------------------------
    def init_state(self, first_id: int = 1) -> TrackerState:
        """A fresh, empty tracker state on the model's device, for a new stream (one per
        camera). To restart a running stream (its clock went back, its resolution changed)
        use `state = state.reset()` instead: tracks are forgotten but ids keep counting, so
        no id is published twice in the stream. `first_id` is the id the first track gets
        (default 1; an integer, Python or numpy, in [1, 2**62]): a stream whose state was
        dropped (e.g. the node's cleanup) continues from its old state's `next_id`."""
        if isinstance(first_id, bool) or not isinstance(first_id, numbers.Integral) or \
                not 1 <= int(first_id) <= MAX_FIRST_ID:
            raise ValueError(f"first_id = {first_id!r}: must be an integer in [1, 2**62]")
        state = self.tracker.init_state(self.device)
        if int(first_id) != 1:
            state.next_id = torch.full_like(state.next_id, int(first_id))
        return state

    # --- per-frame pieces -----------------------------------------------------------------------
    def preprocess(self, frame: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, FrameGeometry]:
        """H×W×3 uint8 RGB -> (1, 3, Hp, Wp) normalised and padded, and its geometry.

        Follows `cfg.input`: the resize rule (`InputConfig.resized`; bilinear, antialiased when
        shrinking), the channel order the network expects (RGB frames are reversed for
        "bgr"), then (x - pixel_mean) / pixel_std, then zero padding to a multiple of 32.
        """
        x, geom, _ = self._prepare(frame)
        return x, geom

    def _prepare(self, frame: np.ndarray | torch.Tensor
                 ) -> tuple[torch.Tensor, FrameGeometry, torch.Tensor]:
        """`preprocess`, also returning the (H, W, 3) uint8 frame on the model's device (the
        guide of `tracker.mask_refine`)."""
        t = _upload(_check_frame(frame), self.device)
        h, w = int(t.shape[0]), int(t.shape[1])
        rh, rw = self.cfg.input.resized(h, w)
        x = t.permute(2, 0, 1)[None].float()
        if self.cfg.input.channel_order == "bgr":
            x = x.flip(1)
        if (rh, rw) != (h, w):
            x = F.interpolate(x, (rh, rw), mode="bilinear", align_corners=False,
                              antialias=rh < h or rw < w)
        x = (x - self.pixel_mean) / self.pixel_std
        ph, pw = math.ceil(rh / 32) * 32, math.ceil(rw / 32) * 32
        x = F.pad(x, (0, pw - rw, 0, ph - rh))
        return x, FrameGeometry((h, w), (rh, rw), (ph, pw)), t

    def segment(self, images: torch.Tensor) -> SegmenterOutput:
        """Run the segmenter on (B, 3, Hp, Wp) normalised images (autocast per precision), or
        the exported one through `segment_backend` when one is attached."""
        if self.segment_backend is not None:
            return self.segment_backend.segment(images)
        if self.segment_graphs is not None:
            dtype = None if self._precision == "float32" else PRECISIONS[self._precision]
            return self.segment_graphs(images, dtype)
        with self._autocast():
            return self.segmenter(images)

    def capture(self, mode: str) -> SPVIS:
        """Run the segmenter captured for fixed input sizes from now on: "graphs" (CUDA
        graphs; CUDA only), "compile" (``torch.compile``: reduce-overhead on CUDA, Inductor's
        C++ on the CPU, which needs a C++ compiler) or "eager" (undo). Each
        input shape is captured on first use and checked against eager; what cannot be
        captured runs eagerly with a `CaptureFallbackWarning` naming the stage and the reason
        (spvis_model.graphs). Not with the onnxruntime backend."""
        from spvis_model.graphs import MODES, SegmenterGraphs

        if mode not in MODES:
            raise ValueError(f"capture mode = {mode!r}: must be one of {list(MODES)}")
        if mode != "eager" and self.segment_backend is not None:
            raise ValueError(f"capture mode = {mode!r}: the segmenter runs in onnxruntime "
                             f"({self.backend}); capture applies to the PyTorch segmenter")
        self.segment_graphs = None if mode == "eager" else SegmenterGraphs(self.segmenter, mode)
        return self

    def frame_features(self, seg: SegmenterOutput, index: int,
                       geom: FrameGeometry) -> FrameFeatures:
        """The tracker's inputs for image `index` of a segmenter batch, in float32."""
        d, p = seg.decoder, seg.pixels
        return FrameFeatures(
            query_embed=d.query_embed[index].float(), pred_logits=d.pred_logits[index].float(),
            pred_masks=d.pred_masks[index].float(), mask_features=p.mask_features[index].float(),
            memory=p.memory[index].float(), spatial_shapes=p.spatial_shapes,
            level_start_index=p.level_start_index, valid_hw=geom.valid_stride4)

    def default_settings(self) -> TrackSettings:
        """The run-time tracker settings this model was built with (the config's)."""
        return TrackSettings.from_config(self.cfg.tracker)

    def track(self, state: TrackerState, feats: FrameFeatures, stamp: float,
              settings: TrackSettings | None = None) -> tuple[TrackerState, TrackStep]:
        """Advance the tracker one frame with the configured association method (PGT, or the
        MinVIS baseline, which has no life-cycle budgets and ignores `settings`); `settings`
        default to the config's."""
        _check_settings(settings, "settings")
        method = METHODS[self.cfg.tracker.association]
        return method(self.tracker, state, feats, stamp, self.segmenter.decoder,
                      settings or self.default_settings())

    # --- the online API -------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, state: TrackerState, frame: np.ndarray | torch.Tensor, stamp: float,
             settings: TrackSettings | None = None) -> tuple[TrackerState, Instances]:
        """Process one frame of a stream.

        Args:
            state: the stream's TrackerState (from `init_state` or a previous `step`), on the
                model's device, of this model's configuration.
            frame: (H, W, 3) uint8 RGB, any resolution (numpy array or tensor), the same
                resolution throughout the stream (the state records it; `state.reset()`
                starts again at a new one).
            stamp: the frame's time in seconds (not nanoseconds: |stamp| <= 1e11); must not
                go backwards within a stream (equal stamps are allowed).
            settings: run-time tracker settings (e.g. the node's `keep_seconds`); default:
                the config's. They are passed per call and never stored on the model.

        Returns:
            (new state, instances at the frame's resolution).

        Raises:
            ValueError: naming the argument and value: a bad frame, stamp, settings or state
                (another model's, on another device, another frame size).
        """
        self._check_weights()
        stamp = self._check_stamp(state, stamp)
        _check_settings(settings, "settings")
        images, geom, uploaded = self._prepare(frame)
        _check_frame_size(state, geom)
        feats = self.frame_features(self.segment(images), 0, geom)
        new, result = self.track(state, feats, stamp, settings)
        _record_frame_size(state, new, geom)
        return new, self.postprocess(result, geom, frame=uploaded)

    @torch.inference_mode()
    def step_batch(self, states: Sequence[TrackerState],
                   frames: Sequence[np.ndarray | torch.Tensor], stamps: Sequence[float],
                   settings: TrackSettings | Sequence[TrackSettings | None] | None = None
                   ) -> list[tuple[TrackerState, Instances]]:
        """One frame of each of several streams (cameras): one segmenter forward over all the
        frames as a batch, then each stream's own tracker step on its own state, in order.

        Each stream's result is what `step` gives it alone: its state, ids and time checks are
        its own (the batch only shares the segmenter's forward pass).

        Args:
            states: one TrackerState per stream (B of them).
            frames: one (H, W, 3) uint8 RGB frame per stream, all of the same size (each
                its stream's size, as in `step`).
            stamps: one stamp per stream (each checked against its own state).
            settings: one TrackSettings for all, or one (or None) per stream.

            Each may be any iterable (a list, a tuple, a generator); errors about one stream
            name it ("step_batch: stream 3: ...").

        Returns:
            [(new state, instances)] per stream, in input order.
        """
        states = _as_list(states, "states")
        frames = _as_list(frames, "frames")
        stamps = _as_list(stamps, "stamps")
        n = len(states)
        if n == 0 or len(frames) != n or len(stamps) != n:
            raise ValueError(f"step_batch: {n} states, {len(frames)} frames and {len(stamps)} "
                             "stamps: need one of each per stream, at least one stream")
        if settings is None or isinstance(settings, TrackSettings):
            per: list[TrackSettings | None] = [settings] * n
        else:
            per = _as_list(settings, "settings")
            if len(per) != n:
                raise ValueError(f"step_batch: {len(per)} settings for {n} streams")
        self._check_weights()
        checked, prepared = [], []
        for i in range(n):
            try:
                checked.append(self._check_stamp(states[i], stamps[i]))
                _check_settings(per[i], "settings" if per[i] is settings else f"settings[{i}]")
                prepared.append(self._prepare(frames[i]))
            except ValueError as exc:
                raise ValueError(f"step_batch: stream {i}: {exc}") from exc
        geom = prepared[0][1]
        for i, (_, g, _) in enumerate(prepared):
            if g != geom:
                raise ValueError(f"step_batch: frames[{i}] is {g.original[1]}x{g.original[0]}, "
                                 f"frames[0] is {geom.original[1]}x{geom.original[0]}: a batch "
                                 "needs frames of one size (step them separately)")
        for i in range(n):
            try:
                _check_frame_size(states[i], geom)
            except ValueError as exc:
                raise ValueError(f"step_batch: stream {i}: {exc}") from exc
        seg = self.segment(torch.cat([x for x, _, _ in prepared]))
        out = []
        for i in range(n):
            state, result = self.track(states[i], self.frame_features(seg, i, geom), checked[i],
                                       per[i])
            _record_frame_size(states[i], state, geom)
            out.append((state, self.postprocess(result, geom, frame=prepared[i][2])))
        return out

    def segment_clip(self, frames: Iterable[np.ndarray | torch.Tensor],
                     stamps: Iterable[float]) -> list[Instances]:
        """Offline / clip evaluation: the frames of one clip from a fresh state, in order.
        (No temporal refiner over whole tracks yet: results equal online processing.)
        `frames` and `stamps` may be any iterables of equal length (a generator is read one
        frame at a time); an error names the frame ("segment_clip: frames[3]: ...")."""
        if isinstance(frames, Sized) and isinstance(stamps, Sized) and \
                len(frames) != len(stamps):
            raise ValueError(f"segment_clip: {len(frames)} frames but {len(stamps)} stamps")
        try:
            frame_it, stamp_it = iter(frames), iter(stamps)
        except TypeError as exc:
            raise ValueError(f"segment_clip: frames and stamps must be iterables (lists, "
                             f"generators): {exc}") from exc
        state = self.init_state()
        out: list[Instances] = []
        while True:
            frame, stamp = next(frame_it, _END), next(stamp_it, _END)
            if frame is _END and stamp is _END:
                return out
            if frame is _END or stamp is _END:
                raise ValueError(f"segment_clip: frames and stamps differ in length (the "
                                 f"{'frames' if frame is _END else 'stamps'} ended after "
                                 f"{len(out)})")
            try:
                state, inst = self.step(state, frame, stamp)
            except ValueError as exc:
                raise ValueError(f"segment_clip: frames[{len(out)}]: {exc}") from exc
            out.append(inst)

    def postprocess(self, result: TrackStep, geom: FrameGeometry,
                    tracker_cfg: TrackerConfig | None = None, *,
                    frame: np.ndarray | torch.Tensor | None = None) -> Instances:
        """Visible tracks above the output score -> Instances at the original resolution, with
        calibrated scores (`tracker_cfg`: another tracker configuration's output score,
        calibration and mask refinement; default the model's). `frame`, the (H, W, 3) uint8
        RGB frame, is needed when the masks are refined against it (`tracker.mask_refine`).

        When the tracker made its decisions on the host (`result.host`), this reads the device
        once: the visible tracks' masks (bit-packed on CUDA), boxes, labels and scores in one
        copy. Otherwise (e.g. the MinVIS baseline) it reads them tensor by tensor. Both give
        the same Instances (tested against `spvis_model.tracker.reference`)."""
        tcfg = tracker_cfg or self.cfg.tracker
        guide = None
        if tcfg.mask_refine != "none":
            if frame is None:
                raise ValueError(f"postprocess: tracker.mask_refine = {tcfg.mask_refine!r} "
                                 "needs the frame: pass frame=")
            guide = _upload(_check_frame(frame), self.device)
        if result.host is not None:
            return self._postprocess_host(result, geom, tcfg, guide)
        h, w = geom.original
        a, b = tcfg.score_calibration
        score = result.score if (a, b) == (1.0, 0.0) else torch.sigmoid(
            a * torch.logit(result.score.clamp(1e-6, 1 - 1e-6)) + b)
        keep = result.visible & (score >= tcfg.output_score)
        if not bool(keep.any()):
            return Instances.empty(h, w, track_scores=result.track_score is not None)
        masks = configured_masks(result.mask_logits[keep], geom, tcfg, guide)
        nonempty = masks.flatten(1).any(1)
        masks = masks[nonempty]
        labels = result.running_logits[keep][nonempty][:, :-1].argmax(-1)
        names = self.class_names
        return Instances(
            ids=result.ids[keep][nonempty].cpu().numpy().astype(np.int64),
            labels=labels.cpu().numpy().astype(np.int64),
            label_names=[names[i] for i in labels.tolist()],
            scores=score[keep][nonempty].float().cpu().numpy(),
            boxes=masks_to_boxes(masks).cpu().numpy().astype(np.float32),
            masks=masks.cpu().numpy(),
            visibility=result.visibility[keep][nonempty].float().cpu().numpy(),
            first_seen=result.first_seen[keep][nonempty].cpu().numpy().astype(np.float64),
            track_scores=None if result.track_score is None
            else result.track_score[keep][nonempty].float().cpu().numpy(),
        )

    def _postprocess_host(self, result: TrackStep, geom: FrameGeometry,
                          tcfg: TrackerConfig, guide: torch.Tensor | None) -> Instances:
        """`postprocess` with one device read (see there). The masks of every visible track are
        computed (bilinear upsampling is per track, so the kept ones are bit-identical to
        upsampling the kept ones alone); the output score threshold and the empty-mask rule
        are applied to the host copies."""
        h, w = geom.original
        host = result.host
        assert host is not None
        with host_side():
            rows = torch.nonzero(host.visible).flatten()
        if rows.numel() == 0:
            return Instances.empty(h, w, track_scores=result.track_score is not None)
        a, b = tcfg.score_calibration
        score = result.score if (a, b) == (1.0, 0.0) else torch.sigmoid(
            a * torch.logit(result.score.clamp(1e-6, 1 - 1e-6)) + b)
        idx = to_device({"rows": rows}, self.device)["rows"]
        masks = configured_masks(result.mask_logits[idx], geom, tcfg, guide)
        out = {"keep": score[idx] >= tcfg.output_score,
               "nonempty": masks.flatten(1).any(1),
               "labels": result.running_logits[idx][:, :-1].argmax(-1),
               "scores": score[idx].float(), "boxes": masks_to_boxes(masks),
               "visibility": result.visibility[idx].float()}
        if result.track_score is not None:
            out["track_scores"] = result.track_score[idx].float()
        packed = masks.device.type == "cuda"
        out["masks"] = _pack_bits(masks) if packed else masks
        got = to_host(out, "instances")
        with host_side():
            sel = (got["keep"] & got["nonempty"]).numpy()
            if packed:
                bits = np.unpackbits(got["masks"].numpy()[sel], axis=1, count=h * w)
                mask_np = bits.reshape(-1, h, w).astype(bool)
            else:
                mask_np = got["masks"].numpy()[sel]
            labels = got["labels"].numpy()[sel].astype(np.int64)
            names = self.class_names
            rows_np = rows.numpy()[sel]
            return Instances(
                ids=host.ids.numpy()[rows_np].astype(np.int64),
                labels=labels,
                label_names=[names[i] for i in labels.tolist()],
                scores=got["scores"].numpy()[sel],
                boxes=got["boxes"].numpy()[sel].astype(np.float32),
                masks=mask_np,
                visibility=got["visibility"].numpy()[sel],
                first_seen=host.first_seen.numpy()[rows_np].astype(np.float64),
                track_scores=got["track_scores"].numpy()[sel] if "track_scores" in got
                else None,
            )

    # --- helpers --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self._precision == "float32":
            yield
            return
        with torch.autocast("cuda", dtype=PRECISIONS[self._precision]):
            yield

    def _check_weights(self) -> None:
        """Refuse a model whose weights were cast (`model.half()`, `.double()`,
        `.to(torch.bfloat16)`): steps run float32 weights, half precision is `set_precision`.
        One buffer and one parameter per part: cheap enough for every step."""
        for part, t in (("pixel_mean", self.pixel_mean),
                        ("segmenter", next(self.segmenter.parameters(), None)),
                        ("tracker", next(self.tracker.parameters(), None))):
            if t is not None and t.dtype != torch.float32:
                raise ValueError(
                    f"the model's weights are {str(t.dtype).removeprefix('torch.')} ({part}) "
                    "(model.half() / .double() / .to(dtype)?): steps need float32 weights; "
                    "call model.float(), and for half-precision inference "
                    "model.set_precision('float16' or 'bfloat16') (CUDA autocast; the tracker "
                    "stays float32)")

    def _check_stamp(self, state: TrackerState, stamp: float) -> float:
        """The stamp as float seconds, after checking it and the state (type, this model's
        layout, device, time order). ValueError naming the value otherwise."""
        if isinstance(stamp, bool) or not isinstance(stamp, numbers.Real):
            shown = repr(stamp)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ValueError(f"stamp must be a number of seconds, got {type(stamp).__name__} "
                             f"{shown}")
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp = {stamp}: must be finite")
        if abs(stamp) > MAX_STAMP_SECONDS:
            raise ValueError(f"stamp = {stamp!r}: looks like nanoseconds (more than "
                             f"{MAX_STAMP_SECONDS:.0e} s, the year 5138); pass seconds: divide "
                             "by 1e9 (e.g. t.nanoseconds * 1e-9 for a ROS Time)")
        if not isinstance(state, TrackerState):
            raise ValueError(f"state must be a TrackerState, got {type(state).__name__}")
        self._check_state_layout(state)
        last = _host_last_stamp(state)
        if not math.isnan(last) and stamp < last:
            raise ValueError(f"stamp = {stamp} is earlier than the state's last stamp "
                             f"{last}: time went backwards; if the stream restarted, "
                             "state = state.reset() forgets its tracks and keeps counting ids "
                             "(model.init_state() would hand out ids already published)")
        return stamp

    def _check_state_layout(self, state: TrackerState) -> None:
        """Every field of `state` has this model's shape and dtype, on its device (metadata
        only: no device read)."""
        tcfg = self.tracker.cfg
        layout = TrackerState.layout(tcfg.max_tracks, self.tracker.dim, tcfg.memory_size,
                                     tcfg.mask_res, self.tracker.num_logits)
        device = self.device
        for name, (shape, dtype) in layout.items():
            t = getattr(state, name)
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"state.{name} is a {type(t).__name__}, not a tensor (a "
                                 "TrackerState from model.init_state() or step?)")
            if tuple(t.shape) != shape or t.dtype != dtype:
                raise ValueError(
                    f"state.{name} is {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}, "
                    f"this model's states have {shape} {str(dtype).removeprefix('torch.')}: "
                    "a state from another model? (max_tracks, query width, memory_size, "
                    "mask_res and class count must match; model.init_state() makes one)")
            if t.device != device:
                raise ValueError(f"state.{name} is on {t.device}, the model on {device}: "
                                 "move the state with state.to(model.device)")


def make_tracker(cfg: ModelConfig) -> Tracker:
    """The tracker module for a model config (its widths come from the segmenter's)."""
    return Tracker(cfg.tracker, cfg.segmenter.hidden_dim, cfg.pixel_decoder.conv_dim,
                   n_levels=3, num_logits=cfg.num_classes + 1)


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pkl", ".ckpt", ".bin", ".safetensors")


def build_model(config: ModelConfig | str | Path, *,
                pretrained_backbone: bool | None = None) -> SPVIS:
    """Build an untrained SPVIS model from a ModelConfig, a preset name (tiny / lite0 / r50
    ...) or a YAML config path (str or Path). A checkpoint file is refused with a pointer to
    `SPVIS.from_checkpoint` (weights are loaded there, not here)."""
    if isinstance(config, ModelConfig):
        return SPVIS(config, pretrained_backbone=pretrained_backbone)
    if not isinstance(config, (str, Path)):
        raise ValueError(f"build_model: config must be a ModelConfig, a preset name or a YAML "
                         f"path, got {type(config).__name__}")
    suffix = Path(config).suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        raise ValueError(f"build_model: config = {str(config)!r} looks like a checkpoint; load "
                         "one with SPVIS.from_checkpoint(path) (or `spvis import` a published "
                         "one first); build_model takes a preset name or a YAML config")
    if isinstance(config, Path) or suffix in (".yaml", ".yml"):
        from spvis_model.config import load_config

        cfg = load_config(config)
    else:
        cfg = preset(config)
    return SPVIS(cfg, pretrained_backbone=pretrained_backbone)


_END = object()
"""segment_clip's end-of-iterable marker."""


def _as_list(values: object, name: str) -> list:
    """A list of `values` (any iterable: list, tuple, generator, array rows)."""
    if isinstance(values, list):
        return values
    if isinstance(values, (str, bytes, dict, TrackerState, TrackSettings)) or \
            not isinstance(values, Iterable):
        raise ValueError(f"step_batch: {name} must be a sequence with one item per stream (a "
                         f"list, tuple or generator), got {type(values).__name__}")
    return list(values)


def _check_settings(settings: object, name: str) -> None:
    if settings is not None and not isinstance(settings, TrackSettings):
        shown = repr(settings)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ValueError(f"{name} = {shown}: must be a TrackSettings or None (e.g. "
                         "model.default_settings().replace(keep_seconds=30))")


def _check_frame_size(state: TrackerState, geom: FrameGeometry) -> None:
    """Refuse a frame of another size than the state's stream: its boxes and masks are
    normalised to that frame."""
    have = state.frame_size()
    if have is not None and have != geom.original:
        (h, w), (h0, w0) = geom.original, have
        raise ValueError(f"frame is {w}x{h}, this state's stream is {w0}x{h0}: one "
                         "TrackerState per camera; after a resolution change call "
                         "state = state.reset() (ids continue)")


def _record_frame_size(old: TrackerState, new: TrackerState, geom: FrameGeometry) -> None:
    """Write the frame's (H, W) into the new state (a new tensor only when it changes, from
    [0, 0]: no upload, no device read), with its host copy for the next check."""
    hw = geom.original
    if old.frame_size() == hw:
        t = old.frame_hw
    else:
        t = torch.full((2,), hw[1], dtype=torch.int64, device=old.frame_hw.device)
        t[0].fill_(hw[0])
    new.frame_hw = t
    new._host_frame_hw = (t, hw)


def _check_frame(frame: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validate an H×W×3 uint8 RGB frame; return it as a tensor (no copy when possible)."""
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8:
            raise ValueError(f"frame dtype {frame.dtype}: must be uint8 RGB"
                             + _dtype_hint(np.issubdtype(frame.dtype, np.floating)))
        # A read-only array (np.frombuffer over a ROS message, a memory map) is copied: torch
        # cannot share memory it may not write, and warns once per process if asked to.
        t = torch.from_numpy(np.ascontiguousarray(frame) if frame.flags.writeable
                             else np.array(frame, order="C"))
    elif isinstance(frame, torch.Tensor):
        if frame.dtype != torch.uint8:
            raise ValueError(f"frame dtype {frame.dtype}: must be torch.uint8 RGB"
                             + _dtype_hint(frame.is_floating_point()))
        t = frame
    else:
        raise ValueError(f"frame must be a numpy array or torch tensor, got "
                         f"{type(frame).__name__}")
    if t.dim() != 3 or t.shape[2] != 3:
        raise ValueError(f"frame shape {tuple(t.shape)}: must be (H, W, 3) RGB{_shape_hint(t)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"frame shape {tuple(t.shape)}: empty image")
    if t.shape[0] * t.shape[1] > MAX_FRAME_PIXELS:
        raise ValueError(f"frame shape {tuple(t.shape)}: larger than {MAX_FRAME_PIXELS} pixels")
    return t


def _dtype_hint(floating: bool) -> str:
    return (" (0..255); for floats in [0, 1] convert with (x * 255).clip(0, 255).astype(np.uint8)"
            if floating else " (0..255)")


def _shape_hint(t: torch.Tensor) -> str:
    """How to fix a frame of the wrong shape, when it is recognisable."""
    shape = tuple(t.shape)
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
        return ("; looks like CHW (channels first): use frame.permute(1, 2, 0) (torch) or "
                "frame.transpose(1, 2, 0) (numpy)")
    if len(shape) == 3 and shape[2] == 4:
        return "; looks like RGBA: drop the alpha channel with frame[..., :3]"
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return "; looks like a gray image: repeat it to 3 channels"
    if len(shape) == 4:
        return "; looks like a batch: step one frame at a time, or use step_batch"
    return ""


def _upload(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host frame on `device`: through pinned memory without blocking the host on CUDA (a
    plain ``.to(device)`` from pageable memory waits for the GPU to catch up)."""
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _host_last_stamp(state: TrackerState) -> float:
    """The state's last stamp (NaN before the first frame), from the host copy the tracker
    leaves on the states it returns while that copy is still the state's own tensor, else read
    from the device."""
    cached = getattr(state, "_host_last_stamp", None)
    if cached is not None and cached[0] is state.last_stamp:
        return float(cached[1])
    return float(state.last_stamp)


def _pack_bits(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, ceil(H*W / 8)) uint8, 8 pixels a byte, first pixel in the high
    bit (numpy's unpackbits order): an eighth of the bytes to copy."""
    n = masks.shape[0]
    flat = masks.reshape(n, -1).to(torch.uint8)
    pad = (-flat.shape[1]) % 8
    if pad:
        flat = F.pad(flat, (0, pad))
    weights = torch.full((8,), 1, dtype=torch.uint8, device=masks.device)
    for k in range(7):
        weights[k] = 1 << (7 - k)
    return (flat.view(n, -1, 8) * weights).sum(-1, dtype=torch.uint8)
