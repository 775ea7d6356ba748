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
resolution beyond one multiply-add per output pixel.

Everything is tensor arithmetic on the masks' device (box means, a closed-form 3×3 inverse).
Over the whole frame (the CUDA default) there is no host read; the CPU default filters a crop
around each mask, which reads the masks' extents to the host (`output_masks`).
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


def guided_coefficients(prob: torch.Tensor, guide: torch.Tensor, radius: int,
                        eps: float) -> torch.Tensor:
    """The guided filter's window-averaged linear model: q = <a, I> + b.

    Args:
        prob: (N, h, w) mask probabilities in [0, 1].
        guide: (3, h, w) the image at the masks' resolution, values in [0, 1], or (N, 3, h, w)
            one image crop per mask.
        radius: window radius r in pixels of (h, w) (window (2r+1)²).
        eps: regularisation of the per-window fit (on [0, 1] colours: 1e-3 keeps edges of
            contrast about 0.03 and more).

    Returns:
        (N, 4, h, w): mean a (3 channels, one per colour) and mean b.
    """
    image = (guide if guide.dim() == 4 else guide[None]).float()      # (1 or N, 3, h, w)
    mean_i = box_mean(image, radius)
    upper = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    moments = box_mean(torch.stack([image[:, j] * image[:, k] for j, k in upper], 1), radius)
    var = [moments[:, u] - mean_i[:, j] * mean_i[:, k] + (eps if j == k else 0.0)
           for u, (j, k) in enumerate(upper)]
    inv = _inverse_3x3(torch.stack([torch.stack([var[0], var[1], var[2]], 1),
                                    torch.stack([var[1], var[3], var[4]], 1),
                                    torch.stack([var[2], var[4], var[5]], 1)], 1))
    p = prob[:, None].float()                                         # (N, 1, h, w)
    means = box_mean(torch.cat([p, image * p], 1), radius)            # (N, 4, h, w)
    mean_p, mean_ip = means[:, :1], means[:, 1:]
    cov = mean_ip - mean_i * mean_p                                   # (N, 3, h, w)
    a = (inv * cov[:, None]).sum(2)                                   # (N, 3, h, w)
    b = mean_p - (a * mean_i).sum(1, keepdim=True)                    # (N, 1, h, w)
    return box_mean(torch.cat([a, b], 1), radius)


def guided_filter(prob: torch.Tensor, guide: torch.Tensor, radius: int, eps: float,
                  full_guide: torch.Tensor | None = None) -> torch.Tensor:
    """Colour guided filter of N masks against one image, over the whole image.

    Args:
        prob, guide, radius, eps: as `guided_coefficients`.
        full_guide: (3, H, W) the same image at the output resolution; a and b are upsampled
            to it (bilinear) and applied there (default: output at (h, w)).

    Returns:
        (N, H, W) filtered probabilities (not clipped to [0, 1]).
    """
    out_image = (full_guide if full_guide is not None else guide)[None].float()
    if prob.shape[0] == 0:
        return prob.new_zeros((0, *out_image.shape[-2:]), dtype=torch.float32)
    coeffs = guided_coefficients(prob, guide, radius, eps)
    if coeffs.shape[-2:] != out_image.shape[-2:]:
        coeffs = F.interpolate(coeffs, out_image.shape[-2:], mode="bilinear",
                               align_corners=False)
    return (coeffs[:, :3] * out_image).sum(1) + coeffs[:, 3]


#: Masks filtered over the whole frame at a time: bounds the working memory (about 40 floats
#: per mask and frame pixel) when many tracks are visible in a large frame.
WHOLE_FRAME_CHUNK = 16
#: A mask's support for the cropped filter: where its probability exceeds this.
SUPPORT_PROB = 0.05
SUPPORT_LOGIT = math.log(SUPPORT_PROB / (1 - SUPPORT_PROB))
#: The crop around the support, in window radii: the filtered mask can leave the support by
#: at most about one radius where it snaps to an image edge, and a pixel's output depends on
#: the image and mask within two radii of it, so three radii keep the crop's own border out of
#: every output that can exceed 0.5.
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
    in each mask's [start, start + length): a run per mask, one length L for all."""
    lo, hi, _ = _bilinear_source(n_in, n_out, starts.device)
    first = torch.searchsorted(lo, starts)
    last = torch.searchsorted(hi, starts + length) - 1
    count = int((last - first + 1).min())
    return first[:, None] + torch.arange(count, device=starts.device)[None]


