"""COCO run-length encodings checked in bulk: many masks in a few numpy passes.

A results file holds one compressed RLE per prediction and frame (about 100 000 for a
YouTube-VIS-sized file) and the ground truth one uncompressed RLE per annotated frame. Checking
them one at a time costs more than the whole evaluation (numpy's per-call overhead, ~10 calls
per mask), so they are checked all together: the counts are concatenated, decoded and summed
with whole-array operations, and only when one is bad is it decoded again on its own
(`decode_compressed_counts`) to say what is wrong with it.

Run lengths are column-major and start with a run of zeros, as in pycocotools. A mask's area is
the sum of its odd-numbered runs (runs 1, 3, 5 ...).

Compressed counts (pycocotools' rleToString): 5 bits per character offset by 48; 0x20 on a
character means "more characters follow"; 0x10 on a run's last character means negative; from
the 4th run on, each value is stored as the difference to the run two before.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_TOKEN_CHARS = 7
"""7 x 5 bits covers any uint32 run length; longer runs are malformed."""

_CHUNK_ITEMS = 1 << 16  # masks per chunk: about this many characters or runs (fits in cache)


def decode_compressed_counts(counts: bytes) -> np.ndarray:
    """Decode one compressed counts string into run lengths, int64 (M,).

    pycocotools trusts these strings (a truncated one is read past its end), so they are
    checked here before any pycocotools call. Raises ValueError saying what is wrong. The bulk
    check (`check_compressed`) accepts exactly the strings this accepts and whose runs are
    non-negative and cover the image.
    """
    if not counts:
        raise ValueError("counts string is empty")
    chars = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    bad = np.flatnonzero((chars < 0) | (chars > 63))
    if bad.size:
        raise ValueError(f"counts string has a character outside '0'..'o': "
                         f"{counts[int(bad[0]):][:1]!r}")
    more = (chars & 0x20) != 0
    if more[-1]:
        raise ValueError("counts string ends inside a run (last character has the "
                         "continuation bit)")
    ends = np.flatnonzero(~more)
    token = np.concatenate(([0], np.cumsum(~more[:-1])))
    starts = np.concatenate(([0], ends[:-1] + 1))
    pos = np.arange(chars.size) - starts[token]
    if pos.max() >= MAX_TOKEN_CHARS:
        raise ValueError(f"counts string has a run longer than {MAX_TOKEN_CHARS} characters")
    values = np.zeros(ends.size, dtype=np.int64)
    np.add.at(values, token, (chars & 0x1F) << (5 * pos))
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (pos[ends][negative] + 1))
    runs = values.copy()
    runs[3::2] = np.cumsum(values[1::2])[1:]
    runs[4::2] = np.cumsum(values[2::2])[1:]
    return runs


def compressed_problem(counts: bytes, n_pixels: int) -> str:
    """What is wrong with one compressed counts string meant to cover `n_pixels` ("" if
    nothing)."""
    try:
        runs = decode_compressed_counts(counts)
    except ValueError as err:
        return str(err)
    if runs.min() < 0 or int(runs.sum()) != n_pixels:
        return (f"runs (min {int(runs.min())}) cover {int(runs.sum())} pixels, size says "
                f"{n_pixels}")
    return ""


@dataclass(frozen=True)
class BulkCheck:
    """Result of checking N masks: `areas` int64 (N,) (meaningless after the first bad one) and
    `first_bad`, the index of the first malformed mask, or -1."""

    areas: np.ndarray
    first_bad: int


class _Workspace:
    """Reused buffers for the chunked decoders: fresh multi-megabyte arrays cost a page fault
    per 4 KiB, which is most of the time of an operation this simple, so every chunk works in
    the same memory. Buffers grow to the largest chunk."""

    def __init__(self) -> None:
        self.size = 0
        self._grow(_CHUNK_ITEMS)

    def _grow(self, size: int) -> None:
        self.size = size
        self.u8 = np.empty(size, dtype=np.uint8)
        self.u8b = np.empty(size, dtype=np.uint8)
        self.flag = np.empty(size, dtype=bool)
        self.i64 = [np.empty(size, dtype=np.int64) for _ in range(4)]

    def fit(self, size: int) -> None:
        if size > self.size:
            self._grow(size)


def _restart_cumsum(x: np.ndarray, first: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cumulative sum of x (K,) restarting at each index in `first` (sorted, starts at 0),
    where x is 0; written into out (K,). x is modified (each first element)."""
    totals = np.add.reduceat(x, first)
    x[first[1:]] = -totals[:-1]  # the running sum drops back to 0 at each restart
    return np.cumsum(x, out=out)


