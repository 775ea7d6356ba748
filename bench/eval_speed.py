"""Benchmark: spvis `evaluate` (YouTube-VIS AP, with its input checks) against the official path.

Builds a YouTube-VIS-2019-sized input in memory: `--videos` videos (300) of `--frames` frames
(36) at `--height`×`--width` (360×640), `--gt` ground-truth tracks per video (2, uncompressed
RLE as YouTube-VIS ships, with `areas`) and `--preds` predictions per video (10, compressed
string RLE: a good and a shifted copy of each object plus distractors, some frames left out).
Masks are ellipses, written as run lengths directly (no pixel arrays), so building is quick.

Then it times, on the same parsed objects (no JSON parsing on either side):

- **spvis**: `spvis_model.eval.evaluate(gt, results)`, everything included: the checks of every
  entry and RLE, the video IoUs, COCOeval's evaluate/accumulate/summarize;
- **official**: a minimal re-implementation of the official YouTube-VIS API's computation path
  (youtubevos/cocoapi `ytvos`/`ytvoseval`), written from its description, with no input
  checks: the results loader's per-frame `maskUtils.area` and `toBbox`, the GT loader's
  per-frame `frPyObjects` conversion, and COCOeval with the video IoU plugged in, computed per
  prediction and ground-truth pair as Σₜ|dₜ∩gₜ| / Σₜ|dₜ∪gₜ|: for a frame with both masks, the
  areas of their `merge`d intersection and union; with one mask, its `area`;
- **lean** and **batched**: the same, with one merge(intersect) per pair and frame and the areas
  cached, or with each frame's IoUs of all pairs of a (video, category) from one `maskUtils.iou`
  call: faster variants than the official code;
- **official, gc paused**: the official path with Python's cyclic garbage collector paused, as
  spvis pauses it while loading and scoring (shows what that alone is worth).

All must give the same eight numbers (checked). Prints the times (best of `--repeats`) and the
ratios spvis / each. Tests never assert on timings.

    python bench/eval_speed.py
    python bench/eval_speed.py --videos 50 --repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

AREA_RANGES = [[0.0, 1e5**2], [0.0, 128.0**2], [128.0**2, 256.0**2], [256.0**2, 1e5**2]]
N_CATEGORIES = 40


# -------------------------------------------------------------------------------- input
def ellipse_runs(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> list[int]:
    """Uncompressed COCO RLE counts (column-major runs, zeros first) of a filled ellipse.

    The ellipse is clipped to rows 1..h-2 and columns 0..w-1, so runs never touch across
    columns."""
    xs = np.arange(max(0, int(np.ceil(cx - rx))), min(w, int(np.floor(cx + rx)) + 1))
    half = ry * np.sqrt(np.clip(1.0 - ((xs - cx) / rx) ** 2, 0.0, None))
    y0 = np.clip(np.rint(cy - half), 1, h - 2).astype(np.int64)
    y1 = np.clip(np.rint(cy + half), 1, h - 2).astype(np.int64)
    keep = y1 > y0
    starts = xs[keep] * h + y0[keep]
    ends = xs[keep] * h + y1[keep]
    if starts.size == 0:
        return [h * w]
    edges = np.empty(2 * starts.size + 2, dtype=np.int64)
    edges[0], edges[-1] = 0, h * w
    edges[1:-1:2], edges[2:-1:2] = starts, ends
    return np.diff(edges).tolist()


def build_input(n_videos: int, n_frames: int, h: int, w: int, n_gt: int, n_preds: int,
                seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A YouTube-VIS dataset dict and results list (see the module docstring)."""
    rng = np.random.default_rng(seed)
    videos, annotations, results = [], [], []

    def path(cy: float, cx: float, ry: float, rx: float, vy: float, vx: float
             ) -> list[tuple[float, float, float, float]]:
        return [(float(np.clip(cy + vy * t, ry + 1, h - ry - 2)),
                 float(np.clip(cx + vx * t, rx, w - rx - 1)), ry, rx) for t in range(n_frames)]

    def random_path() -> list[tuple[float, float, float, float]]:
        ry = float(rng.uniform(0.05, 0.4) * h)
        rx = float(rng.uniform(0.05, 0.4) * w)
        return path(float(rng.uniform(ry, h - ry)), float(rng.uniform(rx, w - rx)), ry, rx,
                    float(rng.normal(0, 1.5)), float(rng.normal(0, 3)))

    for vid in range(1, n_videos + 1):
        videos.append({"id": vid, "width": w, "height": h, "length": n_frames,
                       "file_names": [f"{vid:05d}/{t:05d}.jpg" for t in range(n_frames)]})
        objects = []
        for _ in range(n_gt):
            shape = random_path()
            present = rng.random(n_frames) > 0.1
            present[0] = True
            cat = int(rng.integers(1, N_CATEGORIES + 1))
            objects.append((shape, present, cat))
            segs: list[dict[str, Any] | None] = []
            areas: list[int | None] = []
            for t in range(n_frames):
                if present[t]:
                    counts = ellipse_runs(h, w, *shape[t])
                    segs.append({"size": [h, w], "counts": counts})
                    areas.append(int(sum(counts[1::2])))
                else:
                    segs.append(None)
                    areas.append(None)
            annotations.append({"id": len(annotations) + 1, "video_id": vid, "category_id": cat,
                                "iscrowd": 0, "segmentations": segs, "areas": areas,
                                "bboxes": [None] * n_frames, "height": h, "width": w})
        shapes = []
        for shape, present, cat in objects:  # a good copy and a shifted copy of each object
            for shift in (0.03, 0.25):
                moved = [(cy + shift * ry, cx - shift * rx, ry * 0.95, rx * 1.05)
                         for cy, cx, ry, rx in shape]
                shapes.append((moved, present & (rng.random(n_frames) > 0.05), cat))
        while len(shapes) < n_preds:
            shapes.append((random_path(), rng.random(n_frames) > 0.2,
                           int(rng.integers(1, N_CATEGORIES + 1))))
        for shape, present, cat in shapes[:n_preds]:
            segs = []
            for t in range(n_frames):
                if present[t]:
                    rle = mask_utils.frPyObjects({"size": [h, w],
                                                  "counts": ellipse_runs(h, w, *shape[t])}, h, w)
                    segs.append({"size": [h, w], "counts": rle["counts"].decode("ascii")})
                else:
                    segs.append(None)
            results.append({"video_id": vid, "category_id": cat,
                            "score": float(rng.uniform(0.05, 1.0)), "segmentations": segs})
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, N_CATEGORIES + 1)]
    return {"videos": videos, "annotations": annotations, "categories": categories}, results


