"""Which source keys go where: every key of a source checkpoint is mapped onto the spvis
segmenter or deliberately dropped (with the reason); any other key is an error naming it.

The three sources share Mask2Former's module names (detectron2 meta-architectures with
``backbone``, ``sem_seg_head.pixel_decoder``, ``sem_seg_head.predictor``, ``criterion``);
MinVIS adds nothing, DVIS / DVIS++ add their own tracker and refiner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import ImportCheckpointError

SOURCES: tuple[str, ...] = ("mask2former", "minvis", "dvis")


@dataclass(frozen=True)
class KeyRule:
    """A key prefix of a source checkpoint and what happens to its tensors.

    Attributes:
        prefix: source key prefix (or a whole key).
        target: the spvis prefix it maps to, or None when dropped.
        reason: why it is dropped (shown in the import report), or what it is.
        sources: the ``--from`` values whose checkpoints have it.
    """

    prefix: str
    target: str | None
    reason: str
    sources: tuple[str, ...] = SOURCES


#: Most specific first: the first matching rule decides.
RULES: tuple[KeyRule, ...] = (
    KeyRule("sem_seg_head.predictor.reid_embed.", None,
            "DVIS++ contrastive re-identification head (its tracker's input; the spvis tracker "
            "associates with its own embeddings)", ("dvis",)),
    KeyRule("backbone.", "segmenter.backbone.", "backbone"),
    KeyRule("sem_seg_head.pixel_decoder.", "segmenter.sem_seg_head.pixel_decoder.",
            "pixel decoder"),
    KeyRule("sem_seg_head.predictor.", "segmenter.sem_seg_head.predictor.",
            "masked-attention transformer decoder"),
    KeyRule("criterion.", None, "training loss buffers (criterion.empty_weight)"),
    KeyRule("tracker.", None,
            "DVIS referring tracker (spvis uses its own tracker, at its untrained safe "
            "initialisation)", ("dvis",)),
    KeyRule("refiner.", None,
            "DVIS offline temporal refiner (needs the whole video; spvis runs online)",
            ("dvis",)),
    KeyRule("pixel_mean", None, "input mean (read into the input config)"),
    KeyRule("pixel_std", None, "input std (read into the input config)"),
)


@dataclass
class KeyMapping:
    """The outcome of applying :data:`RULES` to a source state dict.

    Attributes:
        mapped: spvis key -> tensor (keys start with ``segmenter.``).
        source_of: spvis key -> the source key it came from.
        dropped: reason -> source keys dropped for it.
        extra: whole-key rules whose tensors are read elsewhere (``pixel_mean``...).
    """

    mapped: dict[str, torch.Tensor] = field(default_factory=dict)
    source_of: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def map_keys(tensors: dict[str, torch.Tensor], source: str, *, where: str) -> KeyMapping:
    """Apply the rules to every key.

    Args:
        tensors: source key -> tensor.
        source: the ``--from`` value.
        where: the file name, for errors.

    Raises:
        ImportCheckpointError: a key no rule covers, or a key of another source (e.g. a DVIS
            tracker key with ``--from minvis``), naming the key.
    """
    if source not in SOURCES:
        raise ImportCheckpointError(f"--from {source!r}: must be one of {', '.join(SOURCES)}")
    out = KeyMapping()
    unknown: list[str] = []
    for key, value in tensors.items():
        rule = next((r for r in RULES if key == r.prefix or (r.prefix.endswith(".")
                                                             and key.startswith(r.prefix))),
                    None)
        if rule is None:
            unknown.append(key)
            continue
        if source not in rule.sources:
            raise ImportCheckpointError(
                f"{where}: key {key!r} is a {rule.reason.split(' (')[0]} key, which "
                f"{'/'.join(rule.sources)} checkpoints have and {source} ones do not: is "
                f"this a {'/'.join(rule.sources)} checkpoint? (--from "
                f"{rule.sources[0]})")
        if key in ("pixel_mean", "pixel_std"):
            out.extra[key] = value
            out.dropped.setdefault(rule.reason, []).append(key)
        elif rule.target is None:
            out.dropped.setdefault(rule.reason, []).append(key)
        else:
            target = rule.target + key[len(rule.prefix):]
            out.mapped[target] = value
            out.source_of[target] = key
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise ImportCheckpointError(
            f"{where}: {len(unknown)} key(s) that no {source} layout rule maps or drops: "
            f"{shown}{more}. Known prefixes: {', '.join(r.prefix for r in RULES)}")
    return out
