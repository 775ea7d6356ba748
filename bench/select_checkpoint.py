"""Choose a training run's checkpoint on validation sets, and export it as a model file.

    python bench/select_checkpoint.py --run runs/stage2 --sets val_heldout,val_lowfps \\
        [--baseline spvis_model/weights/spvis_lite0.pt] [--export best.pt]
    python bench/select_checkpoint.py --run runs/stage1 --sets val_heldout --fp-sets val_real \\
        --model-config configs/model_lite0_synthetic.yaml      # a stage-1 (segmenter) run

Every kept checkpoint of the run (ckpt/step_*.pt; or, for the folder that scripts/gpu_train.sh
brings back, its float16 model files model_step_*.pt) and the run's init model (the untrained
tracker, when --baseline is given) are scored with their own tracker configuration on the
cached segmenter outputs of the sets (bench/eval_sets.py); the score is the mean AP over the
sets, ties broken by mean HOTA. With --fp-sets (object-free footage) every candidate's
published instances per frame are counted too, and a candidate whose worst video exceeds
--max-fp ranks below every one that does not. --model-config builds each candidate from that
config and loads its weights (a stage-1 run's checkpoints carry their init's tracker settings;
this evaluates them under the tracker configuration that will ship; a config without
`tracker.score_calibration` scores them on raw scores, and the tool says so). Only `val` sets are
accepted: nothing is chosen on a test set. With --export the winner is written as an spvis
checkpoint (float16 storage).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_sets import ensure_cache, ensure_dataset, load_sets

from spvis_model.ablation import make_variant, published_per_frame, run_variants
from spvis_model.config import ModelConfig, load_config
from spvis_model.model import SPVIS
from spvis_model.state_dict import load_state_dict_exact
from spvis_model.training.checkpoints import load_training_checkpoint


def model_from_training_checkpoint(path: Path, config: ModelConfig | None = None) -> SPVIS:
    """The model of a training checkpoint; with `config`, its weights in a model built from
    that config instead of the checkpoint's own."""
    return model_from_training_payload(load_training_checkpoint(path), config, str(path))


def model_from_training_payload(payload: dict, config: ModelConfig | None = None,
                                source: str = "training checkpoint") -> SPVIS:
    """`model_from_training_checkpoint` for a payload already read."""
    cfg = config if config is not None else ModelConfig.from_dict(payload["model_config"])
    model = SPVIS(cfg, pretrained_backbone=False)
    load_state_dict_exact(model, payload["model"], source=source)
    return model.eval()


def model_file(path: Path, config: ModelConfig | None = None) -> SPVIS:
    """An spvis model file (e.g. the baseline, or scripts/gpu_train.sh's model_step_*.pt);
    with `config`, its weights in a model built from that config."""
    model = SPVIS.from_checkpoint(path)
    if config is not None:
        weights = model.state_dict()
        model = SPVIS(config, pretrained_backbone=False)
        load_state_dict_exact(model, weights, source=str(path))
    return model.eval()