def _cropped_refine(mask_logits: torch.Tensor, geom: object, frame: torch.Tensor,
                    radius: int, eps: float) -> torch.Tensor:
    """`output_masks(..., "guided")` on a crop around each mask's support, all crops of one
    size in one batch (the CPU path: objects cover a few percent of a frame, and the work is
    the crops'). The logits are resized to the network input only inside the crops, and the
    output written only where the crops' coefficients reach. A few host reads (the supports'
    extent). -> (N, H, W) bool."""
    (h, w), (rh, rw), (hp, wp) = geom.original, geom.resized, geom.padded
    n, hp4, wp4 = mask_logits.shape
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
    margin = CROP_RADII * radius + 4
    y0, hc = _crop_starts(4 * torch.where(rows, ar_y, v4h).amin(1),
                          4 * torch.where(rows, ar_y, -1).amax(1) + 3, margin, rh)
    x0, wc = _crop_starts(4 * torch.where(cols, ar_x, v4w).amin(1),
                          4 * torch.where(cols, ar_x, -1).amax(1) + 3, margin, rw)
    ry = y0[:, None] + torch.arange(hc, device=dev)                    # (K, hc)
    rx = x0[:, None] + torch.arange(wc, device=dev)                    # (K, wc)
    zero = torch.zeros_like(y0)
    logits = _resize_axis(mask_logits[keep][:, None].float(), -2, ry, hp4, hp, zero)
    prob = torch.sigmoid(_resize_axis(logits, -1, rx, wp4, wp, zero))[:, 0]  # (K, hc, wc)
    full = frame.permute(2, 0, 1)                                      # (3, H, W) uint8
    if (rh, rw) == (h, w):
        small = full
    else:
        small = F.interpolate(full[None].float(), (rh, rw), mode="bilinear",
                              align_corners=False, antialias=rh < h or rw < w)[0]
    guide = small[:, ry[:, :, None], rx[:, None, :]].transpose(0, 1).float().contiguous() / 255
    coeffs = guided_coefficients(prob, guide, radius, eps)             # (K, 4, hc, wc)
    if (rh, rw) == (h, w):
        oy, ox, image = ry, rx, guide
    else:
        oy = _output_span(y0, hc, rh, h)
        ox = _output_span(x0, wc, rw, w)
        coeffs = _resize_axis(_resize_axis(coeffs, -2, oy, rh, h, y0), -1, ox, rw, w, x0)
        image = full[:, oy[:, :, None], ox[:, None, :]].transpose(0, 1).float().contiguous() / 255
    q = (coeffs[:, :3] * image).sum(1) + coeffs[:, 3]
    out[keep[:, None, None], oy[:, :, None], ox[:, None, :]] = q > 0.5
    return out


def refine_masks(logits: torch.Tensor, frame: torch.Tensor, resized: tuple[int, int],
                 radius: float, eps: float) -> torch.Tensor:
    """Guided-filter masks from mask logits at the network-input resolution, all masks over
    the whole frame in one batch (no host read; the CUDA path, and the reference the CPU's
    cropped path is tested against).

    Args:
        logits: (N, rh, rw) mask logits at the resized (network-input) resolution.
        frame: (H, W, 3) uint8 RGB, the frame at its own resolution, on the logits' device.
        resized: (rh, rw), the network-input size the frame was resized to.
        radius: window radius in network-input pixels (rounded, at least 1).
        eps: the filter's regularisation (colours in [0, 1]).

    Returns:
        (N, H, W) bool masks at the frame's resolution.
    """
    full = frame.permute(2, 0, 1).float() / 255.0                      # (3, H, W)
    if tuple(full.shape[-2:]) != tuple(resized):
        shrink = resized[0] < full.shape[1] or resized[1] < full.shape[2]
        small = F.interpolate(full[None], resized, mode="bilinear", align_corners=False,
                              antialias=shrink)[0]
    else:
        small = full
    prob = torch.sigmoid(logits.float())
    r = max(1, round(radius))
    if prob.shape[0] <= WHOLE_FRAME_CHUNK:
        return guided_filter(prob, small, r, eps, full_guide=full) > 0.5
    return torch.cat([guided_filter(prob[i: i + WHOLE_FRAME_CHUNK], small, r, eps,
                                    full_guide=full) > 0.5
                      for i in range(0, prob.shape[0], WHOLE_FRAME_CHUNK)])


def output_masks(mask_logits: torch.Tensor, geom: object, mode: str = "none",
                 radius: float = 5.0, eps: float = 1e-3,
                 frame: torch.Tensor | None = None, crop: bool | None = None) -> torch.Tensor:
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
            return _cropped_refine(mask_logits, geom, frame, max(1, round(radius)), eps)
    logits = F.interpolate(mask_logits[None], geom.padded, mode="bilinear", align_corners=False)
    logits = logits[:, :, : geom.resized[0], : geom.resized[1]]
    if mode == "none":
        return F.interpolate(logits, geom.original, mode="bilinear", align_corners=False)[0] > 0
    return refine_masks(logits[0], frame, geom.resized, radius, eps)


def configured_masks(mask_logits: torch.Tensor, geom: object, tracker_cfg: object,
                     frame: torch.Tensor | None = None) -> torch.Tensor:
    """`output_masks` with a `TrackerConfig`'s `mask_refine`, `mask_refine_radius` and
    `mask_refine_eps` (what `SPVIS.postprocess` publishes)."""
    return output_masks(mask_logits, geom, tracker_cfg.mask_refine,
                        tracker_cfg.mask_refine_radius, tracker_cfg.mask_refine_eps, frame)
