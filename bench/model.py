"""Benchmark: per-frame cost of each SPVIS stage, and the tracker's share of it.

For each preset at 640×480 it times, per frame (batch 1, median of the repeats):
- the segmenter's stages: backbone, pixel decoder, transformer decoder (and their sum);
- the whole tracker step (SIM + PGT + RCP + heads + life cycle) with 8 and with 64 live
  tracks, and inside it SIM, the referring decoder (PGT b) and RCP timed on their own; the
  rest, "PGT a/c + update", is association, error correction, the mask/class heads and the
  state update;
- the tracker's cost as a share of the segmenter's (the design goal: SIM + PGT + RCP ≤ 10% of
  the segmenter at 64 tracks on CUDA);
- candidate NMS (`TrackerConfig.nms_measure`, each measure at `nms_iou` 0.7) in its worst
  case, every query a candidate, on host copies as the tracker runs it;
- the published masks of 8 and 32 tracks, plain and refined against the frame
  (`TrackerConfig.mask_refine`), and the refinement's share of the segmenter;
- the TrackerState's bytes against max_tracks, and after 1, 100 and 1000 frames (constant);
- with ``--step-frames N``, the whole ``SPVIS.step`` (upload, preprocess, segmenter, tracker,
  post-processing to host Instances) on N frames of a moving clip: median, p90, p99; with
  ``--capture graphs compile`` also with the segmenter captured (spvis_model.graphs), and what
  ran for each stage.

Several ``--precision`` values time each preset (built once) in each: float16 / bfloat16 run
the segmenter under CUDA autocast.

Weights are random (timing does not depend on them). Live tracks are planted in the state.
The presets r50, r101, swin-t, swin-s, swin-b and swin-l are the architectures `spvis import`
makes from published Mask2Former / MinVIS / DVIS checkpoints (100 queries, 200 for swin-l).
They run at 640×480 with spvis's 640 px rule; `--min-size N` times them with an imported
model's own test-time rule instead (shorter side N, longer side at most 1333: 800 for COCO
models, 360 / 480 for the video ones), where a 640×480 frame is resized first.

    python bench/model.py --device cpu
    python bench/model.py --device cuda --presets tiny lite0 r50
    python bench/model.py --device cpu --presets r50 r101 swin-t swin-l
    python bench/model.py --device cuda --presets lite0 r50 --precision float32 bfloat16 \
        --step-frames 60 --capture graphs compile --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from spvis_model.config import NMS_MEASURES, preset
from spvis_model.model import SPVIS, make_tracker
from spvis_model.tracker.detections import candidates, detection_tensors
from spvis_model.tracker.geometry import time_encoding
from spvis_model.tracker.state import ACTIVE, TrackerState

H, W = 480, 640


def timer(device: str, repeats: int) -> Callable[[Callable[[], object]], float]:
    def run(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    return run


def planted_state(model: SPVIS, live: int, seed: int = 0) -> TrackerState:
    """A state with `live` active tracks carrying full memories (last seen 0.5 s ago)."""
    gen = torch.Generator().manual_seed(seed)
    state = model.init_state()
    cfg = model.cfg.tracker
    dev = model.device
    c, k, r = model.cfg.segmenter.hidden_dim, cfg.memory_size, cfg.mask_res

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dev)

    state.status[:live] = ACTIVE
    state.ids[:live] = torch.arange(1, live + 1, device=dev)
    state.next_id.fill_(live + 1)
    state.query[:live] = rnd(live, c)
    state.ref[:live] = torch.nn.functional.normalize(rnd(live, c), dim=-1)
    state.proto[:live] = torch.nn.functional.normalize(rnd(live, c), dim=-1)
    state.snapshots[:live] = rnd(live, k, c)
    state.snap_valid[:live] = True
    state.box[:live] = torch.rand(live, 4, generator=gen).to(dev) * 0.5 + 0.1
    state.mask[:live] = torch.rand(live, r, r, generator=gen).to(dev)
    state.score[:live] = 0.9
    state.hits[:live] = 10
    state.last_seen[:live] = 0.0
    state.last_stamp.fill_(0.0)
    return state


def moving_clip(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """n frames (h, w, 3) uint8: noise with a few bright boxes that move (steady tracks)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    out = []
    for t in range(n):
        f = base.copy()
        for k in range(6):
            y = (h // 8) * (k % 3 + 1) + (t % 5)
            x = (w // 8) * (k + 1) + 2 * t % (w // 8)
            f[y:y + h // 8, x:x + w // 10] = (40 * k + 30, 200 - 20 * k, 90)
        out.append(f)
    return out


def time_steps(model: SPVIS, frames: list[np.ndarray], device: str) -> dict:
    """The whole `step` (upload, preprocess, segmenter, tracker, postprocess to Instances on the
    host) per frame, after two warm-up frames: median, p90, p99, max in seconds."""
    state = model.init_state()
    times = []
    for i, frame in enumerate(frames):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        state, _ = model.step(state, frame, 0.1 * i)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    arr = np.asarray(times)
    return {"median_s": float(np.median(arr)), "p90_s": float(np.percentile(arr, 90)),
            "p99_s": float(np.percentile(arr, 99)), "max_s": float(arr.max()),
            "frames": len(times), "live_tracks_end": state.num_live()}


def build(name: str, device: str, min_size: int = 0) -> SPVIS:
    """The preset with seeded random weights (timing does not depend on them), at least 64
    track slots, in eval mode on `device`."""
    torch.manual_seed(0)  # random weights; seeded so runs compare (see docs/benchmarks.md)
    cfg = preset(name)
    if min_size:
        cfg.input.min_size, cfg.input.max_size = min_size, 1333
    cfg.tracker.max_tracks = max(cfg.tracker.max_tracks, 64)
    return SPVIS(cfg, pretrained_backbone=False).to(device).eval()


@torch.inference_mode()
def bench_stages(model: SPVIS, device: str, repeats: int) -> dict:
    """Per-stage segmenter times, preprocess, and the tracker with 8 and 64 live tracks, at the
    model's current precision, on one H×W frame."""
    time_it = timer(device, repeats)
    frame = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    images, geom = model.preprocess(frame)
    seg = model.segmenter
    out: dict = {"input": list(geom.padded)}

    with model._autocast():
        feats_bb = seg.backbone(images)
        pix = seg.sem_seg_head.pixel_decoder(feats_bb)
        out["backbone_s"] = time_it(lambda: seg.backbone(images))
        out["pixel_decoder_s"] = time_it(lambda: seg.sem_seg_head.pixel_decoder(feats_bb))
        out["decoder_s"] = time_it(lambda: seg.sem_seg_head.predictor(
            pix.multi_scale_features, pix.mask_features))
    out["segmenter_s"] = out["backbone_s"] + out["pixel_decoder_s"] + out["decoder_s"]
    out["preprocess_s"] = time_it(lambda: model.preprocess(frame))

    feats = model.frame_features(model.segment(images), 0, geom)
    tracker = model.tracker
    dets = detection_tensors(feats, tracker.cfg.mask_res)
    low, every = dets.low.cpu(), torch.ones(dets.score.shape[0])
    out["queries"] = int(dets.score.shape[0])
    out["nms_all_queries"] = {m: time_it(lambda m=m: candidates(every, low, 0.0, 0.7, m))
                                for m in NMS_MEASURES}
    out["masks"] = bench_masks(model, geom, frame, time_it, out["segmenter_s"])
    c = model.cfg.segmenter.hidden_dim
    for live in (8, 64):
        state = planted_state(model, live)
        idx = torch.arange(live, device=model.device)
        # 0.5 s after the last frame (2 fps: error correction does not run with the default
        # correction_max_interval) and 1/30 s after it (30 fps: it runs when switched on).
        total = time_it(lambda state=state: model.track(state, feats, 0.5))
        total30 = time_it(lambda state=state: model.track(state, feats, 1 / 30))
        since = torch.full((live,), 0.5, device=model.device)
        sim = time_it(lambda state=state, idx=idx, since=since: tracker.sim(
            state.query[idx], state.box[idx], state.mask[idx], since, feats.memory,
            feats.spatial_shapes, feats.level_start_index))
        det_pos = tracker.box_pos(torch.rand(feats.query_embed.shape[0], 4, device=model.device))
        pos = tracker.box_pos(state.box[idx])
        referring = time_it(lambda state=state, idx=idx, pos=pos, det_pos=det_pos:
                            tracker.referring(state.query[idx], state.query[idx], pos,
                                              feats.query_embed, det_pos))
        enc = time_encoding(since, c)
        score = torch.full((live,), 0.8, device=model.device)
        rcp = time_it(lambda state=state, idx=idx, enc=enc, score=score: tracker.rcp(
            state.query[idx], state.query[idx], state.proto[idx], enc, score,
            state.snapshots[idx], state.snap_valid[idx]))
        out[f"tracks{live}"] = {
            "tracker_s": total, "sim_s": sim, "referring_s": referring, "rcp_s": rcp,
            "assoc_update_s": max(total - sim - referring - rcp, 0.0),
            "share_of_segmenter": total / out["segmenter_s"],
            "tracker_30fps_s": total30, "share_of_segmenter_30fps": total30 / out["segmenter_s"],
        }
    return out


def blob_logits(n: int, geom: object, device: str | torch.device, seed: int = 0
                ) -> torch.Tensor:
    """(n, Hp/4, Wp/4) mask logits of n round objects, 2-12% of the frame's width across,
    at random places: what a published track's logits look like, for the mask-output cost."""
    gen = torch.Generator().manual_seed(seed)
    hp, wp = geom.padded[0] // 4, geom.padded[1] // 4
    h4, w4 = geom.valid_stride4
    yy, xx = torch.meshgrid(torch.arange(hp, dtype=torch.float32),
                            torch.arange(wp, dtype=torch.float32), indexing="ij")
    cy = torch.rand(n, 1, 1, generator=gen) * h4
    cx = torch.rand(n, 1, 1, generator=gen) * w4
    rad = (0.01 + 0.05 * torch.rand(n, 1, 1, generator=gen)) * w4
    dist = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
    return (4.0 * (1.0 - dist / rad)).to(device)


def bench_masks(model: SPVIS, geom: object, frame: np.ndarray,
                time_it: Callable[[Callable[[], object]], float], segmenter_s: float) -> dict:
    """Published masks from 8 and 32 tracks' logits (`postprocess`'s mask step), plain
    (bilinear, logit > 0) and refined (`tracker.mask_refine: guided`, radius 5, on crops on
    the CPU, over the whole frame on CUDA) with one filter pass and with the shipped model's
    two (eps 3e-4), and the shipped refinement's extra time as a share of the segmenter."""
    from spvis_model.mask_refine import output_masks

    uploaded = torch.from_numpy(frame).to(model.device)
    out: dict = {}
    for n in (8, 32):
        logits = blob_logits(n, geom, model.device)
        plain = time_it(lambda logits=logits: output_masks(logits, geom))
        guided = time_it(lambda logits=logits: output_masks(logits, geom, "guided", 5.0,
                                                            1e-3, uploaded))
        shipped = time_it(lambda logits=logits: output_masks(logits, geom, "guided", 5.0,
                                                             3e-4, uploaded, passes=2))
        out[f"tracks{n}"] = {"plain_s": plain, "guided_s": guided, "guided_2pass_s": shipped,
                             "extra_share_of_segmenter": (shipped - plain) / segmenter_s}
    return out


@torch.inference_mode()
def bench_step(model: SPVIS, device: str, frames: int, captures: tuple[str, ...]) -> dict:
    """The whole `step` on a moving clip of H×W frames: eager, then with the segmenter
    captured in each of `captures` (what runs is recorded: a stage that cannot be captured
    runs eagerly with a CaptureFallbackWarning)."""
    clip = moving_clip(frames + 2, H, W)
    out = {"eager": time_steps(model, clip, device)}
    for mode in captures:
        model.capture(mode)
        try:
            out[mode] = time_steps(model, clip, device)
            out[mode]["capture"] = model.segment_graphs.describe()
        finally:
            model.capture("eager")
    return out


@torch.inference_mode()
def bench_state(model: SPVIS, name: str, device: str, stream_frames: int) -> dict:
    """The TrackerState's bytes against max_tracks, and after a number of frames processed."""
    sizes = {}
    for m in (8, 16, 32, 64, 128):
        c2 = preset(name)
        c2.tracker.max_tracks = m
        # The state depends on the tracker config only: no need to build the segmenter again.
        sizes[m] = make_tracker(c2).init_state(torch.device(device)).nbytes()
    # State size against stream length (the state does not depend on the input size, so these
    # frames are processed small to keep the bench short).
    saved = model.cfg.input.max_size, model.cfg.input.min_size
    model.cfg.input.max_size, model.cfg.input.min_size = 64, 0
    try:
        state = model.init_state()
        small = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        by_frames = {}
        checkpoints = (1, 100, 1000) if name == "tiny" or device == "cuda" else (1, 10, 100)
        if stream_frames:
            checkpoints = tuple(sorted({1, max(1, stream_frames // 10), stream_frames}))
        for i in range(1, checkpoints[-1] + 1):
            state, _ = model.step(state, small, i * 0.1)
            if i in checkpoints:
                by_frames[i] = state.nbytes()
    finally:
        model.cfg.input.max_size, model.cfg.input.min_size = saved
    return {"state_bytes_by_max_tracks": sizes, "state_bytes_by_frames": by_frames}


def bench_preset(name: str, device: str, repeats: int, precisions: tuple[str, ...],
                 min_size: int = 0, step_frames: int = 0, stream_frames: int = 0,
                 captures: tuple[str, ...] = (), step_only: bool = False) -> list[dict]:
    """One result per precision for the preset (the model is built once): stage times and
    tracker share (unless `step_only`), the whole step (with `step_frames`), and the state
    sizes (measured once, with the first precision)."""
    model = build(name, device, min_size)
    results = []
    state_sizes: dict | None = None
    for precision in precisions:
        model.set_precision(precision)
        out: dict = {"preset": name, "device": device, "precision": precision,
                     "frame": [H, W]}
        if not step_only:
            out.update(bench_stages(model, device, repeats))
        if step_frames:
            out["step"] = bench_step(model, device, step_frames, captures)
        if not step_only:
            if state_sizes is None:
                state_sizes = bench_state(model, name, device, stream_frames)
            out.update(state_sizes)
        results.append(out)
    model.set_precision("float32")
    return results


def report(r: dict) -> None:
    """Print one result."""
    print(f"\n[{r['preset']} {r['precision']}]", end="")
    if "segmenter_s" in r:
        ms = {k: v * 1e3 for k, v in r.items() if k.endswith("_s")}
        print(f" input {r['input'][1]}x{r['input'][0]}: backbone {ms['backbone_s']:.1f} ms, "
              f"pixel decoder {ms['pixel_decoder_s']:.1f} ms, decoder {ms['decoder_s']:.1f} ms "
              f"-> segmenter {ms['segmenter_s']:.1f} ms (preprocess {ms['preprocess_s']:.1f} ms)")
        for live in (8, 64):
            t = r[f"tracks{live}"]
            print(f"  {live:>2} tracks: tracker {t['tracker_s'] * 1e3:.2f} ms = "
                  f"{100 * t['share_of_segmenter']:.1f}% of the segmenter  (SIM "
                  f"{t['sim_s'] * 1e3:.2f}, referring {t['referring_s'] * 1e3:.2f}, RCP "
                  f"{t['rcp_s'] * 1e3:.2f}, association/correction/update "
                  f"{t['assoc_update_s'] * 1e3:.2f} ms); at 30 fps "
                  f"{t['tracker_30fps_s'] * 1e3:.2f} ms = "
                  f"{100 * t['share_of_segmenter_30fps']:.1f}%")
        masks = "; ".join(f"{n.removeprefix('tracks')} tracks: plain {t['plain_s'] * 1e3:.2f} "
                          f"ms, guided {t['guided_s'] * 1e3:.2f} ms, 2 passes "
                          f"{t['guided_2pass_s'] * 1e3:.2f} ms (+"
                          f"{100 * t['extra_share_of_segmenter']:.1f}% of the segmenter)"
                          for n, t in r["masks"].items())
        print(f"  published masks at {r['frame'][1]}x{r['frame'][0]}: {masks}")
        nms = ", ".join(f"{m} {t * 1e3:.2f} ms = {100 * t / r['segmenter_s']:.2f}%"
                        for m, t in r["nms_all_queries"].items())
        print(f"  candidate NMS, all {r['queries']} queries candidates: {nms} of the segmenter")
        sizes = ", ".join(f"{m}: {b / 1024:.0f} KiB" for m, b in
                          r["state_bytes_by_max_tracks"].items())
        frames = ", ".join(f"{f}: {b}" for f, b in r["state_bytes_by_frames"].items())
        print(f"  state bytes by max_tracks {{{sizes}}}; by frames processed {{{frames}}}")
    else:
        print()
    for mode, st in r.get("step", {}).items():
        print(f"  step ({mode}): median {st['median_s'] * 1e3:.2f} ms, p99 "
              f"{st['p99_s'] * 1e3:.2f} ms ({1 / st['median_s']:.0f} fps) over "
              f"{st['frames']} frames", flush=True)
        if "capture" in st:
            print("    " + st["capture"].replace("\n", "\n    "), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--presets", nargs="+", default=["tiny", "lite0", "r50"])
    parser.add_argument("--precision", nargs="+", default=["float32"],
                        choices=["float32", "float16", "bfloat16"],
                        help="one or more; each preset is built once and timed in each")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--min-size", type=int, default=0,
                        help="time with an imported model's resize rule: shorter side N, "
                             "longer <= 1333 (default 0: spvis's 640 px rule)")
    parser.add_argument("--step-frames", type=int, default=0,
                        help="also time the whole step on this many frames of --size "
                             "(median, p90, p99, after 2 warm-up frames)")
    parser.add_argument("--capture", nargs="*", default=[], choices=["graphs", "compile"],
                        help="with --step-frames: also time the step with the segmenter "
                             "captured so (spvis_model.graphs)")
    parser.add_argument("--step-only", action="store_true",
                        help="with --step-frames: only the whole step (no stage, tracker or "
                             "state measurements)")
    parser.add_argument("--stream-frames", type=int, default=0,
                        help="frames for the state-size-against-stream-length check (default "
                             "1000 on CUDA / for tiny, else 100)")
    parser.add_argument("--size", default=None, help="frame WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--json", default=None, help="also write the results here (rewritten "
                        "after every preset, so a run stopped early keeps what it measured)")
    args = parser.parse_args()
    if args.size:
        global W, H
        W, H = (int(v) for v in args.size.split("x"))
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/model.py: --device cuda asked for, but torch sees no CUDA device")
    if args.step_only and not args.step_frames:
        sys.exit("bench/model.py: --step-only needs --step-frames N")
    repeats = args.repeats or (5 if args.device == "cpu" else 30)
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"SPVIS per-frame cost at {W}x{H} on {where}, torch {torch.__version__}, "
          f"{' '.join(args.precision)}; median of {repeats}", flush=True)
    results: list[dict] = []
    for name in args.presets:
        for r in bench_preset(name, args.device, repeats, tuple(args.precision), args.min_size,
                              args.step_frames, args.stream_frames, tuple(args.capture),
                              args.step_only):
            results.append(r)
            report(r)
        if args.json:  # after every preset: a later one may run out of time
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