def false_positives(model: SPVIS, name: str, sets: list, data_root: Path, cache_root: Path
                    ) -> tuple[float, float]:
    """(mean, worst video's mean) instances published per frame on object-free sets."""
    per_video: list[float] = []
    for s in sets:
        cache = ensure_cache(model, s, data_root, cache_root)
        counts = published_per_frame(model, cache, [make_variant(model, name, {})],
                                     progress=False)[name]
        per_video += [sum(c) / max(len(c), 1) for c in counts.values()]
    return sum(per_video) / max(len(per_video), 1), max(per_video, default=0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--sets", default="val_heldout,val_lowfps")
    ap.add_argument("--baseline", type=Path, help="also score this model file (e.g. the init)")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache-root", type=Path, default=Path("cache"))
    ap.add_argument("--export", type=Path, help="write the winner here (spvis checkpoint)")
    ap.add_argument("--fp-sets", default="", help="object-free val sets: published per frame")
    ap.add_argument("--max-fp", type=float, default=0.05,
                    help="worst video's published instances per frame allowed on --fp-sets")
    ap.add_argument("--model-config", type=Path,
                    help="build every candidate from this model config (stage-1 runs)")
    ap.add_argument("--only", default="", help="comma-separated checkpoint stems to score")
    ap.add_argument("--save-results", type=Path,
                    help="write each candidate's results lists here (DIR/<candidate>/<set>.json, "
                         "spaces as _) "
                         "for bench/compare_results.py")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sets = load_sets()
    names = args.sets.split(",")
    fp_names = [n for n in args.fp_sets.split(",") if n]
    bad = [n for n in names + fp_names if n not in sets or sets[n].role != "val"]
    if bad:
        print(f"--sets {bad}: only validation sets (role: val) may choose a checkpoint",
              file=sys.stderr)
        return 2
    candidates: dict[str, SPVIS] = {}
    config = load_config(args.model_config) if args.model_config else None
    if config is not None and list(config.tracker.score_calibration) == [1.0, 0.0]:
        print(f"note: --model-config {args.model_config} has no score calibration "
              "(tracker.score_calibration = [1, 0]): every candidate, --baseline included, is "
              "scored on raw scores, which publish more than calibrated ones. To score them as "
              "they would ship, pass the shipped model's config (bench/gpu_train.py "
              "model-config --init MODEL --out CONFIG).", file=sys.stderr)
    if args.baseline is not None:
        candidates[f"baseline {args.baseline.name}"] = model_file(args.baseline, config)
    only = {n for n in args.only.split(",") if n}
    ckpts = sorted((args.run / "ckpt").glob("step_*.pt"))
    files = sorted(args.run.glob("model_step_*.pt"))
    if not ckpts and not files:
        print(f"--run {args.run}: no ckpt/step_*.pt (a training run) and no model_step_*.pt "
              "(scripts/gpu_train.sh's output)", file=sys.stderr)
        return 2
    for ckpt in ckpts:
        if not only or ckpt.stem in only:
            candidates[ckpt.stem] = model_from_training_checkpoint(ckpt, config)
    for path in files:
        stem = path.stem.removeprefix("model_")
        if not only or stem in only:
            candidates[stem] = model_file(path, config)
    if not candidates:
        stems = [c.stem for c in ckpts] + [p.stem.removeprefix("model_") for p in files]
        print(f"--only {args.only!r}: none of {args.run}'s checkpoints ({', '.join(stems)})",
              file=sys.stderr)
        return 2
    scores: dict[str, tuple[bool, float, float]] = {}
    for name, model in candidates.items():
        aps, hotas, cells = [], [], []
        for s in names:
            cache = ensure_cache(model, sets[s], args.data_root, args.cache_root)
            m = run_variants(model, cache, ensure_dataset(sets[s], args.data_root),
                             {name: {}}, progress=False, save_dir=args.save_results,
                             save_name=f"{s}.json")[name]
            aps.append(m["AP"])
            hotas.append(m["HOTA"])
            cells.append(f"{s}: AP {m['AP']:.3f} HOTA {m['HOTA']:.3f} IDSW {int(m['IDSW'])}")
        within = True
        if fp_names:
            mean_fp, worst_fp = false_positives(model, name, [sets[n] for n in fp_names],
                                                args.data_root, args.cache_root)
            within = worst_fp <= args.max_fp
            cells.append(f"FP/frame mean {mean_fp:.3f} worst video {worst_fp:.3f}")
        scores[name] = (within, sum(aps) / len(aps), sum(hotas) / len(hotas))
        print(f"{name}: mean AP {scores[name][1]:.4f} HOTA {scores[name][2]:.4f} | "
              + " | ".join(cells), flush=True)
    best = max(scores, key=lambda k: scores[k])
    print(f"best: {best}")
    if args.export is not None:
        candidates[best].save(args.export, half=True,
                              meta={"selected_from": str(args.run), "checkpoint": best,
                                    "selection_sets": names})
        print(f"wrote {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
