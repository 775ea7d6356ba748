"""Benchmark: the segmenter per frame, eager PyTorch vs the exported graph in onnxruntime.

For each preset and input size it exports the segmenter (`spvis export`'s code, MSDeformAttn as
GridSample) to a temporary folder, then times, per frame (batch 1, one 640×480 frame resized by
the preset's rule to the given longer side):

- eager: `SPVIS.segment` with the torch backend (our compiled MSDeformAttn op);
- onnxruntime: `SPVIS.segment` with the onnxruntime backend (the same call the node makes:
  tensor -> numpy, the session run, numpy -> the SegmenterOutput the tracker reads);

interleaved (eager, ort, eager, ...) so that a machine whose load changes affects both alike,
median of the repeats, on the same device and with the same number of threads for both
(torch.set_num_threads and onnxruntime's intra-op threads). Besides the ratio of the medians it
prints the median and quartiles of the per-pair ratios (each eager call over the onnxruntime
call right after it): on a shared machine that is the steadier figure, and the quartiles show
how much the load moved it. It also checks that both give the same logits (max |diff|), so a
fast but wrong graph cannot pass unnoticed.

tiny uses random seeded weights; lite0 uses the shipped checkpoint (timing does not depend on
the weights). CUDA (onnxruntime-gpu's CUDAExecutionProvider) runs with --device cuda where it
is installed; TensorRT is not measured here.

    python bench/export.py                       # CPU, 1 thread, tiny and lite0 at 320 and 640
    python bench/export.py --threads 2 --repeats 9
    python bench/export.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from spvis_model.config import preset
from spvis_model.export import ExportOptions, export_onnx
from spvis_model.export.runtime import attach_backend
from spvis_model.model import SPVIS
from spvis_model.weights import default_checkpoint

FRAME = (480, 640)  # (H, W) of the camera frame


def build(name: str, longer: int) -> SPVIS:
    if name == "lite0":
        model = SPVIS.from_checkpoint(default_checkpoint())
    else:
        torch.manual_seed(0)
        model = SPVIS(preset(name), pretrained_backbone=False)
    model.cfg.input.max_size = longer
    return model.eval()


def frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:FRAME[0], 0:FRAME[1]]
    img = np.stack([120 + 80 * np.sin(xx / 23.0 + c) * np.cos(yy / 17.0) for c in range(3)], -1)
    img[150:330, 200:420] = (200, 60, 40)
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(name: str, longer: int, device: str, repeats: int, folder: Path) -> dict:
    eager = build(name, longer).to(device)
    images, geom = eager.preprocess(frame())
    path = folder / f"{name}_{longer}.onnx"
    t0 = time.perf_counter()
    export_onnx(eager, path, ExportOptions(size=(FRAME[1], FRAME[0]), verify=False))
    export_s = time.perf_counter() - t0
    ort = build(name, longer).to(device)
    attach_backend(ort, "onnxruntime", onnx=path)
    times: dict[str, list[float]] = {"eager": [], "ort": []}
    with torch.inference_mode():
        a = eager.segment(images)
        b = ort.segment(images)  # warm-up both
        diff = float((a.decoder.pred_logits - b.decoder.pred_logits).abs().max())
        mdiff = float((a.decoder.pred_masks - b.decoder.pred_masks).abs().max())
        for _ in range(repeats):
            for key, model in (("eager", eager), ("ort", ort)):
                sync(device)
                t = time.perf_counter()
                model.segment(images)
                sync(device)
                times[key].append(time.perf_counter() - t)
    e, o = statistics.median(times["eager"]), statistics.median(times["ort"])
    pairs = [a / b for a, b in zip(times["eager"], times["ort"], strict=True)]
    p25, p50, p75 = (statistics.quantiles(pairs, n=4, method="inclusive") if len(pairs) > 1
                     else pairs * 3)
    return {"preset": name, "input": f"{geom.padded[1]}x{geom.padded[0]}", "eager_ms": e * 1e3,
            "ort_ms": o * 1e3, "speedup": e / o, "paired_speedup": p50,
            "paired_p25": p25, "paired_p75": p75, "logit_diff": diff, "mask_diff": mdiff,
            "export_s": export_s, "provider": ort.segment_backend.provider}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--presets", nargs="+", default=["tiny", "lite0"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 640],
                        help="longer side the 640x480 frame is resized to")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime

    print(f"# torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, device "
          f"{args.device}, {args.threads} thread(s), median of {args.repeats}, batch 1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            for longer in args.sizes:
                row = measure(name, longer, args.device, args.repeats, Path(tmp))
                rows.append(row)
                print(f"{row['preset']:6s} {row['input']:>8s}  eager {row['eager_ms']:8.1f} ms  "
                      f"onnxruntime {row['ort_ms']:8.1f} ms  eager/ort {row['speedup']:5.2f}x  "
                      f"paired {row['paired_speedup']:4.2f}x [{row['paired_p25']:4.2f}-"
                      f"{row['paired_p75']:4.2f}]  "
                      f"max|dlogit| {row['logit_diff']:.1e}  max|dmask| {row['mask_diff']:.1e}  "
                      f"({row['provider']}, export {row['export_s']:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
