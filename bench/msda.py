"""Benchmark: our compiled MSDeformAttn vs the pure-PyTorch reference (grid_sample).

Shapes are Mask2Former's pixel decoder on a 640x480 input: levels at strides 8/16/32
(80x60, 40x30, 20x15; S = 6300), H = 8 heads, D = 32 channels, P = 4 points, Q = S
(every encoder token is a query), batch 1 and 4. For each case it reports the median
time of forward and forward+backward, and the peak memory the call needs beyond its
inputs, and prints ours/reference ratios measured in the same run.

    python bench/msda.py --device cpu
    python bench/msda.py --device cuda --dtypes float32 float16 bfloat16

Peak memory: on CUDA, torch.cuda.max_memory_allocated above the inputs; on CPU, each
case runs in a fresh subprocess and the growth of its peak resident set (VmHWM) is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from spvis_model.ops import ms_deform_attn, ms_deform_attn_reference

LEVELS = ((60, 80), (30, 40), (15, 20))  # (H_l, W_l) at strides 8/16/32 of 480x640
FULL_LEVELS = LEVELS
HEADS, CHANNELS, POINTS = 8, 32, 4
IMPLS: dict[str, Callable[..., torch.Tensor]] = {
    "ours": ms_deform_attn,
    "reference": ms_deform_attn_reference,
}


def make_inputs(batch: int, device: str, dtype: torch.dtype, grad: bool) -> tuple:
    """Random inputs at the pixel-decoder shapes; locations in float32 for half types."""
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor(LEVELS, dtype=torch.int64)  # LEVELS: --tiny makes them small
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    s = int(areas.sum())
    n_levels = len(LEVELS)
    loc_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    value = torch.randn(batch, s, HEADS, CHANNELS, generator=gen).to(device, dtype)
    loc = torch.rand(batch, s, HEADS, n_levels, POINTS, 2, generator=gen).to(device, loc_dtype)
    attn = torch.rand(batch, s, HEADS, n_levels, POINTS, generator=gen).to(device, loc_dtype)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    for t in (value, loc, attn):
        t.requires_grad_(grad)
    return value, shapes.to(device), starts.to(device), loc, attn


def run_once(impl: str, inputs: tuple, backward: bool) -> None:
    out = IMPLS[impl](*inputs)
    if backward:
        out.backward(torch.ones_like(out))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_case(impl: str, batch: int, device: str, dtype: torch.dtype, backward: bool,
              repeats: int) -> float:
    """Median seconds per call after one warm-up."""
    inputs = make_inputs(batch, device, dtype, backward)
    run_once(impl, inputs, backward)
    times = []
    for _ in range(repeats):
        for t in (inputs[0], inputs[3], inputs[4]):
            t.grad = None
        sync(device)
        t0 = time.perf_counter()
        run_once(impl, inputs, backward)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_bytes(impl: str, batch: int, device: str, dtype: torch.dtype, backward: bool) -> int:
    """Peak memory one call needs beyond its inputs (see the module docstring)."""
    if device == "cuda":
        inputs = make_inputs(batch, device, dtype, backward)
        run_once(impl, inputs, backward)  # warm-up: allocator caches, lazy init
        for t in (inputs[0], inputs[3], inputs[4]):
            t.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_once(impl, inputs, backward)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    cmd = [sys.executable, __file__, "--memory-worker", impl, str(batch), str(dtype).split(".")[-1],
           str(int(backward))] + (["--tiny"] if LEVELS != FULL_LEVELS else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def memory_worker(impl: str, batch: int, dtype_name: str, backward: bool) -> None:
    """Subprocess body for CPU peak memory: prints the growth of VmHWM in bytes."""
    inputs = make_inputs(batch, "cpu", getattr(torch, dtype_name), backward)
    # No warm-up: the high-water mark only grows, so the first call's growth is the peak it needs.
    base = _high_water_bytes()
    run_once(impl, inputs, backward)
    print(_high_water_bytes() - base)


def _high_water_bytes() -> int:
    """Peak resident set of this process (VmHWM). Not ru_maxrss: Linux carries that over
    from the parent across fork and exec, so a child would inherit the bench's own peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtypes", nargs="+", default=None,
                        help="default: float32 (CPU), float32 float16 bfloat16 (CUDA)")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--tiny", action="store_true",
                        help="small levels (6x8, 3x4, 2x2), for a dry run of the script")
    parser.add_argument("--memory-worker", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny:
        global LEVELS
        LEVELS = ((6, 8), (3, 4), (2, 2))
    if args.memory_worker:
        impl, batch, dtype_name, backward = args.memory_worker
        memory_worker(impl, int(batch), dtype_name, backward == "1")
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/msda.py: --device cuda asked for, but torch sees no CUDA device")
    dtypes = args.dtypes or (["float32"] if args.device == "cpu" else
                             ["float32", "float16", "bfloat16"])
    repeats = args.repeats or (5 if args.device == "cpu" else 50)
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    s_total = sum(h * w for h, w in LEVELS)
    print(f"MSDeformAttn on {where}, torch {torch.__version__}; levels {LEVELS}, "
          f"H={HEADS} D={CHANNELS} P={POINTS}, Q=S={s_total}; median of {repeats}")
    header = (f"{'B':>2} {'dtype':>8} {'pass':>8} | {'ours ms':>8} {'ref ms':>8} {'speed-up':>8} | "
              f"{'ours MiB':>8} {'ref MiB':>8} {'mem ratio':>9}")
    print(header)
    print("-" * len(header))
    results = []
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        for batch in args.batch:
            for backward in (False, True):
                row = {"device": args.device, "batch": batch, "dtype": dtype_name,
                       "pass": "fwd+bwd" if backward else "fwd"}
                for impl in IMPLS:
                    row[f"{impl}_s"] = time_case(impl, batch, args.device, dtype, backward,
                                                 repeats)
                    row[f"{impl}_bytes"] = peak_bytes(impl, batch, args.device, dtype, backward)
                speed = row["reference_s"] / row["ours_s"]
                mem = row["ours_bytes"] / max(row["reference_bytes"], 1)
                print(f"{batch:>2} {dtype_name:>8} {row['pass']:>8} | {row['ours_s'] * 1e3:8.2f} "
                      f"{row['reference_s'] * 1e3:8.2f} {speed:7.2f}x | "
                      f"{row['ours_bytes'] / 2**20:8.1f} {row['reference_bytes'] / 2**20:8.1f} "
                      f"{mem:9.2f}", flush=True)
                results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
