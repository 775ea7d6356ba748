"""Typed model configuration: dataclasses, presets, YAML load/save, validation.

Every field is checked by `ModelConfig.validate()`; a bad value raises `ConfigError` naming the
dotted field path and the value (e.g. ``tracker.keep_seconds = -1.0: must be > 0``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

BACKBONES = ("tiny", "lite0", "r50", "r101", "swin-t", "swin-s", "swin-b", "swin-l")
#: Backbones whose widths (`backbone.width`, `backbone.num_heads`) may be set, e.g. by the importer.
SIZED_BACKBONES = ("r50", "r101", "swin-t", "swin-s", "swin-b", "swin-l")
CHANNEL_ORDERS = ("rgb", "bgr")
ASSOCIATIONS = ("pgt", "minvis")
NMS_MEASURES = ("soft_iou", "hard_ios")
REFINE_MODES = ("none", "guided")
#: Most guided-filter passes `tracker.mask_refine_passes` may ask for (each pass widens the
#: neighbourhood a published pixel depends on by two window radii).
MAX_REFINE_PASSES = 4
SCORE_MASKS = ("low", "full")
TRACKER_SWITCHES = ("use_reid", "use_sim", "use_referring", "use_correction", "use_rcp")
# Fields older spvis versions wrote that no longer exist: dropped on load, with the reason.
RETIRED_FIELDS: dict[str, str] = {
    "tracker.score_momentum": "track scores are now the mean of the matched detection scores",
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the value."""


