"""Benchmark: host round trips (device->host syncs) per frame, counted on any device.

Runs a short clip of moving shapes through `SPVIS.step` (tiny preset, seeded random weights, or
a checkpoint) and counts, per frame, the places where the host would wait for the GPU
(`spvis_model.syncs.count_syncs`: ``item``/``bool``/``tolist``/``cpu``, data-dependent shapes,
uploads from pageable memory, the tracker's packed copies). Reported separately for the
segmenter (`segment`), the tracker (`track`) and the whole `step`, with the source lines.

On CUDA, ``--cuda-debug`` also counts what ``torch.cuda.set_sync_debug_mode("warn")`` reports
for one `step` (the real syncs).

    python bench/tracker_syncs.py                       # CPU count, tiny, 12 frames
    python bench/tracker_syncs.py --checkpoint spvis_model/weights/spvis_lite0.pt --reference
    python bench/tracker_syncs.py --device cuda --cuda-debug --json out.json
    python bench/tracker_syncs.py --checkpoint spvis_model/weights/spvis_lite0.pt \
        --data data/eval/val_fps30 --frames 40          # a 27 fps video: error correction runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from spvis_model.config import preset
from spvis_model.model import SPVIS
from spvis_model.syncs import SyncCount, count_syncs


def clip(n: int, h: int = 96, w: int = 128, seed: int = 0) -> list[np.ndarray]:
    """n frames (h, w, 3) uint8: three coloured squares moving over noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(n):
        f = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
        f[10:40, 5 + 3 * t: 35 + 3 * t] = (220, 40, 40)
        f[50:80, 90 - 2 * t: 120 - 2 * t] = (40, 200, 60)
        if t % 4 != 3:  # one object blinks
            f[60:85, 40:60] = (230, 230, 40)
        frames.append(f)
    return frames


def video_frames(root: Path, n: int) -> tuple[list[np.ndarray], list[float]]:
    """The first n frames (RGB uint8) and stamps (s) of the first video of a YouTube-VIS
    folder (annotations.json + JPEGImages/), read by the training data's reader."""
    from spvis_model.data.ytvis import YTVISDataset

    ds = YTVISDataset(root / "annotations.json")
    video = ds.videos[0]
    count = min(n, video.length)
    return ([ds.read_frame(video.id, t) for t in range(count)],
            [float(s) for s in video.stamps[:count]])


def load(args: argparse.Namespace) -> SPVIS:
    if args.checkpoint:
        return SPVIS.from_checkpoint(args.checkpoint, device=args.device).eval()
    torch.manual_seed(0)
    cfg = preset(args.preset)
    cfg.input.max_size = args.max_size
    return SPVIS(cfg, pretrained_backbone=False).to(args.device).eval()


@torch.inference_mode()
def count_frames(model: SPVIS, frames: list[np.ndarray], reference: bool = False,
                 stamps: list[float] | None = None) -> dict:
    """Per-frame counts of the segmenter, the tracker and the whole step (steps replayed on the
    same states so that the three see the same frames). With `reference`, also the tracker step
    plus post-processing of the current path (``track_post``) and of the path before the
    host-sync work (``reference_track_post``, spvis_model.tracker.reference), each on its own
    state."""
    from spvis_model.tracker.reference import reference_postprocess, reference_step

    state = model.init_state()
    keys = ["segment", "track", "step"]
    if reference:
        keys += ["track_post", "reference_track_post"]
    per: dict[str, list[int]] = {k: [] for k in keys}
    sites: dict[str, SyncCount] = {k: SyncCount() for k in per}
    new, ref = model.init_state(), model.init_state()
    heads = model.segmenter.decoder
    for i, frame in enumerate(frames):
        stamp = 0.2 * i if stamps is None else stamps[i]
        images, geom = model.preprocess(frame)
        with count_syncs() as c_seg:
            seg = model.segment(images)
        feats = model.frame_features(seg, 0, geom)
        with count_syncs() as c_track:
            model.track(state, feats, stamp)
        with count_syncs() as c_step:
            state, _ = model.step(state, frame, stamp)
        counts = [("segment", c_seg), ("track", c_track), ("step", c_step)]
        if reference:
            uploaded = torch.from_numpy(frame).to(model.device)  # the guide of mask_refine
            with count_syncs() as c_new:
                new, result = model.tracker.step(new, feats, stamp, heads)
                model.postprocess(result, geom, frame=uploaded)
            with count_syncs() as c_ref:
                ref, result = reference_step(model.tracker, ref, feats, stamp, heads)
                reference_postprocess(model, result, geom, frame=uploaded)
            counts += [("track_post", c_new), ("reference_track_post", c_ref)]
        for key, c in counts:
            per[key].append(c.total)
            sites[key].by_site.update(c.by_site)
            sites[key].by_kind.update(c.by_kind)
    n = len(frames)
    return {key: {"median": statistics.median(v), "max": max(v), "min": min(v), "per_frame": v,
                  "by_site": {s: c / n for s, c in sites[key].by_site.most_common()},
                  "by_kind": {k: c / n for k, c in sites[key].by_kind.items()}}
            for key, v in per.items()}


def cuda_debug_count(model: SPVIS, frames: list[np.ndarray], stamps: list[float]) -> list[int]:
    """Warnings from torch.cuda.set_sync_debug_mode("warn") per `step` (after a warm-up)."""
    state = model.init_state()
    counts = []
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    state, _ = model.step(state, frame, stamps[i])
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            if i > 0:
                counts.append(sum("synchroniz" in str(w.message) for w in caught))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--max-size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--cuda-debug", action="store_true")
    parser.add_argument("--reference", action="store_true",
                        help="also count the tracker + post-processing before the host-sync "
                             "work (spvis_model.tracker.reference) against the current one")
    parser.add_argument("--interval", type=float, default=0.2,
                        help="seconds between the built-in clip's frames (0.2: 5 fps; error "
                             "correction runs only when it is <= the model's "
                             "correction_max_interval, e.g. 1/30); not with --data")
    parser.add_argument("--data", type=Path, default=None,
                        help="a YouTube-VIS folder (annotations.json + JPEGImages, e.g. "
                             "data/eval/val_fps30): its first video's frames and stamps")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench/tracker_syncs.py: --device cuda asked for, but torch sees no CUDA device")
    if args.data is not None and args.interval != parser.get_default("interval"):
        sys.exit("bench/tracker_syncs.py: --interval is for the built-in clip; --data videos "
                 "bring their own stamps")
    model = load(args)
    if args.data is not None:
        frames, stamps = video_frames(args.data, args.frames)
    else:
        frames = clip(args.frames)
        stamps = [args.interval * i for i in range(args.frames)]
    result = {"device": args.device, "preset": model.cfg.name, "frames": len(frames),
              "stamps": stamps, "counts": count_frames(model, frames, args.reference, stamps)}
    for key in result["counts"]:
        c = result["counts"][key]
        print(f"{key:>8}: host round trips per frame median {c['median']} (min {c['min']}, "
              f"max {c['max']})")
        for site, n in list(c["by_site"].items())[:10]:
            print(f"            {n:6.2f}  {site}")
    if args.cuda_debug and args.device.startswith("cuda"):
        real = cuda_debug_count(model, frames, stamps)
        result["cuda_sync_debug_per_step"] = real
        print(f"CUDA set_sync_debug_mode warnings per step: median {statistics.median(real)} "
              f"{real}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
