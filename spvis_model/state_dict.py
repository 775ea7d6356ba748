"""Strict state-dict matching: every key both ways and every shape, with a readable error."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass
class StateDictMismatch:
    """What differs between the state dict a module expects and the one it was given.

    Attributes:
        missing: keys the module has that the given state dict lacks.
        unexpected: keys the given state dict has that the module lacks (not ignored).
        shape_mismatches: ``(key, expected shape, got shape)`` for keys in both.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shape_mismatches)

    def describe(self) -> str:
        """One line per problem, grouped: missing, unexpected, shape mismatches."""
        lines: list[str] = []
        if self.missing:
            lines.append(f"missing keys ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(
                f"unexpected keys ({len(self.unexpected)}): {', '.join(self.unexpected)}"
            )
        if self.shape_mismatches:
            lines.append(f"shape mismatches ({len(self.shape_mismatches)}):")
            lines.extend(
                f"  {key}: expected {list(exp)}, got {list(got)}"
                for key, exp, got in self.shape_mismatches
            )
        return "\n".join(lines)


class StateDictMismatchError(ValueError):
    """A checkpoint does not match the module: see ``mismatch`` for the details."""

    def __init__(self, source: str, mismatch: StateDictMismatch) -> None:
        self.source = source
        self.mismatch = mismatch
        super().__init__(f"state dict from {source} does not match the model:\n"
                         f"{mismatch.describe()}")


def compare_state_dicts(
    expected: Mapping[str, Tensor],
    given: Mapping[str, Tensor],
    *,
    ignore: Collection[str] = (),
) -> StateDictMismatch:
    """Compare key sets both ways and shapes of shared keys.

    Args:
        expected: the module's own ``state_dict()``.
        given: the checkpoint's tensors.
        ignore: keys of ``given`` that may be present without a counterpart in ``expected``
            (named exactly; there is no pattern matching).

    Returns:
        The differences; falsy when there are none.
    """
    result = StateDictMismatch()
    ignored = set(ignore)
    result.missing = [k for k in expected if k not in given]
    result.unexpected = [k for k in given if k not in expected and k not in ignored]
    for key, ref in expected.items():
        if key in given:
            got = given[key]
            got_shape = tuple(got.shape) if isinstance(got, Tensor) else ()
            if not isinstance(got, Tensor) or got_shape != tuple(ref.shape):
                result.shape_mismatches.append((key, tuple(ref.shape), got_shape))
    return result


def load_state_dict_exact(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    source: str,
    ignore: Collection[str] = (),
) -> list[str]:
    """Load ``state_dict`` into ``module`` after checking every key both ways and every shape.

    Args:
        module: the module to fill.
        state_dict: tensors by key; every key of ``module.state_dict()`` must be present with
            the same shape, and every other key must be named in ``ignore``.
        source: where the tensors came from (a path), for the error message.
        ignore: keys that may be present in ``state_dict`` and are skipped.

    Returns:
        The keys of ``state_dict`` that were skipped because they are in ``ignore``.

    Raises:
        StateDictMismatchError: listing missing keys, unexpected keys and shape mismatches
            (key, expected shape, got shape).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state dict from {source} must be a mapping of str to Tensor, "
            f"got {type(state_dict).__name__}"
        )
    mismatch = compare_state_dicts(module.state_dict(), state_dict, ignore=ignore)
    if mismatch:
        raise StateDictMismatchError(source, mismatch)
    ignored = set(ignore)
    skipped = [k for k in state_dict if k in ignored]
    to_load = {k: v for k, v in state_dict.items() if k not in ignored}
    # strict=True: the check above already proved both key sets equal.
    module.load_state_dict(to_load, strict=True)
    return skipped