@dataclass
class InputConfig:
    """How frames are brought to the network.

    Frames (always given as RGB) are resized with the aspect kept, normalised, then padded
    bottom/right to a multiple of 32. Outputs come back at the frame's own resolution.

    - Resize rule (`resized`): with `min_size` = 0 (the default) the longer side becomes
      `max_size`. With `min_size` > 0 it is detectron2's test-time ResizeShortestEdge, which
      Mask2Former, MinVIS and DVIS were evaluated with: the shorter side becomes `min_size`,
      unless the longer side would then exceed `max_size`, in which case the longer side
      becomes `max_size`; sizes are rounded half up.
    - `pixel_mean` / `pixel_std`: 3 numbers each on the 0..255 scale, in the network's channel
      order; empty = the backbone's own.
    - `channel_order`: the order the network was trained on, "rgb" or "bgr" (the frame's
      channels are reversed before normalisation for "bgr").
    """

    max_size: int = 640
    min_size: int = 0
    pixel_mean: list[float] = field(default_factory=list)
    pixel_std: list[float] = field(default_factory=list)
    channel_order: str = "rgb"

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) a height x width frame is resized to (before padding)."""
        if self.min_size <= 0:
            scale = self.max_size / max(height, width)
            return max(1, round(height * scale)), max(1, round(width * scale))
        scale = self.min_size / min(height, width)
        new_h, new_w = height * scale, width * scale
        if max(new_h, new_w) > self.max_size:
            shrink = self.max_size / max(new_h, new_w)
            new_h, new_w = new_h * shrink, new_w * shrink
        return max(1, int(new_h + 0.5)), max(1, int(new_w + 0.5))


@dataclass
class BackboneConfig:
    """The backbone by name; for r50 / r101 / swin-* also its widths.

    Depths (and the Swin window size) are fixed by the name. `width` 0 = the published width:
    r50 / r101 64 (stem and res2 bottleneck channels; each stage doubles them, outputs are 4x),
    swin-t / swin-s 96, swin-b 128, swin-l 192 (patch-embedding channels C; stages C..8C).
    `num_heads`: Swin heads per stage; empty = the published C/32 x (1, 2, 4, 8). The importer
    (spvis_model.importers) sets both from a checkpoint's tensor shapes.
    """

    name: str = "tiny"
    pretrained: bool = False
    width: int = 0
    num_heads: list[int] = field(default_factory=list)


@dataclass
class PixelDecoderConfig:
    conv_dim: int = 256
    mask_dim: int = 256
    num_encoder_layers: int = 6
    n_heads: int = 8
    n_points: int = 4
    ffn_dim: int = 1024
    norm_groups: int = 32


@dataclass
class SegmenterConfig:
    """The masked-attention transformer decoder (Mask2Former's predictor)."""

    hidden_dim: int = 256
    num_queries: int = 100
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 9


@dataclass
class TrackerConfig:
    """SIM + PGT + RCP and the track life cycle. Times are seconds (header stamps).

    `keep_seconds` and `tentative_seconds` are the defaults of the run-time `TrackSettings`
    (spvis_model.tracker.settings): how long a lost track stays re-identifiable, and how long
    a track seen once waits for a second sighting. The `use_*` switches turn stages off for
    ablations (memory re-identification, SIM, referring decoder, error correction, RCP).
    `memory_from` says what a matched track's reference embedding and memory snapshots are
    written from: its output query ("query") or the matched detection's embedding
    ("detection", in the segmenter's space whatever stage 2 learns). `publish_min_hits` > 1
    publishes a track only from its n-th matched frame on (PGT only;
    the track exists, and is matched, from its first). `score_model` [b, w_s, w_h]
    ranks whole tracks (result files, AP) by their learned probability of being right,
    sigmoid(b + w_s logit(score) + w_h log(hits)) (hits: matched frames so far; fitted on
    stage-2 training videos by bench/fit_track_score.py) instead of their running detection
    score; per-frame published scores do not change (empty: off). Error
    correction runs only on frames at most `correction_max_interval` seconds after the
    previous one (default 0.05 s: streams of 20 fps and more). Chosen on validation sets
    (docs/model.md): on every frame it gained +0.005 AP at 25-30 fps, but cost HOTA 0.024 and
    IDF1 0.039 at 8-15 fps and 0.009 AP at 2-5 fps. `.inf` runs it on every frame.
    `nms_measure` is how candidate NMS (`nms_iou`, the threshold, 1.0: off) measures two
    detections' overlap: "soft_iou" (IoU of the mask probabilities) or "hard_ios" (masks at
    0.5, intersection over the smaller: a query covering part of an object another query
    covers whole is its duplicate, whatever the size ratio; chosen on validation, docs/model.md).
    A detection's score is its class probability times its mask quality (the mean mask
    probability inside the mask), measured on the tracker's R×R masks (`score_masks: low`) or on
    the segmenter's stride-4 masks (`full`, Mask2Former's score; an object smaller than about
    one R×R cell scores 0 on `low`). `birth_masks` says the same of the score a detection needs
    to start a track (`new_track_score`): with `score_masks: full` and `birth_masks: low` a
    track, once started, is followed as small as the stride-4 masks see it, but only a
    detection that covers R×R cells starts one (a small real thing that moves, such as a
    distant pedestrian, starts none; docs/model.md).
    `score_calibration` maps the tracker's scores to the probability that a published track
    is right (fitted on validation data, spvis_model.eval.calibration); `output_score` and the
    node's `score_threshold` apply to the calibrated scores.
    `mask_refine` is how a published mask is made from its track's stride-4 mask logits:
    "none" (upsampled bilinearly, logit > 0) or "guided" (a colour guided filter against the
    frame, spvis_model.mask_refine: edges follow the image's), with window radius
    `mask_refine_radius` in network-input pixels and regularisation `mask_refine_eps`,
    applied `mask_refine_passes` times (each pass filters the previous one's output: the edge
    moves further onto the image's).
    """

    association: str = "pgt"
    max_tracks: int = 32
    memory_size: int = 4
    num_layers: int = 2
    nheads: int = 8
    sim_points: int = 4
    mask_res: int = 32
    keep_seconds: float = 60.0
    tentative_seconds: float = 1.0
    tentative_intervals: float = 3.0
    detect_score: float = 0.3
    nms_iou: float = 1.0
    nms_measure: str = "soft_iou"
    score_masks: str = "low"
    birth_masks: str = "low"
    new_track_score: float = 0.5
    active_gate: float = 1.2
    lost_gate: float = 0.4
    iou_weight: float = 1.0
    correction_margin: float = 0.1
    correction_max_interval: float = 0.05
    snapshot_min_score: float = 0.6
    snapshot_min_visibility: float = 0.5
    output_score: float = 0.3
    coast_seconds: float = 0.0
    publish_min_hits: int = 1
    score_model: list[float] = field(default_factory=list)
    memory_from: str = "query"
    score_calibration: list[float] = field(default_factory=lambda: [1.0, 0.0])
    output_nms_iou: float = 1.0
    mask_refine: str = "none"
    mask_refine_radius: float = 5.0
    mask_refine_eps: float = 1e-3
    mask_refine_passes: int = 1
    lost_by_position: bool = False
    use_reid: bool = True
    use_sim: bool = True
    use_referring: bool = True
    use_correction: bool = True
    use_rcp: bool = True


@dataclass
class ModelConfig:
    """Everything needed to build an SPVIS model (weights aside)."""

    name: str = "tiny"
    class_names: list[str] = field(default_factory=lambda: ["object"])
    input: InputConfig = field(default_factory=InputConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a plain dict (as YAML gives); unknown or mistyped fields raise ConfigError."""
        cfg = _from_dict(cls, data, "")
        cfg.validate()
        return cfg

    def validate(self) -> ModelConfig:
        """Raise ConfigError for the first invalid field; return self. Numpy scalars
        (np.int64, np.float32, np.bool_, ...) are accepted like Python numbers and stored as
        them (in place), so the config still saves as YAML and loads with weights_only."""
        _plain_numbers(self)
        _check(isinstance(self.name, str) and self.name != "", "name", self.name, "a non-empty str")
        _check(isinstance(self.class_names, list) and len(self.class_names) > 0
               and all(isinstance(c, str) and c for c in self.class_names),
               "class_names", self.class_names, "a non-empty list of non-empty str")
        _check(len(set(self.class_names)) == len(self.class_names), "class_names",
               self.class_names, "unique names")
        _positive_int("input.max_size", self.input.max_size, minimum=32)
        _validate_input(self.input)
        _check(self.backbone.name in BACKBONES, "backbone.name", self.backbone.name,
               f"one of {BACKBONES}")
        _check(isinstance(self.backbone.pretrained, bool), "backbone.pretrained",
               self.backbone.pretrained, "a bool")
        _validate_backbone_widths(self.backbone)
        pd = self.pixel_decoder
        for name in ("conv_dim", "mask_dim", "num_encoder_layers", "n_heads", "n_points",
                     "ffn_dim", "norm_groups"):
            _positive_int(f"pixel_decoder.{name}", getattr(pd, name),
                          minimum=0 if name == "num_encoder_layers" else 1)
        _check(pd.conv_dim % pd.norm_groups == 0, "pixel_decoder.norm_groups", pd.norm_groups,
               f"a divisor of pixel_decoder.conv_dim ({pd.conv_dim})")
        _check(pd.conv_dim % pd.n_heads == 0, "pixel_decoder.n_heads", pd.n_heads,
               f"a divisor of pixel_decoder.conv_dim ({pd.conv_dim})")
        sg = self.segmenter
        for name in ("hidden_dim", "num_queries", "nheads", "dim_feedforward", "dec_layers"):
            _positive_int(f"segmenter.{name}", getattr(sg, name))
        _check(sg.hidden_dim % sg.nheads == 0, "segmenter.nheads", sg.nheads,
               f"a divisor of segmenter.hidden_dim ({sg.hidden_dim})")
        _check(pd.mask_dim == sg.hidden_dim, "pixel_decoder.mask_dim", pd.mask_dim,
               f"equal to segmenter.hidden_dim ({sg.hidden_dim})")
        tr = self.tracker
        _check(tr.association in ASSOCIATIONS, "tracker.association", tr.association,
               f"one of {ASSOCIATIONS}")
        for name in ("max_tracks", "memory_size", "num_layers", "nheads", "sim_points"):
            _positive_int(f"tracker.{name}", getattr(tr, name))
        _positive_int("tracker.mask_res", tr.mask_res, minimum=4)
        _check(sg.hidden_dim % tr.nheads == 0, "tracker.nheads", tr.nheads,
               f"a divisor of segmenter.hidden_dim ({sg.hidden_dim})")
        _check(tr.association != "minvis" or tr.max_tracks >= sg.num_queries,
               "tracker.max_tracks", tr.max_tracks,
               f">= segmenter.num_queries ({sg.num_queries}) for association 'minvis' "
               "(one slot per query)")
        _positive_float("tracker.keep_seconds", tr.keep_seconds)
        _positive_float("tracker.tentative_seconds", tr.tentative_seconds)
        _check(_is_number(tr.tentative_intervals) and math.isfinite(tr.tentative_intervals)
               and tr.tentative_intervals >= 0, "tracker.tentative_intervals",
               tr.tentative_intervals, "a finite number >= 0 (0: seconds only)")
        cal = tr.score_calibration
        _check(isinstance(cal, (list, tuple)) and len(cal) == 2
               and all(_is_number(v) and math.isfinite(v) for v in cal) and cal[0] > 0,
               "tracker.score_calibration", cal,
               "[a, b] with a > 0: published score = sigmoid(a * logit(s) + b); [1, 0] = as is")
        _check(_is_number(tr.coast_seconds) and math.isfinite(tr.coast_seconds)
               and tr.coast_seconds >= 0, "tracker.coast_seconds", tr.coast_seconds,
               "a finite number of seconds >= 0 (0: off)")
        _check(tr.memory_from in ("query", "detection"), "tracker.memory_from", tr.memory_from,
               "'query' (the track's output query) or 'detection' (the matched detection's "
               "embedding)")
        _check(isinstance(tr.publish_min_hits, int) and not isinstance(tr.publish_min_hits, bool)
               and tr.publish_min_hits >= 1, "tracker.publish_min_hits", tr.publish_min_hits,
               "an int >= 1 (1: a track is published from its first frame)")
        _check(isinstance(tr.score_model, (list, tuple))
               and (len(tr.score_model) == 0 or (len(tr.score_model) == 3 and all(
                   _is_number(x) and math.isfinite(x) for x in tr.score_model))),
               "tracker.score_model", tr.score_model,
               "[] (off) or 3 finite numbers [b, w_s, w_h]")
        for name in (*TRACKER_SWITCHES, "lost_by_position"):
            _check(isinstance(getattr(tr, name), bool), f"tracker.{name}", getattr(tr, name),
                   "a bool")
        for name in ("score_masks", "birth_masks"):
            _check(getattr(tr, name) in SCORE_MASKS, f"tracker.{name}", getattr(tr, name),
                   f"one of {', '.join(SCORE_MASKS)}")
        _check(tr.nms_measure in NMS_MEASURES, "tracker.nms_measure", tr.nms_measure,
               f"one of {', '.join(NMS_MEASURES)}")
        for name in ("detect_score", "nms_iou", "output_nms_iou", "new_track_score",
                     "snapshot_min_score",
                     "snapshot_min_visibility", "output_score"):
            _unit_float(f"tracker.{name}", getattr(tr, name))
        for name in ("active_gate", "lost_gate", "iou_weight", "correction_margin"):
            value = getattr(tr, name)
            _check(_is_number(value) and math.isfinite(value) and value >= 0,
                   f"tracker.{name}", value, "a finite number >= 0")
        _check(tr.mask_refine in REFINE_MODES, "tracker.mask_refine", tr.mask_refine,
               f"one of {', '.join(REFINE_MODES)}")
        _check(_is_number(tr.mask_refine_radius) and math.isfinite(tr.mask_refine_radius)
               and 0.5 <= tr.mask_refine_radius <= 64, "tracker.mask_refine_radius",
               tr.mask_refine_radius, "a number of network-input pixels in [0.5, 64]")
        _check(_is_number(tr.mask_refine_eps) and math.isfinite(tr.mask_refine_eps)
               and tr.mask_refine_eps > 0, "tracker.mask_refine_eps", tr.mask_refine_eps,
               "a finite number > 0")
        passes = tr.mask_refine_passes
        _check(isinstance(passes, int) and not isinstance(passes, bool)
               and 1 <= passes <= MAX_REFINE_PASSES, "tracker.mask_refine_passes", passes,
               f"an integer in [1, {MAX_REFINE_PASSES}]")
        value = tr.correction_max_interval
        _check(_is_number(value) and not math.isnan(value) and value > 0,
               "tracker.correction_max_interval", value,
               "a number of seconds > 0 (.inf: every frame)")
        return self


# --- presets -------------------------------------------------------------------------------------

def preset(name: str) -> ModelConfig:
    """The named preset: `tiny` (tests, CPU, 128 px), `lite0` (shipped demo model), and the
    Mask2Former layouts `r50`, `r101`, `swin-t`, `swin-s`, `swin-b`, `swin-l` (random weights;
    `spvis import` makes real ones from published checkpoints)."""
    if name == "tiny":
        cfg = ModelConfig(
            name="tiny",
            input=InputConfig(max_size=128),
            backbone=BackboneConfig(name="tiny", pretrained=False),
            pixel_decoder=PixelDecoderConfig(conv_dim=64, mask_dim=64, num_encoder_layers=2,
                                             n_heads=4, n_points=4, ffn_dim=128, norm_groups=8),
            segmenter=SegmenterConfig(hidden_dim=64, num_queries=16, nheads=4,
                                      dim_feedforward=128, dec_layers=3),
            tracker=TrackerConfig(max_tracks=16, memory_size=4, num_layers=1, nheads=4),
        )
    elif name == "lite0":
        cfg = ModelConfig(
            name="lite0",
            input=InputConfig(max_size=640),
            backbone=BackboneConfig(name="lite0", pretrained=True),
            pixel_decoder=PixelDecoderConfig(conv_dim=128, mask_dim=128, num_encoder_layers=3,
                                             n_heads=8, n_points=4, ffn_dim=512, norm_groups=32),
            segmenter=SegmenterConfig(hidden_dim=128, num_queries=50, nheads=8,
                                      dim_feedforward=512, dec_layers=6),
            tracker=TrackerConfig(max_tracks=64, memory_size=4, num_layers=2, nheads=8),
        )
    elif name in SIZED_BACKBONES:
        # Mask2Former's COCO instance-segmentation layout (its Swin-L uses 200 queries); the
        # input rule here is spvis's 640 px one, imported checkpoints carry their own.
        cfg = ModelConfig(
            name=name,
            input=InputConfig(max_size=640),
            backbone=BackboneConfig(name=name, pretrained=False),
            pixel_decoder=PixelDecoderConfig(),
            segmenter=SegmenterConfig(num_queries=200 if name == "swin-l" else 100),
            tracker=TrackerConfig(max_tracks=64, memory_size=4, num_layers=3, nheads=8),
        )
    else:
        raise ConfigError(f"unknown preset {name!r}; choose one of {BACKBONES}")
    return cfg.validate()


def not_utf8(exc: UnicodeDecodeError) -> str:
    """One line for a file that is not UTF-8 text: the first bad byte and its offset."""
    return f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"


def load_config(path: str | Path) -> ModelConfig:
    """Read a YAML config (safe loader: no code runs). A mapping with `preset: NAME` starts
    from that preset and overrides the fields given."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config {path}: {not_utf8(exc)}") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a YAML mapping, got {type(data).__name__}")
    try:
        base = data.pop("preset", None)
        if base is not None:
            return ModelConfig.from_dict(_merge(preset(str(base)).to_dict(), data))
        return ModelConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {exc}") from exc


def save_config(cfg: ModelConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# --- helpers -------------------------------------------------------------------------------------

def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    retired = [k for k in data if f"{prefix}.{k}" in RETIRED_FIELDS]
    for key in retired:
        warnings.warn(f"config field {prefix}.{key} is no longer used and was dropped: "
                      f"{RETIRED_FIELDS[f'{prefix}.{key}']}", stacklevel=3)
    data = {k: v for k, v in data.items() if k not in retired}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix or "config"
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        sub = _SECTIONS.get(name) if cls is ModelConfig else None
        path = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _from_dict(sub, value, path) if sub is not None else value
    return cls(**kwargs)


_SECTIONS: dict[str, type] = {
    "input": InputConfig,
    "backbone": BackboneConfig,
    "pixel_decoder": PixelDecoderConfig,
    "segmenter": SegmenterConfig,
    "tracker": TrackerConfig,
}


def _validate_input(inp: InputConfig) -> None:
    _positive_int("input.min_size", inp.min_size, minimum=0)
    for name, positive in (("pixel_mean", False), ("pixel_std", True)):
        value = getattr(inp, name)
        _check(isinstance(value, list) and len(value) in (0, 3)
               and all(_is_number(v) and math.isfinite(v) and (v > 0 or not positive)
                       for v in value),
               f"input.{name}", value,
               "[] (the backbone's) or 3 finite numbers" + (" > 0" if positive else ""))
    _check(inp.channel_order in CHANNEL_ORDERS, "input.channel_order", inp.channel_order,
           f"one of {CHANNEL_ORDERS}")


def _validate_backbone_widths(bb: BackboneConfig) -> None:
    _positive_int("backbone.width", bb.width, minimum=0)
    _check(isinstance(bb.num_heads, list), "backbone.num_heads", bb.num_heads, "a list")
    if bb.name not in SIZED_BACKBONES:
        _check(bb.width == 0, "backbone.width", bb.width,
               f"0 for backbone {bb.name!r} (widths apply to {SIZED_BACKBONES})")
    if not bb.name.startswith("swin"):
        _check(bb.num_heads == [], "backbone.num_heads", bb.num_heads,
               f"[] for backbone {bb.name!r} (heads apply to Swin only)")
        return
    if bb.num_heads:
        _check(len(bb.num_heads) == 4 and all(isinstance(h, int) and not isinstance(h, bool)
                                              and h > 0 for h in bb.num_heads),
               "backbone.num_heads", bb.num_heads, "[] or 4 positive ints (one per stage)")
        if bb.width:
            _check(all((bb.width << i) % h == 0 for i, h in enumerate(bb.num_heads)),
                   "backbone.num_heads", bb.num_heads,
                   f"divisors of the stage widths {[bb.width << i for i in range(4)]}")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (lists element by element); anything
    else unchanged."""
    if isinstance(value, np.generic) and isinstance(value, (np.bool_, np.integer,
                                                            np.floating)):
        return value.item()
    if isinstance(value, list):
        plain = [_plain(v) for v in value]
        return value if all(p is v for p, v in zip(plain, value, strict=True)) else plain
    return value


def _plain_numbers(cfg: ModelConfig) -> None:
    """Replace numpy scalars in every section of `cfg` by Python numbers, in place."""
    for section in (cfg, *(getattr(cfg, name) for name in _SECTIONS)):
        if not dataclasses.is_dataclass(section):
            continue
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            plain = _plain(value)
            if plain is not value:
                setattr(section, f.name, plain)


def _check(ok: bool, field_name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name} = {value!r}: must be {expected}")


def _positive_int(field_name: str, value: object, minimum: int = 1) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
           field_name, value, f"an int >= {minimum}")


def _positive_float(field_name: str, value: object) -> None:
    _check(_is_number(value) and math.isfinite(value) and value > 0, field_name, value,
           "a finite number > 0")


def _unit_float(field_name: str, value: object) -> None:
    _check(_is_number(value) and 0.0 <= value <= 1.0, field_name, value, "a number in [0, 1]")
