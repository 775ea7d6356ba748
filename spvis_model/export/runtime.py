"""Running an exported segmenter: the ``onnxruntime`` backend of `SPVIS`.

    model = SPVIS.from_checkpoint("model.pt", backend="onnxruntime")   # reads model.onnx
    model = SPVIS.from_checkpoint("model.pt", backend="onnxruntime", onnx="lite0_640.onnx")

The checkpoint still provides the tracker (its weights and the segmenter's class and mask
heads it re-uses) and the preprocessing; the segmenter itself runs from the .onnx file, whose
sidecar must say it was exported from the same segmenter weights. `OnnxRuntimeSegmenter.segment`
returns the same `SegmenterOutput` the eager segmenter does, so the tracker, the messages and
the ids are unchanged.

Execution providers: ``cpu`` devices run on ``CPUExecutionProvider`` with as many intra-op
threads as torch uses; ``cuda[:N]`` on ``CUDAExecutionProvider`` (onnxruntime-gpu). A provider
that is not installed, or that the session did not take, is an error: nothing falls back to
another provider silently. `describe()` says what runs (the node logs it).

Precision: the model's ``precision`` becomes the file's (``spvis export --precision``). A
float16 file runs on CUDA only (`check_device`): onnxruntime's CPU provider lacks float16
kernels for many of the graph's nodes and computes them in float32 between casts it inserts
(437 in the shipped lite0's graph), so there it is no faster than the float32 file (measured:
0.165 s against 0.157 s per lite0 frame at 320x256, 1 thread, onnxruntime 1.32, 2-core AMD
EPYC) and less precise; float16 in spvis needs a CUDA device, as it does for the torch backend
(`SPVIS.set_precision`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from spvis_model.export.graph import DYNAMIC_BACKBONES, INPUT_NAME, OUTPUT_NAMES
from spvis_model.export.sidecar import (
    Sidecar,
    SidecarError,
    read_sidecar,
    segmenter_checksum,
    sidecar_path,
)
from spvis_model.hashing import file_sha256
from spvis_model.modeling.pixel_decoder import PixelDecoderOutput
from spvis_model.modeling.segmenter import SegmenterOutput
from spvis_model.modeling.transformer_decoder import DecoderOutput

if TYPE_CHECKING:
    from spvis_model.model import SPVIS

#: Values of `SPVIS.from_checkpoint(backend=...)` and of the node's `backend` parameter.
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
#: Encoder levels of the graph's `memory`, lowest resolution first (strides).
LEVEL_STRIDES: tuple[int, ...] = (32, 16, 8)


class BackendError(ValueError):
    """The backend cannot run as asked (missing file, mismatched export, provider not there);
    the message names the argument and value."""


_ORT_ERRORS: tuple[type[BaseException], ...] | None = None


def ort_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's exception classes (plain Exception subclasses, not RuntimeError), imported
    on first use: ``except ort_errors() as exc``."""
    global _ORT_ERRORS
    if _ORT_ERRORS is None:
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError",
                 "RuntimeException", "InvalidProtobuf", "ModelLoaded", "NotImplemented",
                 "InvalidGraph", "EPFail")
        _ORT_ERRORS = tuple(getattr(state, n) for n in names if hasattr(state, n))
    return _ORT_ERRORS


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError("backend = 'onnxruntime': the onnxruntime package is not installed "
                           "(pip install onnxruntime, or onnxruntime-gpu for CUDA; `make "
                           "setup` installs it)") from exc
    return onnxruntime


def cpu_session(model: bytes | str, threads: int = 1) -> Any:
    """An onnxruntime session on the CPU provider with `threads` intra-op threads (used by
    export-time verification and the tests)."""
    ort = _import_ort()
    return ort.InferenceSession(model, _session_options(threads),
                                providers=["CPUExecutionProvider"])


def _session_options(threads: int) -> Any:
    ort = _import_ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Fatal only: onnxruntime warns about every constant it cannot fold, and it prints its own
    # "[E:onnxruntime:...]" line before raising an error that the caller reports in one line.
    so.log_severity_level = 4
    return so