def _check_compressed_chunk(counts: Sequence[bytes], n_pixels: np.ndarray,
                            ws: _Workspace | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(areas int64 (N,), bad bool (N,)) of N compressed strings, all decoded together.

    Tokens (one per run) end at characters without the continuation bit; every string's last
    character is made to end one, so a bad string spoils no other. A token of L characters is
    worth sext5(last) << 5 (L - 1) + (the lower characters' 5-bit groups), where sext5 reads
    the last character's 5 bits as a signed number. The delta coding (run k >= 3 is stored as
    run k minus run k - 2) is undone with two running sums restarted at each string: with w =
    the values with each string's first token zeroed, S = cumsum(w) and A = cumsum((-1)^g w)
    (g = token index in the chunk), run k >= 1 of a string is (S + (-1)^g A) / 2.
    """
    ws = ws or _Workspace()
    n = len(counts)
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=n)
    bad = lengths == 0
    ends = np.cumsum(lengths)  # one past each string's last character
    chars = np.frombuffer(b"".join(counts), dtype=np.uint8)
    m = chars.size
    if m == 0:
        return np.zeros(n, dtype=np.int64), bad
    ws.fit(m)
    code = np.subtract(chars, np.uint8(48), out=ws.u8[:m])  # wraps below '0'
    outside = np.greater(code, 63, out=ws.flag[:m])
    if outside.any():
        bad[np.searchsorted(ends, np.flatnonzero(outside), side="right")] = True
    nonempty = np.flatnonzero(lengths > 0)
    last = ends[nonempty] - 1
    ends_token = np.equal(np.bitwise_and(code, 0x20, out=ws.u8b[:m]), 0, out=ws.flag[:m])
    bad[nonempty[~ends_token[last]]] = True
    ends_token[last] = True
    tok_end = np.flatnonzero(ends_token)
    n_tok = tok_end.size
    top = np.take(code, tok_end, out=ws.u8b[:n_tok])
    np.bitwise_and(top, 0x1F, out=top)
    np.bitwise_xor(top, 0x10, out=top)
    values = ws.i64[1][:n_tok]
    np.copyto(values, top)
    values -= 16  # sext5 of each token's last character
    if n_tok < m:  # some tokens have several characters
        tok_len = np.diff(tok_end, prepend=-1)
        multi = np.flatnonzero(tok_len > 1)
        bad[np.searchsorted(ends, tok_end[multi[tok_len[multi] > MAX_TOKEN_CHARS]],
                            side="right")] = True
        length = np.minimum(tok_len[multi], MAX_TOKEN_CHARS)
        value = values[multi] << (5 * (length - 1))
        start = tok_end[multi] - tok_len[multi] + 1
        for j in range(int(length.max()) - 1):
            part = np.flatnonzero(length - 1 > j)
            value[part] += (code[start[part] + j] & 0x1F).astype(np.int64) << (5 * j)
        values[multi] = value
    first_token = np.searchsorted(tok_end, ends[nonempty] - lengths[nonempty])
    first_values = values[first_token]
    values[first_token] = 0
    alt = ws.i64[2][:n_tok]
    np.copyto(alt, values)
    alt[1::2] *= -1
    runs = _restart_cumsum(values, first_token, out=ws.i64[3][:n_tok])
    alt_sum = _restart_cumsum(alt, first_token, out=ws.i64[0][:n_tok])
    alt_sum[1::2] *= -1
    runs += alt_sum
    runs >>= 1
    runs[first_token] = first_values
    if runs.min() < 0:
        owner = np.searchsorted(first_token, np.flatnonzero(runs < 0), side="right") - 1
        bad[nonempty[owner]] = True
    sums = np.zeros(n, dtype=np.int64)
    sums[nonempty] = np.add.reduceat(runs, first_token)
    areas = np.zeros(n, dtype=np.int64)
    areas[nonempty] = (sums[nonempty] - _alternating_sums(runs, first_token)) // 2
    bad |= sums != n_pixels
    return areas, bad


def _chunks(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Split items of these sizes into consecutive [start, stop) runs of about _CHUNK_ITEMS."""
    out = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        total += size
        if total >= _CHUNK_ITEMS:
            out.append((start, i + 1))
            start, total = i + 1, 0
    if start < len(sizes) or not out:
        out.append((start, len(sizes)))
    return out


def check_compressed(counts: Sequence[bytes], n_pixels: np.ndarray | Sequence[int]
                     ) -> BulkCheck:
    """Decode and check N compressed counts strings; `n_pixels` (N,) is each mask's
    height x width. A string is malformed when `decode_compressed_counts` rejects it or its runs
    are negative or do not add up to n_pixels."""
    n_pixels = np.asarray(n_pixels, dtype=np.int64)
    areas = np.zeros(len(counts), dtype=np.int64)
    ws = _Workspace()
    for start, stop in _chunks([len(c) for c in counts]):
        chunk_areas, bad = _check_compressed_chunk(counts[start:stop], n_pixels[start:stop], ws)
        if bad.any():
            return BulkCheck(areas, start + int(np.argmax(bad)))
        areas[start:stop] = chunk_areas
    return BulkCheck(areas, -1)


def uncompressed_problem(counts: object, n_pixels: int) -> str:
    """What is wrong with one uncompressed counts list meant to cover `n_pixels` ("" if
    nothing)."""
    if not isinstance(counts, list) or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
        return "uncompressed RLE counts must be integers"
    if counts and min(counts) < 0:
        return f"uncompressed RLE has a negative count {min(counts)}"
    if counts and max(counts) > n_pixels:
        return (f"uncompressed RLE has a run of {max(counts)} pixels, more than the frame's "
                f"{n_pixels}")
    if sum(counts) != n_pixels:
        return f"uncompressed RLE counts cover {sum(counts)} pixels, size says {n_pixels}"
    return ""


def _alternating_sums(runs: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Per group starting at `first` (sorted): sum of its even-numbered minus its odd-numbered
    elements (numbered within the group). `runs` is negated at odd positions in place."""
    runs[1::2] *= -1
    out = np.add.reduceat(runs, first)
    out[first % 2 == 1] *= -1
    return out


def _check_uncompressed_chunk(counts: Sequence[list[int]], n_pixels: np.ndarray
                              ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """(areas int64 (N,), index of the first bad list or -1, runs int64 (sum M_i,), offsets
    (N + 1,)) of N uncompressed counts lists."""
    n = len(counts)
    nothing = np.zeros(0, np.int64)
    for i, c in enumerate(counts):
        try:  # sum() is a float if any count is, and fails on anything not a number
            total = sum(c)
        except TypeError:
            return np.zeros(n, dtype=np.int64), i, nothing, nothing
        if not isinstance(total, (int, np.integer)):
            return np.zeros(n, dtype=np.int64), i, nothing, nothing
    try:
        runs = np.fromiter(itertools.chain.from_iterable(counts), dtype=np.int64)
    except OverflowError:
        first = next(i for i, c in enumerate(counts) if c and max(map(abs, c)) >= 1 << 63)
        return np.zeros(n, dtype=np.int64), first, nothing, nothing
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    bad = lengths == 0
    small = np.flatnonzero(runs <= 1)  # where a bool (True == 1, False == 0) could hide
    if small.size:
        owner = np.searchsorted(offsets, small, side="right") - 1
        for o, j in zip(owner.tolist(), (small - offsets[owner]).tolist(), strict=True):
            if type(counts[o][j]) is bool:
                bad[o] = True
                break
        negative = small[runs[small] < 0]
        bad[np.searchsorted(offsets, negative, side="right") - 1] = True
    # A run longer than its frame is malformed; refusing it before summing also keeps the
    # int64 sums from wrapping (2 x (2**63 - 1) + 770 adds up to 768).
    too_long = np.flatnonzero(runs > np.repeat(n_pixels, lengths))
    if too_long.size:
        bad[np.searchsorted(offsets, too_long, side="right") - 1] = True
    nonempty = np.flatnonzero(lengths > 0)
    sums = np.zeros(n, dtype=np.int64)
    areas = np.zeros(n, dtype=np.int64)
    if nonempty.size:
        first = offsets[nonempty]
        sums[nonempty] = np.add.reduceat(runs, first)
        areas[nonempty] = (sums[nonempty] - _alternating_sums(runs.copy(), first)) // 2
    bad |= sums != n_pixels
    return areas, int(np.argmax(bad)) if bad.any() else -1, runs, offsets


def _encode_chunk(runs: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """pycocotools' rleToString of N RLEs given as concatenated runs (M,) and offsets (N + 1,):
    each run k >= 3 is written as its difference to run k - 2, 5 bits a character."""
    n = offsets.size - 1
    if runs.size == 0:
        return [b""] * n
    x = runs.copy()
    x[2:] -= runs[:-2]
    for k in range(3):  # runs 0, 1, 2 of every list are written as they are
        at = offsets[:-1] + k
        at = at[at < offsets[1:]]
        x[at] = runs[at]
    wide = np.flatnonzero((x < -16) | (x > 15))  # values that need more than one character
    n_wide = np.ones(wide.size, dtype=np.int64)
    for length in range(2, MAX_TOKEN_CHARS + 1):
        half = 1 << (5 * (length - 1) - 1)
        wider = (x[wide] < -half) | (x[wide] >= half)
        if not wider.any():
            break
        n_wide += wider
    extra = np.zeros(x.size + 1, dtype=np.int64)  # characters before each value, beyond one each
    extra[wide + 1] = n_wide - 1
    np.cumsum(extra, out=extra)
    start = extra[:-1] + np.arange(x.size)
    out = np.empty(x.size + int(extra[-1]), dtype=np.uint8)
    first = (x & 0x1F).astype(np.uint8)
    first += 48
    first[wide] += 32
    out[start] = first
    for j in range(1, int(n_wide.max(initial=1))):
        part = n_wide > j
        at, value = wide[part], x[wide[part]] >> (5 * j)
        out[start[at] + j] = (value & 0x1F) + 48 + 32 * (n_wide[part] > j + 1)
    flat = out.tobytes()
    bounds = (offsets + extra[offsets]).tolist()
    return [flat[bounds[i]:bounds[i + 1]] for i in range(n)]


def check_uncompressed(counts: Sequence[list[int]], n_pixels: np.ndarray | Sequence[int]
                       ) -> tuple[BulkCheck, list[bytes]]:
    """Check N uncompressed counts lists (integers, not bools, none negative or longer than
    the frame, summing to n_pixels (N,)) and encode them as compressed counts strings (byte
    for byte what pycocotools' frPyObjects makes). The strings are complete only when the
    check passes."""
    n_pixels = np.asarray(n_pixels, dtype=np.int64)
    areas = np.zeros(len(counts), dtype=np.int64)
    strings: list[bytes] = []
    for start, stop in _chunks([len(c) for c in counts]):
        chunk_areas, bad, runs, offsets = _check_uncompressed_chunk(counts[start:stop],
                                                                    n_pixels[start:stop])
        if bad >= 0:
            return BulkCheck(areas, start + bad), strings
        areas[start:stop] = chunk_areas
        strings += _encode_chunk(runs, offsets)
    return BulkCheck(areas, -1), strings
