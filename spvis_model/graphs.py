"""The segmenter captured for fixed input sizes: CUDA graphs or ``torch.compile``, checked
against eager, with loud fallbacks.

A node's inputs have one size per camera, so the segmenter's forward for a given
(batch, 3, Hp, Wp) input can be recorded once and replayed: no Python, no per-kernel launch
cost. `SegmenterGraphs` does that lazily, on the first input of each shape:

- mode ``"graphs"``: `torch.cuda.CUDAGraph` capture of the whole segmenter; if that fails
  (anything that reads the device on the host cannot be captured), of each stage on its own
  (backbone, pixel decoder, transformer decoder), the stages that fail running eagerly;
- mode ``"compile"``: ``torch.compile`` of the whole forward, else of each stage. On CUDA
  ``mode="reduce-overhead"`` (Inductor plus CUDA graphs); on the CPU Inductor's default mode
  (generated C++, which needs a C++ compiler at run time; the first frame of each input size
  compiles, about a minute for lite0 on one core). MSDeformAttn runs between compiled graphs;
- mode ``"eager"``: nothing captured.

Every captured or compiled stage is checked against the eager stage on the input it was built
on (relative max difference <= `rtol`; 1e-4 in float32, 2e-2 in half precision). A stage that
cannot be captured or compiled, or does not match, runs eagerly, and each such fallback is
reported as a `CaptureFallbackWarning` (a RuntimeWarning) and a WARNING log line naming the
stage, the shape and the reason: never silently. `describe()` says what runs for each shape.

Outputs are copied out of the graph's static buffers, so a result stays valid after the next
replay.

    model.capture("graphs")        # SPVIS.capture; then model.step / model.step_batch use it
    model.segment_graphs.describe()
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spvis_model.modeling.segmenter import SegmenterOutput

MODES: tuple[str, ...] = ("eager", "graphs", "compile")
LOG = logging.getLogger("spvis_model.graphs")
STAGES: tuple[str, ...] = ("backbone", "pixel_decoder", "predictor")


class CaptureFallbackWarning(RuntimeWarning):
    """A segmenter stage runs eagerly although capture or compilation was asked for."""


@dataclass
class StageStatus:
    """What runs for one stage of one input shape.

    Attributes:
        stage: "segmenter" (the whole forward) or one of `STAGES`.
        runs: "graph", "compiled" or "eager".
        reason: why it runs eagerly ("" otherwise); max_rel_diff: against eager at build time.
    """

    stage: str
    runs: str
    reason: str = ""
    max_rel_diff: float = 0.0


# --- tensor trees (tensors inside dicts, lists, tuples, dataclasses) -------------------------
def tree_map(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """`fn` applied to every tensor of `obj`, the structure kept."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: tree_map(fn, v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(tree_map(fn, v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: tree_map(fn, getattr(obj, f.name))
                                           for f in dataclasses.fields(obj)})
    return obj


def tree_tensors(obj: Any) -> list[torch.Tensor]:
    """The tensors of `obj` in a fixed order."""
    out: list[torch.Tensor] = []
    tree_map(out.append, obj)
    return out


def max_rel_diff(got: Any, want: Any) -> float:
    """max |got - want| / max(|want|, 1e-6) over every floating tensor of two equal trees
    (inf when structures, shapes or integer values differ)."""
    a, b = tree_tensors(got), tree_tensors(want)
    if len(a) != len(b):
        return float("inf")
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape:
            return float("inf")
        if not y.is_floating_point():
            if not torch.equal(x, y):
                return float("inf")
            continue
        if y.numel() == 0:
            continue
        x64, y64 = x.double(), y.double()
        scale = max(float(y64.abs().max()), 1e-6)
        worst = max(worst, float((x64 - y64).abs().max()) / scale)
    return worst


# --- one captured callable ------------------------------------------------------------------
class GraphedCallable:
    """`fn(*args)` recorded as a CUDA graph for the shapes of `example` (tensor trees).
    Calling it copies the arguments into the static inputs, replays, and returns copies of the
    static outputs."""

    def __init__(self, fn: Callable[..., Any], example: tuple, pool: Any,
                 context: Callable[[], Any]) -> None:
        with torch.inference_mode(False):  # plain tensors: copy_ works in and out of it
            self.static_in = tree_map(lambda t: t.detach().clone(), example)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.no_grad(), context():
            for _ in range(2):  # warm-up: lazy initialisation, cuBLAS handles, autotuning
                fn(*self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool), torch.no_grad(), context():
            self.static_out = fn(*self.static_in)

    def __call__(self, *args: Any) -> Any:
        for dst, src in zip(tree_tensors(self.static_in), tree_tensors(args), strict=True):
            dst.copy_(src)
        self.graph.replay()
        return tree_map(lambda t: t.clone(), self.static_out)


