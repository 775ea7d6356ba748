"""Edge-aware refinement of the published masks: a colour guided filter against the frame.

The segmenter predicts masks on the stride-4 grid of its input, and `postprocess` upsamples
them bilinearly: a mask edge is placed to within a few output pixels (on 320×240 frames at
320 px input, the ground-truth masks themselves lose 8% IoU through the stride-4 grid, 18% on
objects under 400 px; docs/experiments.md, stop 37). The guided filter (He, Sun and Tang,
"Guided Image Filtering", 2010/2013) fits the mask probability, in every window of
(2r+1)² pixels, as a linear function of the frame's colour, q = a·I + b: where the window
straddles an object's edge in the image, the filtered mask follows that edge; where the image
is flat, it is the mask smoothed. It is computed at the network-input resolution (where the
mask was predicted) and applied at the frame's own resolution with a and b upsampled (the
"fast guided filter" of He and Sun, 2015), so its cost does not grow with the camera's
resolution beyond one multiply-add per output pixel. The filter may run several passes, each
on the last one's output (`tracker.mask_refine_passes`; the shipped model: two).

Everything is tensor arithmetic on the masks' device (box means, a closed-form 3×3 inverse).
Over the whole frame (the CUDA default) there is no host read; the CPU default filters a crop
around each mask, crops of similar size batched together, which reads the masks' extents to
the host (`output_masks`). Both bound their working memory (`BATCH_FLOATS`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)×(2r+1) window around each pixel, clipped at the image border
    (each pixel averages the pixels of its window that exist). (B, C, H, W) -> same.

    Running sums along each axis (`_window_sum`): the cost per pixel does not depend on r."""
    h, w = x.shape[-2:]
    inv_count = 1.0 / (_window_count(h, radius, x)[:, None] * _window_count(w, radius, x))
    return _window_sum(_window_sum(x, radius, -1), radius, -2) * inv_count


def _window_count(n: int, radius: int, like: torch.Tensor) -> torch.Tensor:
    j = torch.arange(n, device=like.device)
    return ((j + radius + 1).clamp(max=n) - (j - radius).clamp(min=0)).to(like.dtype)


