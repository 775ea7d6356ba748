"""Benchmark: per-frame cost of each SPVIS stage, and the tracker's share of it.

For each preset at 640×480 it times, per frame (batch 1, median of the repeats):
- the segmenter's stages: backbone, pixel decoder, transformer decoder (and their sum);
- the whole tracker step (SIM + PGT + RCP + heads + life cycle) with 8 and with 64 live
  tracks, and inside it SIM, the referring decoder (PGT b) and RCP timed on their own; the
  rest, "PGT a/c + update", is association, error correction, the mask/class heads and the
  state update;
- the tracker's cost as a share of the segmenter's (the design goal: SIM + PGT + RCP ≤ 10% of
  the segmenter at 64 tracks on CUDA);
- the TrackerState's bytes against max_tracks, and after 1, 100 and 1000 frames (constant).

Weights are random (timing does not depend on them). Live tracks are planted in the state.
The presets r50, r101, swin-t, swin-s, swin-b and swin-l are the architectures `spvis import`
makes from published Mask2Former / MinVIS / DVIS checkpoints (100 queries, 200 for swin-l).
They run at 640×480 with spvis's 640 px rule; `--min-size N` times them with an imported
model's own test-time rule instead (shorter side N, longer side at most 1333: 800 for COCO
models, 360 / 480 for the video ones), where a 640×480 frame is resized first.

    python bench/model.py --device cpu
    python bench/model.py --device cuda --presets tiny lite0 r50
    python bench/model.py --device cpu --presets r50 r101 swin-t swin-l
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

from spvis_model.config import preset
from spvis_model.model import SPVIS, make_tracker
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


@torch.inference_mode()
def bench_preset(name: str, device: str, repeats: int, precision: str,
                 min_size: int = 0) -> dict:
    torch.manual_seed(0)  # random weights; seeded so runs compare (see docs/benchmarks.md)
    cfg = preset(name)
    if min_size:
        cfg.input.min_size, cfg.input.max_size = min_size, 1333
    cfg.tracker.max_tracks = max(cfg.tracker.max_tracks, 64)
    model = SPVIS(cfg, pretrained_backbone=False).to(device).eval()
    if precision != "float32":
        model.set_precision(precision)
    time_it = timer(device, repeats)
    frame = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    images, geom = model.preprocess(frame)
    seg = model.segmenter
    out: dict = {"preset": name, "device": device, "precision": precision,
                 "input": list(geom.padded)}

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
    c = cfg.segmenter.hidden_dim
    for live in (8, 64):
        state = planted_state(model, live)
        idx = torch.arange(live, device=model.device)
        total = time_it(lambda state=state: model.track(state, feats, 0.5))
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
        }

    sizes = {}
    for m in (8, 16, 32, 64, 128):
        c2 = preset(name)
        c2.tracker.max_tracks = m
        # The state depends on the tracker config only: no need to build the segmenter again.
        sizes[m] = make_tracker(c2).init_state(torch.device(device)).nbytes()
    out["state_bytes_by_max_tracks"] = sizes
    # State size against stream length (the state does not depend on the input size, so these
    # frames are processed small to keep the bench short).
    model.cfg.input.max_size, model.cfg.input.min_size = 64, 0
    state = model.init_state()
    small = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    by_frames = {}
    checkpoints = (1, 100, 1000) if name == "tiny" or device == "cuda" else (1, 10, 100)
    for i in range(1, checkpoints[-1] + 1):
        state, _ = model.step(state, small, i * 0.1)
        if i in checkpoints:
            by_frames[i] = state.nbytes()
    out["state_bytes_by_frames"] = by_frames
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--presets", nargs="+", default=["tiny", "lite0", "r50"])
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--min-size", type=int, default=0,
                        help="time with an imported model's resize rule: shorter side N, "
                             "longer <= 1333 (default 0: spvis's 640 px rule)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/model.py: --device cuda asked for, but torch sees no CUDA device")
    repeats = args.repeats or (5 if args.device == "cpu" else 30)
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"SPVIS per-frame cost at {W}x{H} on {where}, torch {torch.__version__}, "
          f"{args.precision}; median of {repeats}")
    results = []
    for name in args.presets:
        r = bench_preset(name, args.device, repeats, args.precision, args.min_size)
        results.append(r)
        ms = {k: v * 1e3 for k, v in r.items() if k.endswith("_s")}
        print(f"\n[{name}] input {r['input'][1]}x{r['input'][0]}: "
              f"backbone {ms['backbone_s']:.1f} ms, "
              f"pixel decoder {ms['pixel_decoder_s']:.1f} ms, decoder {ms['decoder_s']:.1f} ms "
              f"-> segmenter {ms['segmenter_s']:.1f} ms (preprocess {ms['preprocess_s']:.1f} ms)")
        for live in (8, 64):
            t = r[f"tracks{live}"]
            print(f"  {live:>2} tracks: tracker {t['tracker_s'] * 1e3:.2f} ms = "
                  f"{100 * t['share_of_segmenter']:.1f}% of the segmenter  (SIM "
                  f"{t['sim_s'] * 1e3:.2f}, referring {t['referring_s'] * 1e3:.2f}, RCP "
                  f"{t['rcp_s'] * 1e3:.2f}, association/correction/update "
                  f"{t['assoc_update_s'] * 1e3:.2f} ms)")
        sizes = ", ".join(f"{m}: {b / 1024:.0f} KiB" for m, b in
                          r["state_bytes_by_max_tracks"].items())
        frames = ", ".join(f"{f}: {b}" for f, b in r["state_bytes_by_frames"].items())
        print(f"  state bytes by max_tracks {{{sizes}}}; by frames processed {{{frames}}}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