# -------------------------------------------------------------------------------- reference
VARIANTS = ("official", "lean", "batched", "official, gc paused")
"""official: the official API's per-frame work (see the module docstring); lean: one merge per
pair and frame and the cached areas, no bounding boxes; batched: one iou call per frame;
"official, gc paused": the official path with Python's cyclic garbage collector paused, as
spvis pauses it while it loads and scores (what that trick alone is worth)."""


def _pair_iou_official(d: list[dict | None], g: list[dict | None]) -> float:
    """Σ|d∩g| / Σ|d∪g| as the official code computes it: for a frame with both masks, the
    area of their intersection and of their union (two merges); with one mask, its area."""
    inter = 0.0
    union = 0.0
    for dt, gt in zip(d, g, strict=True):
        if dt and gt:
            inter += float(mask_utils.area(mask_utils.merge([dt, gt], intersect=True)))
            union += float(mask_utils.area(mask_utils.merge([dt, gt], intersect=False)))
        elif dt:
            union += float(mask_utils.area(dt))
        elif gt:
            union += float(mask_utils.area(gt))
    return inter / union if union > 0 else 0.0


def _pair_iou_lean(d: list[dict | None], g: list[dict | None], d_area: list[float],
                   g_area: list[float]) -> float:
    """Same number with one merge(intersect) + area per frame with both masks and the union
    taken from the cached areas."""
    inter = 0.0
    union = 0.0
    for dt, gt, da, ga in zip(d, g, d_area, g_area, strict=True):
        if dt is not None and gt is not None:
            i = float(mask_utils.area(mask_utils.merge([dt, gt], intersect=True)))
            inter += i
            union += da + ga - i
        elif dt is not None:
            union += da
        elif gt is not None:
            union += ga
    return inter / union if union > 0 else 0.0