def provider_for(device: torch.device) -> tuple[str, dict[str, Any]]:
    """The execution provider (and its options) for a torch device; refused when not
    installed."""
    ort = _import_ort()
    if device.type == "cpu":
        name, options = "CPUExecutionProvider", {}
    elif device.type == "cuda":
        name, options = "CUDAExecutionProvider", {"device_id": device.index or 0}
    else:
        raise BackendError(f"device = {str(device)!r}: the onnxruntime backend runs on cpu or "
                           "cuda[:N]")
    available = ort.get_available_providers()
    if name not in available:
        raise BackendError(f"device = {str(device)!r}: onnxruntime {ort.__version__} here has "
                           f"no {name} (available: {', '.join(available)}); install "
                           "onnxruntime-gpu for CUDA, or use device cpu")
    return name, options


class OnnxRuntimeSegmenter:
    """The exported segmenter in an onnxruntime session, behind `SPVIS.segment`.

    Args:
        onnx_path: the .onnx file (its sidecar `<file>.json` beside it).
        sidecar: the sidecar, already checked against the model (`attach_backend`).
        device: where the outputs go (and which provider runs: see the module docstring).
        pixel_decoder: the model's pixel decoder (for `memory_pos`, which the graph does not
            output: the tracker never reads it; it is rebuilt here so the output is complete).
        threads: intra-op threads (default: torch's).
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, sidecar: Sidecar, device: torch.device,
                 pixel_decoder: torch.nn.Module, threads: int | None = None) -> None:
        ort = _import_ort()
        self.onnx_path, self.sidecar, self.device = onnx_path, sidecar, device
        self.precision = sidecar.precision
        self.threads = threads or torch.get_num_threads()
        self._pixel_decoder = pixel_decoder
        provider, options = provider_for(device)
        try:
            self.session = ort.InferenceSession(str(onnx_path), _session_options(self.threads),
                                                providers=[(provider, options)])
        except ort_errors() as exc:
            raise BackendError(f"onnx = {str(onnx_path)!r}: onnxruntime cannot load it: "
                               f"{str(exc).splitlines()[0][:300]}") from exc
        taken = self.session.get_providers()
        if not taken or taken[0] != provider:
            raise BackendError(f"onnx = {str(onnx_path)!r}: onnxruntime took providers "
                               f"{taken}, not {provider}: refusing to run on another provider")
        self.provider = provider
        names = [i.name for i in self.session.get_inputs()]
        outs = [o.name for o in self.session.get_outputs()]
        if names != [INPUT_NAME] or outs != list(OUTPUT_NAMES):
            raise BackendError(f"onnx = {str(onnx_path)!r}: graph inputs {names} / outputs "
                               f"{outs}, expected [{INPUT_NAME!r}] / {list(OUTPUT_NAMES)}")
        dims = list(self.session.get_inputs()[0].shape)
        graph_hw = [d if isinstance(d, int) else None for d in dims[2:]]
        side_hw = [None, None] if sidecar.network_size is None else list(sidecar.network_size)
        if len(dims) != 4 or graph_hw != side_hw:
            raise BackendError(f"onnx = {str(onnx_path)!r}: the graph's input is {dims}, its "
                               f"sidecar's input_shape = {sidecar.input_shape} (dynamic = "
                               f"{str(sidecar.dynamic).lower()}); the sidecar was changed after "
                               "export: export again")
        self._pos_cache: dict[tuple[int, int, int, str], torch.Tensor] = {}

    def describe(self) -> str:
        """What runs, for logs: runtime version, provider, threads, file and graph form."""
        import onnxruntime as ort

        s = self.sidecar
        size = "dynamic size" if s.dynamic else f"{s.input_shape[3]}x{s.input_shape[2]}"
        return (f"onnxruntime {ort.__version__} {self.provider} ({self.threads} intra-op "
                f"thread{'s' if self.threads != 1 else ''}), {self.onnx_path.name}: "
                f"{s.msda}, {s.precision}, {size}, opset {s.opset}")

    def check_images(self, images: torch.Tensor) -> None:
        """Raise ValueError unless images fit the graph: (B, 3, H, W) float, H and W the
        export's size (static graphs) or multiples of 32 (dynamic)."""
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"images must be (B, 3, H, W) float, got {images.dtype} "
                             f"{tuple(images.shape)}")
        h, w = int(images.shape[2]), int(images.shape[3])
        fixed = self.sidecar.network_size
        if fixed is not None and (h, w) != fixed:
            fw, fh = self.sidecar.frame_size
            backbone = _backbone_name(self.sidecar)
            how = ("export again with --size matching the camera, or with --dynamic"
                   if backbone in DYNAMIC_BACKBONES else
                   f"export again with --size matching the camera (--dynamic is refused for "
                   f"the {backbone} backbone: its graph takes one size)")
            raise ValueError(
                f"images of {w}x{h} (after the model's resize and padding) do not fit "
                f"{self.onnx_path.name}, exported for {fixed[1]}x{fixed[0]} (frames of "
                f"{fw}x{fh}): {how}")
        if h % 32 or w % 32 or h == 0 or w == 0:
            raise ValueError(f"images of {w}x{h}: H and W must be positive multiples of 32")

    def segment(self, images: torch.Tensor) -> SegmenterOutput:
        """(B, 3, H, W) normalised images -> the eager segmenter's SegmenterOutput (last layer
        only: `aux_outputs` is empty; `multi_scale_features` are views of `memory`)."""
        self.check_images(images)
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            got = self.session.run(None, {INPUT_NAME: x})
        except ort_errors() as exc:
            raise RuntimeError(f"onnxruntime ({self.provider}) failed on images "
                               f"{tuple(images.shape)}: {str(exc).splitlines()[0][:300]}") from exc
        out = {name: torch.from_numpy(a).to(images.device) for name, a in
               zip(OUTPUT_NAMES, got, strict=True)}
        b, _, h, w = images.shape
        sizes = [(math.ceil(h / s), math.ceil(w / s)) for s in LEVEL_STRIDES]
        memory = out["memory"]
        if memory.shape[1] != sum(a * c for a, c in sizes):
            raise RuntimeError(f"{self.onnx_path.name}: memory has {memory.shape[1]} tokens, "
                               f"levels {sizes} need {sum(a * c for a, c in sizes)}")
        spatial_shapes = torch.tensor(sizes, dtype=torch.int64, device=images.device)
        counts = spatial_shapes.prod(1)
        level_start_index = torch.cat((counts.new_zeros(1), counts.cumsum(0)[:-1]))
        multi_scale = [m.transpose(1, 2).reshape(b, memory.shape[2], lh, lw) for m, (lh, lw) in
                       zip(memory.split([a * c for a, c in sizes], dim=1), sizes, strict=True)]
        pixels = PixelDecoderOutput(
            mask_features=out["mask_features"], multi_scale_features=multi_scale,
            memory=memory, memory_pos=self._memory_pos(multi_scale), spatial_shapes=spatial_shapes,
            level_start_index=level_start_index)
        decoder = DecoderOutput(pred_logits=out["pred_logits"], pred_masks=out["pred_masks"],
                                query_embed=out["query_embed"], aux_outputs=[])
        return SegmenterOutput(decoder=decoder, pixels=pixels)

    def _memory_pos(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """(B, S, C): the pixel decoder's sine encoding + level embedding (constant per size)."""
        m0 = maps[0]
        key = (m0.shape[0], maps[-1].shape[-2], maps[-1].shape[-1], str(m0.device))
        if key not in self._pos_cache:
            pd = self._pixel_decoder
            with torch.no_grad():
                parts = [pd.pe_layer(m).flatten(2).transpose(1, 2)
                         + pd.transformer.level_embed[i].to(m.dtype) for i, m in enumerate(maps)]
            self._pos_cache = {key: torch.cat(parts, 1)}  # one size at a time
        return self._pos_cache[key]


def _backbone_name(side: Sidecar) -> str:
    """The backbone the sidecar's model config names ("?" when it names none)."""
    backbone = side.model_config.get("backbone")
    name = backbone.get("name") if isinstance(backbone, dict) else None
    return name if isinstance(name, str) else "?"


def default_onnx_path(checkpoint: str | Path) -> Path:
    """Where the backend looks when no onnx path is given: the checkpoint's name with .onnx."""
    return Path(checkpoint).with_suffix(".onnx")


def attach_backend(model: SPVIS, backend: str, *, checkpoint: str | Path | None = None,
                   onnx: str | Path | None = None) -> SPVIS:
    """Make `model.segment` run on `backend` ("torch" detaches any other backend).

    Args:
        model: the loaded model (tracker, heads and preprocessing stay in PyTorch).
        backend: "torch" or "onnxruntime".
        checkpoint: the checkpoint it was loaded from (the default onnx path is beside it).
        onnx: the exported .onnx file (onnxruntime only).

    The model's ``precision`` is then the file's (float16 files only on CUDA: `check_device`).

    Raises:
        BackendError: unknown backend, onnx given for torch, a missing file or sidecar, a
            sidecar with a bad field, a file exported from other segmenter weights,
            preprocessing or classes, a plugin-form file (only TensorRT runs those), a float16
            file on a device that is not CUDA, a provider not installed.
    """
    if backend not in BACKENDS:
        raise BackendError(f"backend = {backend!r}: must be one of {', '.join(BACKENDS)}")
    if backend == "torch":
        if onnx is not None:
            raise BackendError(f"onnx = {str(onnx)!r} is only read by backend = 'onnxruntime' "
                               "(backend is 'torch')")
        model.segment_backend = None
        return model
    if onnx is None:
        if checkpoint is None:
            raise BackendError("backend = 'onnxruntime' needs onnx = the exported .onnx file")
        onnx = default_onnx_path(checkpoint)
    path = Path(onnx).expanduser()
    if not path.is_file():
        raise BackendError(f"onnx = {str(path)!r}: no such file (make it with `spvis export "
                           f"CHECKPOINT --onnx {path}`)")
    try:
        side = read_sidecar(sidecar_path(path))
    except SidecarError as exc:
        raise BackendError(f"onnx = {str(path)!r}: {exc}") from exc
    check_pairing(model, path, side)
    check_device(path, side, model.device)
    model.segment_backend = OnnxRuntimeSegmenter(path, side, model.device,
                                                 model.segmenter.sem_seg_head.pixel_decoder)
    if model.precision != side.precision:  # SPVIS.precision reads the backend's; older: set
        model.precision = side.precision
    return model


def check_device(path: Path, side: Sidecar, device: torch.device) -> None:
    """Refuse a float16 file on a device that is not CUDA (BackendError; why: the module
    docstring)."""
    if side.precision != "float32" and device.type != "cuda":
        raise BackendError(
            f"onnx = {str(path)!r}: exported with --precision {side.precision}, which the "
            f"onnxruntime backend runs on CUDA only (device is {str(device)!r}): onnxruntime's "
            "CPU provider lacks float16 kernels for many of its nodes and runs them in float32 "
            "between inserted casts, no faster than the float32 file and less precise; use "
            "device cuda, or export with --precision float32 for the CPU")


def check_pairing(model: SPVIS, path: Path, side: Sidecar) -> None:
    """Refuse an exported file that does not belong to `model` (BackendError naming the field)."""
    where = f"onnx = {str(path)!r}"
    if side.msda != "grid_sample":
        raise BackendError(f"{where}: exported with --msda {side.msda}, whose custom node only "
                           "TensorRT runs; export with --msda grid_sample for onnxruntime")
    if side.onnx_sha256 != file_sha256(path):
        raise BackendError(f"{where}: the file's SHA-256 differs from its sidecar's onnx_sha256 "
                           "(changed after export?); export again")
    if side.segmenter_sha256 != segmenter_checksum(model):
        raise BackendError(f"{where}: exported from other segmenter weights (sidecar "
                           f"segmenter_sha256 {side.segmenter_sha256[:12]}..., this checkpoint's "
                           f"{segmenter_checksum(model)[:12]}...); export this checkpoint")
    inp = model.cfg.to_dict()["input"]
    mine = {**{k: inp[k] for k in ("max_size", "min_size", "channel_order")},
            "pixel_mean": model.pixel_mean.flatten().tolist(),
            "pixel_std": model.pixel_std.flatten().tolist()}
    theirs = {k: side.preprocess.get(k) for k in mine}
    if theirs != mine:
        raise BackendError(f"{where}: sidecar preprocess {theirs} differs from the checkpoint's "
                           f"{mine}")
    if side.class_names != list(model.cfg.class_names):
        raise BackendError(f"{where}: sidecar class_names {side.class_names[:5]}... differ from "
                           f"the checkpoint's {list(model.cfg.class_names)[:5]}...")
