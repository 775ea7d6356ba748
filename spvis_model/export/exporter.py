"""`export_onnx`: a model's segmenter to one ONNX file plus its JSON sidecar, or a clear error.

What is written is checked before it is kept: the graph goes to a temporary file, through
``onnx.checker.check_model(full_check=True)``, and (unless ``verify=False``) through
onnxruntime against a reference at the export size with a batch of 2, and for ``dynamic`` also
at a second size. The reference is the eager segmenter for float32 graphs, and the same graph
module computed by PyTorch in float16 for float16 graphs (see `VERIFY_TOL`). Only then is it
renamed into place and the sidecar written. Anything refused or interrupted leaves no file
behind.

While torch traces, what its C++ code writes to the process's stdout and stderr (a failed
trace dumps its whole TorchScript graph there, thousands of lines) goes to a discarded temporary
file (``quiet=True``, the default); the refusal says why in one line.

The plugin form cannot run in onnxruntime; it is verified by running it with
`plugin_check.with_reference_plugin`, which gives the custom node a body of standard ops that
implements the plugin's documented semantics, so the node's inputs, their order, layout and
types are what is checked.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spvis_model import __version__
from spvis_model.export.graph import (
    GRAPH_DTYPES,
    INPUT_NAME,
    MSDA_FORMS,
    OUTPUT_NAMES,
    PLUGIN_DOMAIN,
    PLUGIN_OP,
    PLUGIN_VERSIONS,
    ExportSegmenter,
)
from spvis_model.export.sidecar import (
    PAD_TO,
    Sidecar,
    preprocess_spec,
    segmenter_checksum,
    sidecar_path,
)
from spvis_model.hashing import file_sha256

#: Opsets written: GridSample needs >= 16; torch's TorchScript exporter writes at most 20.
MIN_OPSET = 16
MAX_OPSET = 20
DEFAULT_OPSET = 17
#: Protobuf's limit on one file (weights are stored inside the .onnx file).
MAX_PROTO_BYTES = 2**31 - 1
#: Export-time verification: |onnxruntime - reference| <= ATOL + RTOL * max|reference| per output
#: (loose: it catches wrong graphs, e.g. a size frozen by the trace; the parity tests hold the
#: real tolerances).
#:
#: - float32: the reference is the eager segmenter (the model's own forward pass), every element.
#: - float16: the reference is the same graph module (`ExportSegmenter` on a float16 copy) run by
#:   PyTorch in float16: what the graph claims to compute. Two float16 computations round
#:   differently, and the decoder's masked attention turns each mask logit into attend / do not
#:   attend, so a query whose mask logits sit near 0 attends to other pixels and its outputs
#:   jump. Measured on the shipped lite0 at 320x256 (onnxruntime 1.32, torch 2.13, this
#:   repository's 2-core AMD EPYC): mask_features and memory within 0.05 and 0.14 of the float16
#:   reference (scale 4-6), while 2-7 of the 100 query rows (batch 2) of pred_logits /
#:   pred_masks / query_embed differ by up to 15% of the scale on the verification input, and
#:   0-2 of 50 on real frames; those were no-object queries (foreground probability <= 0.26).
#:   PyTorch's own float16 differs from its float32 the same way (pred_logits 0.73-1.65 at scale
#:   8-10 on the same inputs), so this is float16 itself, not the graph. The encoder outputs
#:   must therefore be within the tolerance everywhere, and each decoder output in all but
#:   `FLOAT16_QUERY_SHARE` of its query rows. (The float32 export of the same graph code is
#:   checked element by element.)
VERIFY_TOL = {"float32": (1e-3, 1e-3), "float16": (5e-2, 6e-2)}
#: float16 only: the share of a decoder output's query rows (batch x queries) that may be beyond
#: the tolerance (borderline masked-attention pixels flipped by rounding; see VERIFY_TOL; up to
#: 7% measured, a wrong graph moves most rows).
FLOAT16_QUERY_SHARE = 0.2
#: The outputs with one row per query (the decoder's); the others are the encoder's.
DECODER_OUTPUTS: tuple[str, ...] = ("pred_logits", "pred_masks", "query_embed")


class ExportError(ValueError):
    """The export cannot be honoured; the message names the option or model and why."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export.

    Attributes:
        size: (width, height) of the camera frames the graph is for; the graph input is the
            model's resize rule applied to it, padded to multiples of 32 (a 640x480 frame is
            (1, 3, 480, 640) for lite0 and (1, 3, 96, 128) for tiny).
        dynamic: height and width of the input are dynamic (any multiples of 32); refused for a
            backbone whose graph freezes the traced size (found by verification).
        opset: ONNX opset of the default domain, MIN_OPSET..MAX_OPSET.
        precision: "float32" or "float16": what the graph computes in (input and outputs stay
            float32).
        msda: "grid_sample" (standard ops) or "trt_plugin" (TensorRT's plugin node).
        plugin_version: the plugin version written on trt_plugin nodes ("1" or "2").
        verify: check the written graph with onnxruntime (required for dynamic).
    """

    size: tuple[int, int] = (640, 480)
    dynamic: bool = False
    opset: int = DEFAULT_OPSET
    precision: str = "float32"
    msda: str = "grid_sample"
    plugin_version: str = "1"
    verify: bool = True

    def validate(self) -> ExportOptions:
        """Raise ExportError naming the first bad field."""
        w, h = self.size if isinstance(self.size, tuple) and len(self.size) == 2 else (0, 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192
                   for v in (w, h)):
            raise ExportError(f"size = {self.size!r}: must be (width, height), integers in "
                              "[1, 8192]")
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or \
                not MIN_OPSET <= self.opset <= MAX_OPSET:
            reason = (f"GridSample and the graph need opset >= {MIN_OPSET}"
                      if isinstance(self.opset, int) and self.opset < MIN_OPSET else
                      f"torch's TorchScript exporter writes at most opset {MAX_OPSET}")
            raise ExportError(f"opset = {self.opset!r}: {reason} (supported: {MIN_OPSET}.."
                              f"{MAX_OPSET})")
        if self.precision not in GRAPH_DTYPES:
            raise ExportError(f"precision = {self.precision!r}: must be one of "
                              f"{', '.join(GRAPH_DTYPES)} (bfloat16 is not exported: "
                              "onnxruntime's CPU and CUDA providers lack most bfloat16 kernels)")
        if self.msda not in MSDA_FORMS:
            raise ExportError(f"msda = {self.msda!r}: must be one of {', '.join(MSDA_FORMS)}")
        if self.plugin_version not in PLUGIN_VERSIONS:
            raise ExportError(f"plugin_version = {self.plugin_version!r}: must be one of "
                              f"{', '.join(PLUGIN_VERSIONS)}")
        if self.dynamic and not self.verify:
            raise ExportError("dynamic = True needs verify = True: verification at a second "
                              "size is how the export knows the graph takes other sizes")
        return self


@dataclass
class Verification:
    """What `_verify` measured (see `ExportResult`, whose fields of the same names these
    become)."""

    verified: dict[str, dict[str, float]] = field(default_factory=dict)
    reference: str = ""
    queries_beyond: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    versus_float32: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class ExportResult:
    """What was written and what verification measured.

    Attributes:
        onnx_path, sidecar_path: the two files.
        sidecar: the sidecar's content.
        verified: per checked case ("320x256, batch 2"), output name -> max |onnxruntime -
            reference|; empty with verify=False.
        reference: what the graph was compared with ("the eager segmenter (float32)" or "the
            same graph in PyTorch float16").
        queries_beyond: float16 only: per case, decoder output -> (query rows beyond the
            tolerance, query rows), see `FLOAT16_QUERY_SHARE`.
        versus_float32: float16 only: per case, output name -> max |onnxruntime - eager float32
            segmenter| (what float16 costs; not a criterion).
    """

    onnx_path: Path
    sidecar_path: Path
    sidecar: Sidecar
    verified: dict[str, dict[str, float]] = field(default_factory=dict)
    reference: str = ""
    queries_beyond: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    versus_float32: dict[str, dict[str, float]] = field(default_factory=dict)


def network_size(model: torch.nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the graph input for camera frames of (width, height) `size`: the model's resize
    rule, then padding to multiples of 32 (what `SPVIS.preprocess` produces)."""
    rh, rw = model.cfg.input.resized(size[1], size[0])
    return math.ceil(rh / PAD_TO) * PAD_TO, math.ceil(rw / PAD_TO) * PAD_TO


def check_onnx_path(path: Path) -> None:
    """Raise ExportError unless `path` can be written as an export: a file name ending in
    .onnx (more than the suffix), in an existing folder, neither it nor its sidecar path a
    folder."""
    where = f"onnx path = {str(path)!r}"
    if not path.name.endswith(".onnx") or len(path.name) <= len(".onnx"):
        raise ExportError(f"{where}: must end in .onnx, after a file name (e.g. model.onnx)")
    folder = path.parent
    if not folder.is_dir():
        # The deepest part of the folder's path that exists: a file there blocks it.
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise ExportError(f"{where}: {str(existing)!r} is a file, not a folder")
        raise ExportError(f"{where}: folder {str(folder)!r} does not exist")
    for target in (path, sidecar_path(path)):
        if target.is_dir():
            raise ExportError(f"{where}: {str(target)!r} is a folder; give a file path")


def export_onnx(model: torch.nn.Module, path: str | Path, options: ExportOptions | None = None,
                *, quiet: bool = True) -> ExportResult:
    """Export `model`'s segmenter (an SPVIS, on any device) to `path` and write the sidecar
    beside it.

    Args:
        model: the SPVIS model; traced with an input on its device.
        path: the .onnx file to write (the sidecar is `<path>.json`).
        options: what to export (default `ExportOptions()`).
        quiet: send what torch's C++ code prints while tracing (a failed trace's graph dump) to
            a discarded temporary file instead of this process's stdout / stderr.

    Raises:
        ExportError: an option cannot be honoured (unsupported opset or precision, a dynamic
            size the graph cannot take, the exporter failing on this model at this size, a
            graph over 2 GiB, verification failing, `path` not a .onnx file name, its folder
            missing or a file, `path` or its sidecar path a folder); nothing is left at `path`.
        OSError: writing failed (the temp file is removed).
        Anything else (KeyboardInterrupt included) also removes the temp file; a graph whose
            sidecar could not be written is removed too.
    """
    import onnx

    opts = (options or ExportOptions()).validate()
    path = Path(path)
    check_onnx_path(path)
    hw = network_size(model, opts.size)
    tmp: Path | None = None
    check = Verification()
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        tmp = Path(tmp_name)
        os.close(fd)
        _trace(model, tmp, opts, hw, quiet)
        proto = onnx.load(str(tmp))
        _annotate(proto, model, opts, hw)
        _check_proto(proto, opts, tmp)
        onnx.save(proto, str(tmp))
        if opts.verify:
            check = _verify(model, tmp, opts, hw)
        side = _sidecar(model, path, tmp, opts, hw)  # before the rename: it hashes the file
        # mkstemp made the file 0600; give it the mode a plain open() would (the sidecar's),
        # so a node running as another user can read it.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    side_path = sidecar_path(path)
    try:
        side.write(side_path)
    except BaseException:  # a graph without its sidecar is no export: take it back
        path.unlink(missing_ok=True)
        raise
    return ExportResult(path, side_path, side, check.verified, check.reference,
                        check.queries_beyond, check.versus_float32)


def _umask() -> int:
    """The process's umask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- tracing ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode, and every submodule's CPU channels-last inference off (the graph is traced
    in the default layout; the eager reference of verification uses the same)."""
    was = module.training
    layouts = [(m, m.cpu_channels_last) for m in module.modules()
               if isinstance(getattr(m, "cpu_channels_last", None), bool)]
    module.eval()
    for m, _ in layouts:
        m.cpu_channels_last = False
    try:
        yield
    finally:
        module.train(was)
        for m, flag in layouts:
            m.cpu_channels_last = flag


def _graph_module(model: torch.nn.Module, opts: ExportOptions) -> ExportSegmenter:
    """The module traced: the model's segmenter (a float16 copy for float16) in eval mode."""
    segmenter = model.segmenter
    if opts.precision != "float32":
        segmenter = copy.deepcopy(segmenter).to(GRAPH_DTYPES[opts.precision])
    return ExportSegmenter(segmenter, opts.msda, opts.precision, opts.plugin_version).eval()


def _device(model: torch.nn.Module) -> torch.device:
    """Where the model's segmenter is (its input goes there)."""
    return model.pixel_mean.device


def sample_input(hw: tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A smooth, normalised test image (B, 3, H, W): blobs and gradients, no noise, so that
    masked attention sees structure (random noise makes every mask borderline)."""
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    ys = torch.linspace(0, 1, h)[:, None]
    xs = torch.linspace(0, 1, w)[None, :]
    out = []
    for _ in range(batch):
        chans = []
        for _ in range(3):
            a, b, c = (torch.rand(3, generator=g) * 6).tolist()
            cx, cy = torch.rand(2, generator=g).tolist()
            blob = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 0.02)
            chans.append(torch.sin(a * xs + b * ys + c) + 2.0 * blob - 1.0)
        out.append(torch.stack(chans))
    return torch.stack(out)


_LIBC: Any = None


def _flush_c_stdio() -> None:
    """fflush(NULL): C stdio buffers what C++ code wrote to stdout (fully buffered when it is
    a file or pipe); flushed here so that it lands where the fd points now."""
    global _LIBC
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL(None)
        _LIBC.fflush(None)
    except (OSError, AttributeError):  # no C library to flush (not on Linux / macOS)
        pass


@contextlib.contextmanager
def captured_output(enabled: bool = True) -> Iterator[None]:
    """Point file descriptors 1 and 2 at a discarded temporary file while the block runs, so
    that what C / C++ code prints there (torch's "Torch IR graph at exception" dump) is not
    shown; Python-level ``sys.stdout`` / ``sys.stderr`` objects are flushed first. The
    descriptors are process-wide: other threads' output is captured too while it runs."""
    if not enabled:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()
    _flush_c_stdio()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no stdout / stderr to point elsewhere (closed): nothing to capture
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(AttributeError, ValueError, OSError):
                        stream.flush()
                _flush_c_stdio()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _trace(model: torch.nn.Module, path: Path, opts: ExportOptions, hw: tuple[int, int],
           quiet: bool = True) -> None:
    graph = _graph_module(model, opts)
    # The batch is always dynamic (verified with 2); height and width only with --dynamic.
    spatial = {2: "height", 3: "width"} if opts.dynamic else {}
    spatial4 = {2: "height/4", 3: "width/4"} if opts.dynamic else {}
    dynamic_axes = {INPUT_NAME: {0: "batch", **spatial}, "pred_logits": {0: "batch"},
                    "pred_masks": {0: "batch", **spatial4}, "query_embed": {0: "batch"},
                    "mask_features": {0: "batch", **spatial4},
                    "memory": {0: "batch", **({1: "S"} if opts.dynamic else {})}}
    x = sample_input(hw).to(_device(model))  # the traced module's device (CPU or CUDA)
    with _eval_mode(model), warnings.catch_warnings(), torch.no_grad(), captured_output(quiet):
        # The trace warns about every Python-side shape check it sees (constant for a trace:
        # verification is what proves the sizes stay symbolic), and about the exporter itself.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            torch.onnx.export(
                graph, (x,), str(path), dynamo=False, opset_version=opts.opset,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic_axes, do_constant_folding=True,
                custom_opsets={PLUGIN_DOMAIN: 1} if opts.msda == "trt_plugin" else None)
        except (RuntimeError, ValueError, TypeError, torch.onnx.errors.OnnxExporterError) as exc:
            first = (" ".join(str(exc).strip().splitlines()[0].split())[:300]
                     if str(exc).strip() else repr(exc))
            raise ExportError(f"torch.onnx could not export the {model.cfg.name} segmenter "
                              f"({model.cfg.backbone.name}) at input {hw[1]}x{hw[0]} "
                              f"(dynamic={opts.dynamic}, opset {opts.opset}): {first}") from exc
    if path.stat().st_size > MAX_PROTO_BYTES:
        raise ExportError(f"the {model.cfg.name} graph is {path.stat().st_size} bytes, over "
                          "protobuf's 2 GiB limit for one file")


def _annotate(proto: object, model: torch.nn.Module, opts: ExportOptions,
              hw: tuple[int, int]) -> None:
    import onnx

    assert isinstance(proto, onnx.ModelProto)
    proto.producer_name = "spvis"
    proto.producer_version = __version__
    proto.doc_string = (f"spvis {model.cfg.name} segmenter: images (B, 3, H, W) normalised -> "
                        f"{', '.join(OUTPUT_NAMES)}; see the .json sidecar")
    meta = {"spvis.model": model.cfg.name, "spvis.msda": opts.msda,
            "spvis.precision": opts.precision, "spvis.dynamic": str(opts.dynamic).lower(),
            "spvis.input_hw": f"{hw[0]}x{hw[1]}"}
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    # Declare the output shapes we know (the trace leaves e.g. the query count symbolic);
    # full_check shape inference then checks them against the graph.
    shapes = output_shapes(model, opts, hw)
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) != len(shapes[out.name]):
            raise ExportError(f"exported output {out.name} has rank {len(dims)}, the segmenter's "
                              f"is {len(shapes[out.name])} ({shapes[out.name]})")
        for dim, value in zip(dims, shapes[out.name], strict=True):
            if isinstance(value, int):
                dim.dim_value = value
            else:
                dim.dim_param = value


def _check_proto(proto: object, opts: ExportOptions, where: Path) -> None:
    """onnx.checker (full), and the graph's domains are what the form promises."""
    import onnx

    assert isinstance(proto, onnx.ModelProto)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"onnx.checker refused the exported graph ({where.name}): "
                          f"{str(exc)[:500]}") from exc
    domains = {n.domain for n in proto.graph.node}
    plugin_nodes = [n for n in proto.graph.node if n.op_type == PLUGIN_OP]
    expected = {""} if opts.msda == "grid_sample" else {"", PLUGIN_DOMAIN}
    if domains - expected or any(n.domain != PLUGIN_DOMAIN for n in plugin_nodes):
        raise ExportError(f"exported graph uses domains {sorted(domains)}, expected "
                          f"{sorted(expected)} for msda = {opts.msda!r}")
    if opts.msda == "trt_plugin" and not plugin_nodes:
        raise ExportError("msda = 'trt_plugin' but the graph has no plugin node")


# --- verification -------------------------------------------------------------------------------
def _verify(model: torch.nn.Module, path: Path, opts: ExportOptions,
            hw: tuple[int, int]) -> Verification:
    """Run the written graph in onnxruntime (CPU) against the reference (see VERIFY_TOL):
    shapes first (a frozen size shows there), then values; ExportError when they differ."""
    import onnx

    from spvis_model.export.plugin_check import with_reference_plugin
    from spvis_model.export.runtime import cpu_session, ort_errors

    proto = onnx.load(str(path))
    if opts.msda == "trt_plugin":
        proto = with_reference_plugin(proto)
    session = cpu_session(proto.SerializeToString(), threads=torch.get_num_threads())
    cases = [(f"{hw[1]}x{hw[0]}, batch 2", sample_input(hw, batch=2, seed=1))]
    if opts.dynamic:
        other = (hw[0] + 64, hw[1] + 32)
        cases.append((f"{other[1]}x{other[0]}, batch 1", sample_input(other, seed=2)))
    half = opts.precision != "float32"
    atol, rtol = VERIFY_TOL[opts.precision]
    check = Verification(reference=(f"the same graph in PyTorch {opts.precision}" if half else
                                    "the eager segmenter (float32)"))
    device = _device(model)
    graph = _graph_module(model, opts) if half else None
    for label, x in cases:
        graph_mode = _eval_mode(graph) if graph is not None else contextlib.nullcontext()
        with _eval_mode(model), graph_mode, torch.no_grad():
            seg = model.segmenter(x.to(device))
            eager = [seg.decoder.pred_logits, seg.decoder.pred_masks, seg.decoder.query_embed,
                     seg.pixels.mask_features, seg.pixels.memory]
            ref = list(graph(x.to(device))) if graph is not None else eager
        try:
            got = session.run(None, {INPUT_NAME: x.numpy()})
        except ort_errors() as exc:
            raise ExportError(_size_refusal(model, opts, label, f"onnxruntime cannot run it: "
                                            f"{str(exc).splitlines()[0][:300]}")) from exc
        pairs = [(name, r.float().cpu().numpy(), g)
                 for name, r, g in zip(OUTPUT_NAMES, ref, got, strict=True)]
        for name, r, g in pairs:  # shapes first: a frozen size shows there
            if g.shape != r.shape:
                raise ExportError(_size_refusal(model, opts, label,
                                                f"output {name} has shape {list(g.shape)}, the "
                                                f"eager segmenter gives {list(r.shape)}"))
        diffs, beyond = {}, {}
        for name, r, g in pairs:
            diff = np.abs(g - r)
            worst = float(diff.max()) if r.size else 0.0
            scale = float(np.abs(r).max()) if r.size else 0.0
            allowed = atol + rtol * scale
            if half and name in DECODER_OUTPUTS and r.size:
                rows = diff.reshape(r.shape[0] * r.shape[1], -1).max(1)  # per (batch, query)
                n_bad = int((~(rows <= allowed)).sum())
                beyond[name] = (n_bad, int(rows.size))
                if n_bad > FLOAT16_QUERY_SHARE * rows.size:
                    raise ExportError(_size_refusal(
                        model, opts, label, f"output {name} differs from {check.reference} "
                        f"beyond {atol} + {rtol} x scale (scale {scale:.3g}) in {n_bad} of "
                        f"{rows.size} query rows (at most {FLOAT16_QUERY_SHARE:.0%} may: "
                        f"float16 rounding flips borderline masked-attention pixels), by up to "
                        f"{worst:.3g}"))
            elif not worst <= allowed:
                raise ExportError(_size_refusal(
                    model, opts, label, f"output {name} differs from {check.reference} by "
                    f"{worst:.3g} (scale {scale:.3g}, allowed {atol} + {rtol} x scale)"))
            diffs[name] = worst
        check.verified[label] = diffs
        if half:
            check.queries_beyond[label] = beyond
            check.versus_float32[label] = {
                name: float(np.abs(g - e.float().cpu().numpy()).max()) if g.size else 0.0
                for name, e, g in zip(OUTPUT_NAMES, eager, got, strict=True)}
    return check


def _size_refusal(model: torch.nn.Module, opts: ExportOptions, label: str, what: str) -> str:
    if opts.dynamic and "batch 1" in label:
        return (f"dynamic = True cannot be honoured for {model.cfg.name} "
                f"({model.cfg.backbone.name} backbone): the traced graph does not take other "
                f"sizes: at {label} {what}. Export a fixed size with --size WxH instead")
    return f"verification failed at {label}: {what}"


# --- sidecar ------------------------------------------------------------------------------------
def output_shapes(model: torch.nn.Module, opts: ExportOptions,
                  hw: tuple[int, int]) -> dict[str, list[int | str]]:
    """Output name -> shape, symbolic names where dynamic ("batch", "height/4", "S")."""
    cfg = model.cfg
    h4, w4 = ("height/4", "width/4") if opts.dynamic else (hw[0] // 4, hw[1] // 4)
    s = "S" if opts.dynamic else sum((hw[0] // k) * (hw[1] // k) for k in (32, 16, 8))
    n = cfg.segmenter.num_queries
    return {
        "pred_logits": ["batch", n, cfg.num_classes + 1],
        "pred_masks": ["batch", n, h4, w4],
        "query_embed": ["batch", n, cfg.segmenter.hidden_dim],
        "mask_features": ["batch", cfg.pixel_decoder.mask_dim, h4, w4],
        "memory": ["batch", s, cfg.pixel_decoder.conv_dim],
    }


def _sidecar(model: torch.nn.Module, path: Path, written: Path, opts: ExportOptions,
             hw: tuple[int, int]) -> Sidecar:
    """The sidecar of the graph in `written` (the temporary file), to be renamed to `path`."""
    import onnx

    cfg = model.cfg
    h, w = ("height", "width") if opts.dynamic else hw
    outputs = output_shapes(model, opts, hw)
    full = cfg.to_dict()
    preprocess = preprocess_spec(model)
    plugin = ({"op_type": PLUGIN_OP, "domain": PLUGIN_DOMAIN,
               "plugin_version": opts.plugin_version, "plugin_namespace": ""}
              if opts.msda == "trt_plugin" else {})
    return Sidecar(
        onnx_file=path.name, onnx_sha256=file_sha256(written),
        segmenter_sha256=segmenter_checksum(model), model_name=cfg.name,
        frame_size=[opts.size[0], opts.size[1]], input_shape=["batch", 3, h, w],
        dynamic=opts.dynamic, opset=opts.opset, precision=opts.precision, msda=opts.msda,
        plugin=plugin, outputs=outputs, preprocess=preprocess,
        class_names=list(cfg.class_names), tracker=full["tracker"], model_config=full,
        exporter={"spvis": __version__, "torch": torch.__version__, "onnx": onnx.__version__})