class CompiledCallable:
    """``torch.compile(fn)`` for the example's device: on CUDA ``mode="reduce-overhead"``,
    outputs copied out (its CUDA graph buffers are reused by the next call); on the CPU the
    default mode, whose outputs are new tensors on every call."""

    def __init__(self, fn: Callable[..., Any], example: tuple, pool: Any,
                 context: Callable[[], Any]) -> None:
        del pool
        self.cuda = any(t.is_cuda for t in tree_tensors(example))
        self.fn = torch.compile(fn, mode="reduce-overhead" if self.cuda else "default",
                                dynamic=False)
        self.context = context
        for _ in range(3 if self.cuda else 1):  # compile (then record the CUDA graph)
            self(*example)

    def __call__(self, *args: Any) -> Any:
        with self.context():
            out = self.fn(*args)
        return tree_map(lambda t: t.clone(), out) if self.cuda else out


Builder = Callable[[Callable[..., Any], tuple, Any, Callable[[], Any]], Callable[..., Any]]
BUILDERS: dict[str, tuple[str, Builder]] = {
    "graphs": ("graph", GraphedCallable), "compile": ("compiled", CompiledCallable)}


# --- the segmenter ----------------------------------------------------------------------------
class SegmenterGraphs:
    """A segmenter's forward captured per input shape (see the module docstring).

    Args:
        segmenter: the `Segmenter` (weights are shared, not copied).
        mode: one of `MODES`.
        rtol: largest relative max difference to eager accepted (default: 1e-4 in float32,
            2e-2 under half-precision autocast).
        builders: {mode: (label, builder)}; tests replace them to exercise the fallbacks.
        require_cuda: mode "graphs" falls back (loudly) on a non-CUDA input; tests of the
            fallback logic with stand-in builders turn it off. ("compile" runs on the CPU.)
    """

    def __init__(self, segmenter: nn.Module, mode: str, rtol: float | None = None,
                 builders: dict[str, tuple[str, Builder]] | None = None,
                 require_cuda: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"capture mode = {mode!r}: must be one of {list(MODES)}")
        self.segmenter = segmenter
        self.mode = mode
        self.autocast_dtype: torch.dtype | None = None
        self._rtol = rtol
        self.builders = builders or BUILDERS
        self.require_cuda = require_cuda
        self.plans: dict[tuple, tuple[list[StageStatus], Callable[[torch.Tensor], Any]]] = {}
        self._pool: Any = None

    # -- running --------------------------------------------------------------------------------
    @property
    def rtol(self) -> float:
        if self._rtol is not None:
            return self._rtol
        return 1e-4 if self.autocast_dtype is None else 2e-2

    def __call__(self, images: torch.Tensor, autocast_dtype: torch.dtype | None = None
                 ) -> SegmenterOutput:
        """The segmenter's output for (B, 3, Hp, Wp) images, run under CUDA autocast in
        `autocast_dtype` (None: float32); built on the first call of each shape and dtype."""
        self.autocast_dtype = autocast_dtype
        key = (tuple(images.shape), images.dtype, str(images.device), autocast_dtype)
        if key not in self.plans:
            self.plans[key] = self._build(images)
        return self.plans[key][1](images)

    def describe(self) -> str:
        """One line per captured input shape: what runs for each stage."""
        if not self.plans:
            return f"segmenter capture {self.mode}: nothing built yet"
        lines = []
        for key, (status, _) in self.plans.items():
            parts = [f"{s.stage}: {s.runs}" + (f" ({s.reason})" if s.reason else "")
                     for s in status]
            lines.append(f"{self.mode} {tuple(key[0])}: " + "; ".join(parts))
        return "\n".join(lines)

    def status(self, shape: tuple[int, ...]) -> list[StageStatus]:
        """What runs for input `shape` (built by an earlier call)."""
        for key, (status, _) in self.plans.items():
            if tuple(key[0]) == tuple(shape):
                return status
        raise KeyError(f"no capture built for input shape {tuple(shape)}")

    # -- building -------------------------------------------------------------------------------
    def _context(self) -> Any:
        if self.autocast_dtype is None:
            return _nullcontext()
        return torch.autocast("cuda", dtype=self.autocast_dtype, cache_enabled=False)

    def _eager_stages(self) -> dict[str, Callable[..., Any]]:
        seg = self.segmenter
        return {"backbone": seg.backbone, "pixel_decoder": seg.sem_seg_head.pixel_decoder,
                "predictor": seg.sem_seg_head.predictor}

    def _build(self, images: torch.Tensor) -> tuple[list[StageStatus], Callable]:
        shape = tuple(images.shape)
        eager = self._eager_stages()

        def run_eager(x: torch.Tensor) -> SegmenterOutput:
            with self._context():
                return self.segmenter(x)

        if self.mode == "eager":
            return [StageStatus("segmenter", "eager", "capture mode eager")], run_eager
        if self.require_cuda and self.mode == "graphs" and images.device.type != "cuda":
            reason = (f"capture mode {self.mode!r} needs a CUDA device; the segmenter is on "
                      f"{images.device}")
            self._fallback("segmenter", shape, reason)
            return [StageStatus("segmenter", "eager", reason)], run_eager
        label, builder = self.builders[self.mode]
        if self._pool is None and self.mode == "graphs" and images.device.type == "cuda":
            self._pool = torch.cuda.graph_pool_handle()
        # 1. The whole forward as one graph.
        whole = self._try(builder, label, "segmenter", self.segmenter, (images,), shape)
        if whole[0].runs != "eager":
            return [whole[0]], whole[1]
        LOG.warning("segmenter for input %s: not captured as one %s (%s); trying stage by "
                    "stage", shape, label, whole[0].reason)
        # 2. Stage by stage, each on the previous stage's eager output.
        with self._context():
            feats = eager["backbone"](images)
            pixels = eager["pixel_decoder"](feats)
        examples = {"backbone": (images,), "pixel_decoder": (feats,),
                    "predictor": (pixels.multi_scale_features, pixels.mask_features)}
        statuses, fns = [whole[0]], {}
        for name in STAGES:
            st, fn = self._try(builder, label, name, eager[name], examples[name], shape)
            statuses.append(st)
            fns[name] = fn

        def run(x: torch.Tensor) -> SegmenterOutput:
            f = fns["backbone"](x)
            p = fns["pixel_decoder"](f)
            d = fns["predictor"](p.multi_scale_features, p.mask_features)
            return SegmenterOutput(decoder=d, pixels=p)

        return statuses, run

    def _try(self, builder: Builder, label: str, stage: str, fn: Callable[..., Any],
             example: tuple, shape: tuple) -> tuple[StageStatus, Callable[..., Any]]:
        """Build `stage`, check it against eager; on any failure the eager stage, loudly."""

        def eager(*args: Any) -> Any:
            with self._context():
                return fn(*args)

        try:
            built = builder(fn, example, self._pool, self._context)
            got = built(*example)
            want = eager(*example)
            diff = max_rel_diff(got, want)
        except Exception as exc:  # any failure to capture or compile: run eagerly, loudly
            reason = f"{label} failed: {type(exc).__name__}: {_first_line(exc)}"
            if stage != "segmenter":
                self._fallback(stage, shape, reason)
            return StageStatus(stage, "eager", reason), eager
        if not diff <= self.rtol:
            reason = (f"{label} output differs from eager by {diff:.3g} (relative), more than "
                      f"{self.rtol:g}")
            self._fallback(stage, shape, reason)
            return StageStatus(stage, "eager", reason, diff), eager
        LOG.info("%s for input %s: %s (max relative difference to eager %.2g)",
                 "the segmenter" if stage == "segmenter" else f"segmenter stage {stage}",
                 shape, label, diff)
        return StageStatus(stage, label, "", diff), built

    def _fallback(self, stage: str, shape: tuple, reason: str) -> None:
        what = "the segmenter" if stage == "segmenter" else f"segmenter stage {stage}"
        text = f"{what} for input {shape} runs eagerly: {reason}"
        LOG.warning(text)
        warnings.warn(text, CaptureFallbackWarning, stacklevel=4)


class _nullcontext:  # noqa: N801 - a context manager, named like contextlib's
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:200]
