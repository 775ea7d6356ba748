"""``import_checkpoint``: a published Mask2Former / MinVIS / DVIS checkpoint -> an spvis one.

    from spvis_model.importers import import_checkpoint
    result = import_checkpoint("model_final_3c8ec9.pkl", source="mask2former", backbone="r50",
                               classes="coco", out="m2f_r50_coco.pt")

Steps: read the file safely (restricted unpickler / ``weights_only``), refuse clip-level video
models, map every key or drop it with a reason (else an error naming it), read the
architecture from the shapes, build the spvis model (the tracker at its untrained, seeded safe
initialisation), load the segmenter strictly (every key both ways, every shape), and write one
spvis checkpoint with ``model.save(meta=...)`` recording where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spvis_model.checkpoint import non_finite_tensors
from spvis_model.config import SIZED_BACKBONES, ConfigError, InputConfig, ModelConfig, preset
from spvis_model.state_dict import StateDictMismatchError, load_state_dict_exact

from .architecture import PUBLISHED_NHEADS, infer_architecture
from .classes import load_class_list
from .errors import ImportCheckpointError
from .layout import SOURCES, map_keys
from .safe_load import read_source_file
from .zoo import default_input, refuse_clip_level

IMPORT_FORMAT_VERSION = 1
#: Seed of the tracker's random (but safe: residual branches zero) initialisation.
TRACKER_SEED = 0


@dataclass
class ImportResult:
    """What an import did.

    Attributes:
        out: the written checkpoint.
        config: the model's configuration.
        loaded: number of segmenter tensors loaded (every key of the spvis segmenter).
        dropped: reason -> number of source keys dropped for it (top-level entries included).
        architecture: "option = value (from key, shape)" lines.
        meta: the provenance stored in the checkpoint.
    """

    out: Path
    config: ModelConfig
    loaded: int
    dropped: dict[str, int]
    architecture: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def report(self) -> str:
        """A human-readable summary (what `spvis import` prints)."""
        cfg, inp = self.config, self.config.input
        lines = [
            f"imported {self.meta['source_file']} (sha256 {self.meta['source_sha256'][:16]}...) "
            f"as {cfg.name}: {cfg.num_classes} classes ({self.meta['classes']}), "
            f"{cfg.segmenter.num_queries} queries",
            f"  loaded {self.loaded} segmenter tensors; dropped:",
            *[f"    {n:5d}  {reason}" for reason, n in self.dropped.items()],
            "  architecture (from the tensors' shapes):",
            *[f"    {line}" for line in self.architecture],
            f"  preprocessing: {inp.channel_order.upper()}, mean {inp.pixel_mean}, std "
            f"{inp.pixel_std}, shorter side {inp.min_size} (longer <= {inp.max_size}), "
            "padded to 32",
            "  tracker: spvis SIM/PGT/RCP at its untrained safe initialisation",
            f"  wrote {self.out}",
        ]
        return "\n".join(lines)


def import_checkpoint(source_file: str | Path, *, source: str, backbone: str,
                      classes: str | Path, out: str | Path, nheads: int = PUBLISHED_NHEADS,
                      min_size: int | None = None, max_size: int | None = None,
                      half: bool = False) -> ImportResult:
    """Convert a published checkpoint into an spvis checkpoint.

    Args:
        source_file: the model-zoo file (``.pkl``: detectron2 numpy pickle; else torch file).
        source: ``"mask2former"`` (COCO instance segmentation), ``"minvis"`` or ``"dvis"``
            (DVIS and DVIS++; their tracker / refiner / re-ID head are dropped).
        backbone: ``r50``, ``r101``, ``swin-t``, ``swin-s``, ``swin-b`` or ``swin-l``; checked
            against the file (blocks per stage, Swin window).
        classes: ``coco``, ``ytvis2019``, ``ytvis2021``, ``ovis`` or a class-list file; its
            length must equal the class head's.
        out: the spvis checkpoint to write.
        nheads: attention heads of decoder and encoder (not in the shapes; published: 8).
        min_size, max_size: override the source's test-time resize (shorter side, longer
            side cap); default: what the source model was evaluated with (see ``zoo``).
        half: store floating-point weights as float16.

    Returns:
        ImportResult (``report()`` prints it).

    Raises:
        ImportCheckpointError: unknown option, unsafe or unreadable file, clip-level model,
            unknown key, architecture or shape mismatch, class-count mismatch, NaN/inf
            weights, an `out` that is a folder or whose folder does not exist, or a failed
            write (no temp file is left behind).
        UnsafeFileError: the file asks for a global other than arrays / plain containers.
    """
    if source not in SOURCES:
        raise ImportCheckpointError(f"--from {source!r}: must be one of {', '.join(SOURCES)}")
    if backbone not in SIZED_BACKBONES:
        raise ImportCheckpointError(f"--backbone {backbone!r}: must be one of "
                                    f"{', '.join(SIZED_BACKBONES)}")
    if isinstance(nheads, bool) or not isinstance(nheads, int) or nheads < 1:
        raise ImportCheckpointError(f"--nheads {nheads!r}: must be an integer >= 1 (published "
                                    f"models use {PUBLISHED_NHEADS})")
    out = Path(out)
    check_output_path(out)
    class_list = load_class_list(classes)
    src = read_source_file(source_file)
    where = src.path.name
    head = src.tensors.get("sem_seg_head.predictor.class_embed.weight")
    refuse_clip_level(src.path, source, int(head.shape[0]) - 1 if head is not None else -1)
    mapping = map_keys(src.tensors, source, where=where)
    _refuse_non_finite(mapping.mapped, mapping.source_of, mapping.extra, where)
    arch = infer_architecture(src.tensors, backbone, where=where, nheads=nheads)
    if arch.num_classes != len(class_list.names):
        raise ImportCheckpointError(
            f"{where}: the class head has {arch.num_classes} classes (+1 no-object; "
            f"sem_seg_head.predictor.class_embed.weight), --classes {class_list.key} has "
            f"{len(class_list.names)}")

    dvis_plus = any(k.startswith("sem_seg_head.predictor.reid_embed.") for k in src.tensors)
    inp = default_input(source, backbone, str(classes), dvis_plus=dvis_plus)
    _read_stored_normalisation(inp, mapping.extra, where)
    if min_size is not None:
        inp.min_size = min_size
    if max_size is not None:
        inp.max_size = max_size

    cfg = preset(backbone)
    cfg.name = f"{source}-{backbone}"
    cfg.class_names = list(class_list.names)
    cfg.input = inp
    cfg.backbone = arch.backbone
    cfg.pixel_decoder = arch.pixel_decoder
    cfg.segmenter = arch.segmenter
    try:
        cfg.validate()
    except ConfigError as exc:
        raise ImportCheckpointError(f"{where}: the imported configuration is invalid: {exc}") \
            from exc

    from spvis_model.model import SPVIS

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TRACKER_SEED)
        model = SPVIS(cfg, pretrained_backbone=False)
    _load_segmenter(model, mapping.mapped, mapping.source_of, where)

    dropped = {reason: len(keys) for reason, keys in mapping.dropped.items()}
    for key in src.top_level_dropped:
        dropped[f"top-level entry {key!r} (not the model)"] = 1
    meta = {
        "kind": "imported",
        "import_format_version": IMPORT_FORMAT_VERSION,
        "source_file": src.path.name,
        "source_sha256": src.sha256,
        "source_format": src.format,
        "from": source,
        "backbone": backbone,
        "classes": str(classes),
        "class_ids": list(class_list.ids),
        "class_list": class_list.description,
        "dropped": dropped,
        "tracker": "untrained: safe initialisation (MinVIS-style association + mask IoU + "
                   "memory re-identification)",
    }
    try:
        model.save(out, half=half, meta=meta)
    except OSError as exc:  # the folder went away, the disk is full, ...
        raise ImportCheckpointError(f"--out {str(out)!r}: cannot write the checkpoint: "
                                    f"{exc.strerror or exc}") from exc
    return ImportResult(out=out, config=cfg, loaded=len(mapping.mapped), dropped=dropped,
                        architecture=arch.summary, meta=meta)


def check_output_path(out: Path) -> None:
    """Refuse an output checkpoint path that cannot be written, before any work: its folder
    must exist and it must not be a folder itself."""
    if out.is_dir():
        raise ImportCheckpointError(f"--out {str(out)!r} is a folder; give a file path, e.g. "
                                    f"{str(out / 'model.pt')!r}")
    if not out.parent.is_dir():
        raise ImportCheckpointError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not "
                                    "exist")


def _refuse_non_finite(mapped: dict[str, torch.Tensor], source_of: dict[str, str],
                       extra: dict[str, torch.Tensor], where: str) -> None:
    """Refuse NaN / inf in any tensor the import uses, naming the source key: written into a
    checkpoint, they would make a file that every other tool refuses."""
    used = {source_of[key]: value for key, value in mapped.items()}
    used.update(extra)
    bad = non_finite_tensors(used)
    if bad:
        key, count, total = bad[0]
        more = f" (and {len(bad) - 1} more keys)" if len(bad) > 1 else ""
        raise ImportCheckpointError(f"{where}: key {key!r} has {count} non-finite (NaN/inf) "
                                    f"values of {total}{more}; refusing weights that cannot "
                                    "produce detections")


def _read_stored_normalisation(inp: InputConfig, extra: dict[str, torch.Tensor],
                               where: str) -> None:
    """Old detectron2 files may carry ``pixel_mean`` / ``pixel_std``: use them."""
    for key in ("pixel_mean", "pixel_std"):
        if key in extra:
            values = extra[key].double().flatten().tolist()
            if len(values) != 3:
                raise ImportCheckpointError(f"{where}: key {key!r} has {len(values)} values, "
                                            "expected 3")
            setattr(inp, key, [float(v) for v in values])


def _load_segmenter(model: torch.nn.Module, mapped: dict[str, torch.Tensor],
                    source_of: dict[str, str], where: str) -> None:
    """Load every segmenter tensor (strict: every key both ways, every shape), in float32."""
    segmenter = model.segmenter
    own = segmenter.state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, value in mapped.items():
        sub = key[len("segmenter."):]
        ref = own.get(sub)
        tensor = value
        if ref is not None and ref.is_floating_point() == value.is_floating_point():
            tensor = value.to(ref.dtype)
        if (ref is not None and sub.endswith("relative_position_index")
                and tensor.shape == ref.shape and not torch.equal(tensor, ref)):
            raise ImportCheckpointError(
                f"{where}: key {source_of[key]!r} is not the standard Swin relative "
                "position index for its window")
        state[sub] = tensor
    try:
        load_state_dict_exact(segmenter, state, source=where)
    except StateDictMismatchError as exc:
        lines = [f"{where}: the tensors do not fit the spvis segmenter (keys below are "
                 "spvis names; the source's carry no 'segmenter.' prefix):",
                 exc.mismatch.describe()]
        raise ImportCheckpointError("\n".join(lines)) from exc