def _window_sum(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sum over [j - r, j + r] ∩ [0, n) along `dim` (-1 or -2): with x zero-padded by r + 1
    before and r after, its running sum C has C[j + 2r + 1] - C[j] = that sum. Works along
    `dim` in place of transposing (elementwise work on a transposed view is several times
    slower on the CPU)."""
    n = x.shape[dim]
    pad = (radius + 1, radius) if dim == -1 else (0, 0, radius + 1, radius)
    sums = F.pad(x, pad).cumsum(dim)
    return sums.narrow(dim, 2 * radius + 1, n) - sums.narrow(dim, 0, n)


def _inverse_3x3(m: torch.Tensor) -> torch.Tensor:
    """Inverse of symmetric positive-definite 3×3 matrices stored as (..., 3, 3, H, W), by the
    adjugate (elementwise: no solver, no error check that would read the device)."""
    a, b, c = m[..., 0, 0, :, :], m[..., 0, 1, :, :], m[..., 0, 2, :, :]
    e, f, i = m[..., 1, 1, :, :], m[..., 1, 2, :, :], m[..., 2, 2, :, :]
    c00, c01, c02 = e * i - f * f, c * f - b * i, b * f - c * e
    c11, c12, c22 = a * i - c * c, b * c - a * f, a * e - b * b
    det = a * c00 + b * c01 + c * c02
    rows = [torch.stack(r, -3) for r in ((c00, c01, c02), (c01, c11, c12), (c02, c12, c22))]
    return torch.stack(rows, -4) / det[..., None, None, :, :]


def _guide_statistics(image: torch.Tensor, radius: int, eps: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The parts of the guided filter that depend on the image alone: the window means of
    the colour (B, 3, h, w) and the inverse of each window's regularised colour covariance
    (B, 3, 3, h, w), for (B, 3, h, w) `image`."""
    mean_i = box_mean(image, radius)
    upper = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    moments = box_mean(torch.stack([image[:, j] * image[:, k] for j, k in upper], 1), radius)
    var = [moments[:, u] - mean_i[:, j] * mean_i[:, k] + (eps if j == k else 0.0)
           for u, (j, k) in enumerate(upper)]
    inv = _inverse_3x3(torch.stack([torch.stack([var[0], var[1], var[2]], 1),
                                    torch.stack([var[1], var[3], var[4]], 1),
                                    torch.stack([var[2], var[4], var[5]], 1)], 1))
    return mean_i, inv


def _fit(prob: torch.Tensor, image: torch.Tensor, mean_i: torch.Tensor, inv: torch.Tensor,
         radius: int) -> torch.Tensor:
    """One guided-filter fit of (N, h, w) `prob` against (B, 3, h, w) `image` (B 1 or N) with
    its `_guide_statistics`: the window-averaged (N, 4, h, w) coefficients a (3) and b."""
    p = prob[:, None].float()                                         # (N, 1, h, w)
    means = box_mean(torch.cat([p, image * p], 1), radius)            # (N, 4, h, w)
    mean_p, mean_ip = means[:, :1], means[:, 1:]
    cov = mean_ip - mean_i * mean_p                                   # (N, 3, h, w)
    a = (inv * cov[:, None]).sum(2)                                   # (N, 3, h, w)
    b = mean_p - (a * mean_i).sum(1, keepdim=True)                    # (N, 1, h, w)
    return box_mean(torch.cat([a, b], 1), radius)


def apply_coefficients(coeffs: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The filter's output q = <a, I> + b: (N, 4, h, w) coefficients on (3, h, w) or
    (N, 3, h, w) `image` -> (N, h, w) (not clipped to [0, 1])."""
    return (coeffs[:, :3] * image).sum(1) + coeffs[:, 3]


def guided_coefficients(prob: torch.Tensor, guide: torch.Tensor, radius: int,
                        eps: float, passes: int = 1) -> torch.Tensor:
    """The guided filter's window-averaged linear model: q = <a, I> + b.

    Args:
        prob: (N, h, w) mask probabilities in [0, 1].
        guide: (3, h, w) the image at the masks' resolution, values in [0, 1], or (N, 3, h, w)
            one image crop per mask.
        radius: window radius r in pixels of (h, w) (window (2r+1)²).
        eps: regularisation of the per-window fit (on [0, 1] colours: 1e-3 keeps edges of
            contrast about 0.03 and more).
        passes: the filter applied this many times, each pass to the previous one's output
            (clipped to [0, 1]) at (h, w); the coefficients returned are the last pass's. The
            image's statistics are computed once.

    Returns:
        (N, 4, h, w): mean a (3 channels, one per colour) and mean b.
    """
    image = (guide if guide.dim() == 4 else guide[None]).float()      # (1 or N, 3, h, w)
    mean_i, inv = _guide_statistics(image, radius, eps)
    return _passes(prob, image, mean_i, inv, radius, passes)


def _passes(prob: torch.Tensor, image: torch.Tensor, mean_i: torch.Tensor, inv: torch.Tensor,
            radius: int, passes: int) -> torch.Tensor:
    """`passes` fits, each of the last one's output clipped to [0, 1] (`_fit`'s arguments)."""
    coeffs = _fit(prob, image, mean_i, inv, radius)
    for _ in range(passes - 1):
        coeffs = _fit(apply_coefficients(coeffs, image).clamp(0, 1), image, mean_i, inv, radius)
    return coeffs


def guided_filter(prob: torch.Tensor, guide: torch.Tensor, radius: int, eps: float,
                  full_guide: torch.Tensor | None = None, passes: int = 1) -> torch.Tensor:
    """Colour guided filter of N masks against one image, over the whole image.

    Args:
        prob, guide, radius, eps, passes: as `guided_coefficients`.
        full_guide: (3, H, W) the same image at the output resolution; a and b are upsampled
            to it (bilinear) and applied there (default: output at (h, w)).

    Returns:
        (N, H, W) filtered probabilities (not clipped to [0, 1]).
    """
    out_image = (full_guide if full_guide is not None else guide).float()
    if prob.shape[0] == 0:
        return prob.new_zeros((0, *out_image.shape[-2:]), dtype=torch.float32)
    image = guide[None].float()
    mean_i, inv = _guide_statistics(image, radius, eps)
    return _filtered(prob, image, mean_i, inv, radius, passes, out_image)


def _filtered(prob: torch.Tensor, image: torch.Tensor, mean_i: torch.Tensor,
              inv: torch.Tensor, radius: int, passes: int, out_image: torch.Tensor
              ) -> torch.Tensor:
    """`passes` fits of (N, h, w) `prob` against (1, 3, h, w) `image` with its
    `_guide_statistics`, applied to (3, H, W) `out_image` (the coefficients upsampled when
    (H, W) is larger). -> (N, H, W) filtered probabilities."""
    coeffs = _passes(prob, image, mean_i, inv, radius, passes)
    if coeffs.shape[-2:] == out_image.shape[-2:]:
        return apply_coefficients(coeffs, out_image)
    return _upsampled_output(coeffs, out_image)


def _upsampled_output(coeffs: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """<a, I> + b with (N, 4, h, w) `coeffs` resized (bilinear) to (3, H, W) `image`, one
    coefficient at a time (about 3 floats of working memory per mask and output pixel, not
    9). -> (N, H, W)."""
    size = image.shape[-2:]
    out = F.interpolate(coeffs[:, 3:], size, mode="bilinear", align_corners=False)[:, 0]
    for c in range(3):
        out += F.interpolate(coeffs[:, c: c + 1], size, mode="bilinear",
                             align_corners=False)[:, 0] * image[c]
    return out


#: Working memory of one batch of masks being refined, in floats (256 MiB): a frame's masks
#: are filtered in batches that fit it, so that many visible tracks in a large frame do not
#: exhaust a small GPU's memory (a single mask larger than it runs alone).
BATCH_FLOATS = 1 << 26
#: Working floats per mask and pixel of the fit at the network input (`_fit`'s means and
#: products; a crop's own image statistics add as much again).
FIT_FLOATS = 32
#: Working floats per mask and output pixel: over the whole frame (`_upsampled_output`) and on
#: crops (the four coefficients resized along each axis by gathers, then applied).
OUTPUT_FLOATS, CROP_OUTPUT_FLOATS = 4, 24
#: A batch's fixed cost on the CPU, in crop pixels: crops of different sizes share a batch
#: (all padded to its largest) while the padding costs less than a batch of their own.
#: Measured (1 thread): about 1.4 ms + 0.32 µs per crop pixel at 320×240, 3.2 ms + 1.0 µs at
#: a 640×480 frame from 320 px input, one or two passes: 3,000-4,500 pixels.
CROP_BATCH_PIXELS = 64 * 64
#: A mask's support for the cropped filter: where its probability exceeds this.
SUPPORT_PROB = 0.05
SUPPORT_LOGIT = math.log(SUPPORT_PROB / (1 - SUPPORT_PROB))
#: The crop around the support, in window radii per pass: each pass can move the mask out by
#: at most about one radius where it snaps to an image edge, and a pixel's output depends on
#: the image and mask within two radii of it per pass, so three radii per pass keep the crop's
#: own border out of every output that can exceed 0.5.
CROP_RADII = 3


def _bilinear_source(n_in: int, n_out: int, device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PyTorch's bilinear resize (align_corners=False) along one axis, n_in -> n_out: output
    i reads inputs lo[i] and hi[i], with weight w[i] on hi."""
    src = ((torch.arange(n_out, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out)
           - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=n_in - 1)
    return lo, (lo + 1).clamp(max=n_in - 1), (src - lo).float()


def _gather_axis(x: torch.Tensor, dim: int, idx: torch.Tensor) -> torch.Tensor:
    """(K, C, A, B) -> the positions `idx` (K, L) of each mask's `dim` (-2 or -1)."""
    k, c = x.shape[:2]
    if dim == -2:
        return x.gather(-2, idx[:, None, :, None].expand(k, c, idx.shape[1], x.shape[-1]))
    return x.gather(-1, idx[:, None, None, :].expand(k, c, x.shape[-2], idx.shape[1]))


def _resize_axis(x: torch.Tensor, dim: int, out_pos: torch.Tensor, n_in: int, n_out: int,
                 in_start: torch.Tensor) -> torch.Tensor:
    """Outputs `out_pos` (K, L) of a bilinear n_in -> n_out resize along `dim` (-2 or -1), as
    `F.interpolate` would give them, from (K, C, A, B) `x` that holds each mask's inputs from
    `in_start` (K,) on along that axis. -> (K, C, L, B) or (K, C, A, L)."""
    lo, hi, w = _bilinear_source(n_in, n_out, x.device)
    wt = w[out_pos]
    wt = wt[:, None, :, None] if dim == -2 else wt[:, None, None, :]
    start = in_start[:, None]
    return (_gather_axis(x, dim, lo[out_pos] - start) * (1 - wt)
            + _gather_axis(x, dim, hi[out_pos] - start) * wt)


def _crop_starts(first: torch.Tensor, last: torch.Tensor, margin: int, size: int
                 ) -> tuple[torch.Tensor, int]:
    """Per-mask crop starts along one axis, all crops of one length: each covers [first,
    last] and `margin` beyond (clipped at the image), shifted to stay inside the image.
    Returns (starts (K,), length)."""
    lo, hi = (first - margin).clamp(min=0), (last + 1 + margin).clamp(max=size)
    length = int((hi - lo).max())
    return lo.clamp(max=size - length), length


def _output_span(starts: torch.Tensor, length: int, n_in: int, n_out: int
                 ) -> torch.Tensor:
    """The output positions (K, L) of an n_in -> n_out bilinear resize that read only inputs
    in each mask's [start, start + length): a run per mask, L the longest run's length, the
    shorter runs padded with their last position (a crop at the image's end reaches one or
    two outputs more than one inside it: they are not cut off)."""
    lo, hi, _ = _bilinear_source(n_in, n_out, starts.device)
    first = torch.searchsorted(lo, starts)
    last = torch.searchsorted(hi, starts + length) - 1
    count = int((last - first + 1).max())
    run = first[:, None] + torch.arange(count, device=starts.device)[None]
    return torch.minimum(run, last[:, None])


def _crop_batches(spans: list[tuple[int, int]], output_scale: float) -> list[list[int]]:
    """Groups of crops (indices into `spans`, each crop's (height, width) at the network
    input) filtered together, all padded to their group's largest height and width. Crops in
    order of area; each joins the open group when that costs fewer padded pixels than a batch
    of its own would (its own area plus `CROP_BATCH_PIXELS`, a batch's fixed cost) and the
    group's working memory stays within `BATCH_FLOATS` (`output_scale`: output pixels per
    network-input pixel)."""
    per_pixel = 2 * FIT_FLOATS + CROP_OUTPUT_FLOATS * output_scale
    batches: list[list[int]] = []
    group: list[int] = []
    gh = gw = 0
    for k in sorted(range(len(spans)), key=lambda k: (spans[k][0] * spans[k][1], k)):
        hk, wk = spans[k]
        n, nh, nw = len(group), max(gh, hk), max(gw, wk)
        joined = (n + 1) * nh * nw
        if group and (joined > n * gh * gw + hk * wk + CROP_BATCH_PIXELS
                      or joined * per_pixel > BATCH_FLOATS):
            batches.append(group)
            group, nh, nw = [], hk, wk
        group.append(k)
        gh, gw = nh, nw
    batches.append(group)
    return batches


def _cropped_refine(mask_logits: torch.Tensor, geom: object, frame: torch.Tensor,
                    radius: int, eps: float, passes: int = 1) -> torch.Tensor:
    """`output_masks(..., "guided")` on a crop around each mask's support (the CPU path:
    objects cover a few percent of a frame, and the work is the crops'), crops of similar size
    batched together (`_crop_batches`). The logits are resized to the network input only
    inside the crops, and the output written only where the crops' coefficients reach. Reads
    the supports' extents to the host. -> (N, H, W) bool."""
    (h, w), (rh, rw) = geom.original, geom.resized
    n = mask_logits.shape[0]
    dev = mask_logits.device
    out = torch.zeros((n, h, w), dtype=torch.bool, device=dev)
    v4h, v4w = geom.valid_stride4
    support = mask_logits[:, :v4h, :v4w] > SUPPORT_LOGIT
    keep = support.flatten(1).any(1).nonzero().flatten()
    if keep.numel() == 0:
        return out
    rows, cols = support[keep].any(2), support[keep].any(1)            # (K, v4h), (K, v4w)
    ar_y, ar_x = torch.arange(v4h, device=dev), torch.arange(v4w, device=dev)
    # A stride-4 cell c reaches input pixels [4c - 2, 4c + 6) through the bilinear resize.
    extent = torch.stack([4 * torch.where(rows, ar_y, v4h).amin(1),
                          4 * torch.where(rows, ar_y, -1).amax(1) + 3,
                          4 * torch.where(cols, ar_x, v4w).amin(1),
                          4 * torch.where(cols, ar_x, -1).amax(1) + 3], 1)  # (K, 4)
    margin = CROP_RADII * passes * radius + 4
    spans = [((min(y1 + 1 + margin, rh) - max(y0 - margin, 0)),
              (min(x1 + 1 + margin, rw) - max(x0 - margin, 0)))
             for y0, y1, x0, x1 in extent.tolist()]
    full = frame.permute(2, 0, 1)                                      # (3, H, W) uint8
    if (rh, rw) == (h, w):
        small = full
    else:
        small = F.interpolate(full[None].float(), (rh, rw), mode="bilinear",
                              align_corners=False, antialias=rh < h or rw < w)[0]
    for batch in _crop_batches(spans, (h * w) / (rh * rw)):
        idx = torch.tensor(batch, device=dev)
        _refine_crops(mask_logits, keep[idx], extent[idx], margin, geom, full, small,
                      radius, eps, passes, out)
    return out


def _refine_crops(mask_logits: torch.Tensor, keep: torch.Tensor, extent: torch.Tensor,
                  margin: int, geom: object, full: torch.Tensor, small: torch.Tensor,
                  radius: int, eps: float, passes: int, out: torch.Tensor) -> None:
    """One batch of `_cropped_refine`: masks `keep` (K,) with support extents (K, 4) (first
    and last row, first and last column, network-input pixels), cropped with `margin` to one
    size; `full` (3, H, W) uint8 frame, `small` (3, rh, rw) the network input. Writes the
    refined masks into `out` (N, H, W) bool."""
    (h, w), (rh, rw), (hp, wp) = geom.original, geom.resized, geom.padded
    hp4, wp4 = mask_logits.shape[-2:]
    dev = mask_logits.device
    y0, hc = _crop_starts(extent[:, 0], extent[:, 1], margin, rh)
    x0, wc = _crop_starts(extent[:, 2], extent[:, 3], margin, rw)
    ry = y0[:, None] + torch.arange(hc, device=dev)                    # (K, hc)
    rx = x0[:, None] + torch.arange(wc, device=dev)                    # (K, wc)
    zero = torch.zeros_like(y0)
    logits = _resize_axis(mask_logits[keep][:, None].float(), -2, ry, hp4, hp, zero)
    prob = torch.sigmoid(_resize_axis(logits, -1, rx, wp4, wp, zero))[:, 0]  # (K, hc, wc)
    guide = small[:, ry[:, :, None], rx[:, None, :]].transpose(0, 1).float().contiguous() / 255
    coeffs = guided_coefficients(prob, guide, radius, eps, passes)     # (K, 4, hc, wc)
    if (rh, rw) == (h, w):
        oy, ox, image = ry, rx, guide
    else:
        oy = _output_span(y0, hc, rh, h)
        ox = _output_span(x0, wc, rw, w)
        coeffs = _resize_axis(_resize_axis(coeffs, -2, oy, rh, h, y0), -1, ox, rw, w, x0)
        image = full[:, oy[:, :, None], ox[:, None, :]].transpose(0, 1).float().contiguous() / 255
    q = apply_coefficients(coeffs, image)
    out[keep[:, None, None], oy[:, :, None], ox[:, None, :]] = q > 0.5


def refine_masks(logits: torch.Tensor, frame: torch.Tensor, resized: tuple[int, int],
                 radius: float, eps: float, passes: int = 1) -> torch.Tensor:
    """Guided-filter masks from mask logits at the network-input resolution, over the whole
    frame, in batches of masks that fit `BATCH_FLOATS` (no host read; the CUDA path, and the
    reference the CPU's cropped path is tested against). The image's statistics are computed
    once for all masks.

    Args:
        logits: (N, rh, rw) mask logits at the resized (network-input) resolution.
        frame: (H, W, 3) uint8 RGB, the frame at its own resolution, on the logits' device.
        resized: (rh, rw), the network-input size the frame was resized to.
        radius: window radius in network-input pixels (rounded, at least 1).
        eps: the filter's regularisation (colours in [0, 1]).
        passes: filter passes at the network-input resolution (`guided_coefficients`).

    Returns:
        (N, H, W) bool masks at the frame's resolution.
    """
    full = frame.permute(2, 0, 1).float() / 255.0                      # (3, H, W)
    size = tuple(full.shape[-2:])
    if size != tuple(resized):
        shrink = resized[0] < full.shape[1] or resized[1] < full.shape[2]
        small = F.interpolate(full[None], resized, mode="bilinear", align_corners=False,
                              antialias=shrink)[0]
    else:
        small = full
    r = max(1, round(radius))
    image = small[None]
    mean_i, inv = _guide_statistics(image, r, eps)
    per_mask = FIT_FLOATS * resized[0] * resized[1] + OUTPUT_FLOATS * size[0] * size[1]
    step = max(1, BATCH_FLOATS // per_mask)
    out = []
    for i in range(0, logits.shape[0], step):
        prob = torch.sigmoid(logits[i: i + step].float())
        out.append(_filtered(prob, image, mean_i, inv, r, passes, full) > 0.5)
    if not out:
        return torch.zeros((0, *size), dtype=torch.bool, device=logits.device)
    return out[0] if len(out) == 1 else torch.cat(out)


def output_masks(mask_logits: torch.Tensor, geom: object, mode: str = "none",
                 radius: float = 5.0, eps: float = 1e-3,
                 frame: torch.Tensor | None = None, crop: bool | None = None,
                 passes: int = 1) -> torch.Tensor:
    """Published masks from tracks' stride-4 mask logits.

    Args:
        mask_logits: (N, Hp/4, Wp/4) logits on the padded input's stride-4 grid.
        geom: the frame's `FrameGeometry` (original, resized and padded sizes).
        mode: "none" (logits upsampled bilinearly to the frame, > 0) or "guided" (the logits'
            probabilities guided-filtered against `frame`, > 0.5; `refine_masks`).
        radius, eps: the guided filter's window radius (network-input pixels) and
            regularisation.
        frame: (H, W, 3) uint8 RGB on the logits' device; needed by "guided".
        crop: "guided" on a crop around each mask (`_cropped_refine`) instead of over the
            whole frame (`refine_masks`). Default: crops on the CPU (the work follows the
            objects' size), the whole frame elsewhere (no host read). They agree but where a
            crop's border reaches an output near 0.5 (test/test_mask_refine.py).
        passes: guided-filter passes (`guided_coefficients`).

    Returns:
        (N, H, W) bool masks at the frame's resolution.
    """
    if mode != "none":
        if frame is None:
            raise ValueError(f"tracker.mask_refine = {mode!r} needs the frame: pass frame=")
        if tuple(frame.shape) != (*geom.original, 3):
            raise ValueError(f"frame shape {tuple(frame.shape)}: the geometry is of a "
                             f"{geom.original[1]}x{geom.original[0]} frame")
        frame = frame.to(mask_logits.device)
        if crop if crop is not None else mask_logits.device.type == "cpu":
            return _cropped_refine(mask_logits, geom, frame, max(1, round(radius)), eps, passes)
    logits = F.interpolate(mask_logits[None], geom.padded, mode="bilinear", align_corners=False)
    logits = logits[:, :, : geom.resized[0], : geom.resized[1]]
    if mode == "none":
        return F.interpolate(logits, geom.original, mode="bilinear", align_corners=False)[0] > 0
    return refine_masks(logits[0], frame, geom.resized, radius, eps, passes)


def configured_masks(mask_logits: torch.Tensor, geom: object, tracker_cfg: object,
                     frame: torch.Tensor | None = None) -> torch.Tensor:
    """`output_masks` with a `TrackerConfig`'s `mask_refine`, `mask_refine_radius`,
    `mask_refine_eps` and `mask_refine_passes` (what `SPVIS.postprocess` publishes)."""
    return output_masks(mask_logits, geom, tracker_cfg.mask_refine,
                        tracker_cfg.mask_refine_radius, tracker_cfg.mask_refine_eps, frame,
                        passes=tracker_cfg.mask_refine_passes)