class _OfficialStyleEval(COCOeval):
    """COCOeval over (video, category) units, data prepared the way the official API does."""

    def __init__(self, gt: dict[str, Any], results: list[dict[str, Any]], variant: str) -> None:
        super().__init__(cocoGt=None, cocoDt=None, iouType="segm")
        self.params.imgIds = sorted(v["id"] for v in gt["videos"])
        self.params.catIds = sorted(c["id"] for c in gt["categories"])
        self.params.areaRng = [list(r) for r in AREA_RANGES]
        self._gt_data = gt
        self._results = results
        self._variant = variant

    def _prepare(self) -> None:
        videos = {v["id"]: v for v in self._gt_data["videos"]}
        self._gts = defaultdict(list)
        self._dts = defaultdict(list)
        for k, res in enumerate(self._results):  # results loader: per-frame area (and box)
            areas: list[float | None] = []
            for seg in res["segmentations"]:
                if seg:
                    areas.append(float(mask_utils.area(seg)))
                    if self._variant == "official":
                        mask_utils.toBbox(seg)
                else:
                    areas.append(None)
            kept = [a for a in areas if a]
            self._dts[res["video_id"], res["category_id"]].append(
                {"id": k + 1, "segmentations": res["segmentations"], "areas": areas,
                 "area": float(np.mean(kept)) if kept else 0.0, "score": res["score"]})
        for ann in self._gt_data["annotations"]:  # GT: per-frame conversion to compressed RLE
            v = videos[ann["video_id"]]
            segs = [mask_utils.frPyObjects(s, v["height"], v["width"]) if s else None
                    for s in ann["segmentations"]]
            areas = [a for a in ann["areas"] if a]
            area = float(np.mean(areas)) if areas else 0.0
            self._gts[ann["video_id"], ann["category_id"]].append(
                {"id": ann["id"], "segmentations": segs, "areas": ann["areas"], "area": area,
                 "iscrowd": ann["iscrowd"], "ignore": ann["iscrowd"]})
        self.evalImgs = defaultdict(list)
        self.eval = {}

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802, N803
        gts = self._gts[imgId, catId]
        dts = self._dts[imgId, catId]
        if not gts and not dts:
            return []
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")
        dts = [dts[i] for i in order[: self.params.maxDets[-1]]]
        if self._variant == "official":
            out = np.zeros((len(dts), len(gts)))
            for i, j in np.ndindex(out.shape):
                out[i, j] = _pair_iou_official(dts[i]["segmentations"], gts[j]["segmentations"])
            return out
        if not gts or not dts:
            return np.zeros((len(dts), len(gts)))
        g_areas = [[a or 0.0 for a in g["areas"]] for g in gts]
        d_areas = [[a or 0.0 for a in d["areas"]] for d in dts]
        if self._variant == "lean":
            return np.array([[_pair_iou_lean(d["segmentations"], g["segmentations"], da, ga)
                              for g, ga in zip(gts, g_areas, strict=True)]
                             for d, da in zip(dts, d_areas, strict=True)])
        inter = np.zeros((len(dts), len(gts)))
        for t in range(len(g_areas[0])):
            di = [i for i, d in enumerate(dts) if d["segmentations"][t]]
            gi = [j for j, g in enumerate(gts) if g["segmentations"][t]]
            if not di or not gi:
                continue
            iou = np.asarray(mask_utils.iou([dts[i]["segmentations"][t] for i in di],
                                            [gts[j]["segmentations"][t] for j in gi],
                                            [0] * len(gi)))
            da = np.array([d_areas[i][t] for i in di])[:, None]
            ga = np.array([g_areas[j][t] for j in gi])[None, :]
            inter[np.ix_(di, gi)] += np.rint(iou * (da + ga) / (1.0 + iou))
        d_tot = np.array([sum(a) for a in d_areas])[:, None]
        g_tot = np.array([sum(a) for a in g_areas])[None, :]
        union = d_tot + g_tot - inter
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def official_evaluate(gt: dict[str, Any], results: list[dict[str, Any]],
                      variant: str = "official") -> list[float]:
    """The official path's first eight summary numbers (AP ... AR10), see VARIANTS."""
    if variant == "official, gc paused":
        from spvis_model.eval.data import paused_gc

        with paused_gc():
            return official_evaluate(gt, results, "official")
    ev = _OfficialStyleEval(gt, results, variant)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:8]]


# -------------------------------------------------------------------------------- timing
def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=300)
    p.add_argument("--frames", type=int, default=36)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--gt", type=int, default=2, help="ground-truth tracks per video")
    p.add_argument("--preds", type=int, default=10, help="predictions per video")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                   help="reference variants to time (default all)")
    p.add_argument("--profile", action="store_true", help="cProfile one spvis run instead")
    args = p.parse_args(argv)

    from spvis_model.eval import evaluate
    from spvis_model.eval.ytvis import SUMMARY_KEYS

    t0 = time.perf_counter()
    gt, results = build_input(args.videos, args.frames, args.height, args.width, args.gt,
                              args.preds)
    n_rle = sum(s is not None for r in results for s in r["segmentations"])
    n_gt_rle = sum(s is not None for a in gt["annotations"] for s in a["segmentations"])
    print(f"input: {args.videos} videos x {args.frames} frames at {args.height}x{args.width}, "
          f"{len(gt['annotations'])} GT tracks ({n_gt_rle} uncompressed RLEs), {len(results)} "
          f"predictions ({n_rle} compressed RLEs); built in {time.perf_counter() - t0:.1f} s")
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(evaluate, gt, results)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        return 0

    t_spvis, ours = best_of(lambda: evaluate(gt, results), args.repeats)
    ours_list = [ours[k] for k in SUMMARY_KEYS]  # type: ignore[index]
    times = {}
    for variant in args.variants:
        t_ref, ref = best_of(lambda v=variant: official_evaluate(gt, results, v), args.repeats)
        diff = max(abs(a - b) for a, b in zip(ours_list, ref, strict=True))  # type: ignore[arg-type]
        if diff > 1e-12:
            print(f"MISMATCH spvis vs {variant}: {ours_list} vs {ref}", file=sys.stderr)
            return 1
        times[variant] = t_ref
    print("AP..AR10 (identical on all): "
          + ", ".join(f"{k} {v:.4f}" for k, v in zip(SUMMARY_KEYS, ours_list, strict=True)))
    print(f"best of {args.repeats}:")
    print(f"  spvis evaluate (with input checks)       {t_spvis:8.2f} s")
    labels = {"official": "official path (as the official code)",
              "lean": "official path, lean IoU (1 merge)",
              "batched": "official path, batched iou per frame",
              "official, gc paused": "official path, gc paused"}
    for variant in args.variants:
        print(f"  {labels[variant]:40s} {times[variant]:8.2f} s   "
              f"spvis/this = {t_spvis / times[variant]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
