"""Choose a training run's checkpoint on validation sets, and export it as a model file.

    python bench/select_checkpoint.py --run runs/stage2 --sets val_heldout,val_lowfps \\
        [--baseline spvis_model/weights/spvis_lite0.pt] [--export best.pt]

Every kept checkpoint of the run (ckpt/step_*.pt) and the run's init model (the untrained
tracker, when --baseline is given) are scored with their own tracker configuration on the
cached segmenter outputs of the sets (bench/eval_sets.py); the score is the mean AP over the
sets, ties broken by mean HOTA. Only `val` sets are accepted: nothing is chosen on a test set.
With --export the winner is written as an spvis checkpoint (float16 storage).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_sets import ensure_cache, ensure_dataset, load_sets

from spvis_model.ablation import run_variants
from spvis_model.config import ModelConfig
from spvis_model.model import SPVIS
from spvis_model.state_dict import load_state_dict_exact
from spvis_model.training.trainer import load_training_checkpoint


def model_from_training_checkpoint(path: Path) -> SPVIS:
    payload = load_training_checkpoint(path)
    model = SPVIS(ModelConfig.from_dict(payload["model_config"]), pretrained_backbone=False)
    load_state_dict_exact(model, payload["model"], source=str(path))
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--sets", default="val_heldout,val_lowfps")
    ap.add_argument("--baseline", type=Path, help="also score this model file (e.g. the init)")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache-root", type=Path, default=Path("cache"))
    ap.add_argument("--export", type=Path, help="write the winner here (spvis checkpoint)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sets = load_sets()
    names = args.sets.split(",")
    bad = [n for n in names if n not in sets or sets[n].role != "val"]
    if bad:
        print(f"--sets {bad}: only validation sets (role: val) may choose a checkpoint",
              file=sys.stderr)
        return 2
    candidates: dict[str, SPVIS] = {}
    if args.baseline is not None:
        candidates[f"baseline {args.baseline.name}"] = SPVIS.from_checkpoint(args.baseline)
    for ckpt in sorted((args.run / "ckpt").glob("step_*.pt")):
        candidates[ckpt.stem] = model_from_training_checkpoint(ckpt)
    scores: dict[str, tuple[float, float]] = {}
    for name, model in candidates.items():
        aps, hotas, cells = [], [], []
        for s in names:
            cache = ensure_cache(model, sets[s], args.data_root, args.cache_root)
            m = run_variants(model, cache, ensure_dataset(sets[s], args.data_root),
                             {name: {}}, progress=False)[name]
            aps.append(m["AP"])
            hotas.append(m["HOTA"])
            cells.append(f"{s}: AP {m['AP']:.3f} HOTA {m['HOTA']:.3f} IDSW {int(m['IDSW'])}")
        scores[name] = (sum(aps) / len(aps), sum(hotas) / len(hotas))
        print(f"{name}: mean AP {scores[name][0]:.4f} HOTA {scores[name][1]:.4f} | "
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
