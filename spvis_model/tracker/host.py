"""The tracker's host traffic: one packed copy per decision point, uploads that never wait.

The tracker's decisions (Hungarian assignment, births, slot allocation, the life cycle) are
made on the host, on host copies of their inputs; the networks and the state's float tensors
stay on the device. `to_host` brings several tensors back in one device-to-host copy (one
sync); `to_device` sends the decisions back from pinned memory without blocking the host.

On a CPU device nothing moves: `to_host` returns detached views (no copy, so every value the
host computes with is bit-identical to the device's), `to_device` returns its input. Both are
still recorded by `spvis_model.syncs.count_syncs`, so a CPU run counts the copies a CUDA run
makes.
"""

from __future__ import annotations

import torch

from spvis_model.syncs import record

_ALIGN = 8  # bytes: every packed tensor starts at a multiple of 8, so int64/float64 views work


def _pack(tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[tuple[str, int, int,
                                                                              torch.dtype,
                                                                              torch.Size]]]:
    """Concatenate the tensors' bytes (each padded to 8 bytes) into one flat uint8 tensor on
    their device, with the (name, offset, nbytes, dtype, shape) of each."""
    parts, layout, offset = [], [], 0
    for name, t in tensors.items():
        flat = t.detach().contiguous().reshape(-1)
        raw = flat.view(torch.uint8) if flat.numel() else flat.new_zeros(0, dtype=torch.uint8)
        n = raw.numel()
        pad = (-n) % _ALIGN
        parts.append(raw)
        if pad:
            parts.append(raw.new_zeros(pad))
        layout.append((name, offset, n, t.dtype, t.shape))
        offset += n + pad
    buf = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.uint8)
    return buf, layout


def _unpack(buf: torch.Tensor, layout: list[tuple[str, int, int, torch.dtype, torch.Size]]
            ) -> dict[str, torch.Tensor]:
    out = {}
    for name, offset, n, dtype, shape in layout:
        raw = buf[offset:offset + n]
        out[name] = (raw.view(dtype) if n else torch.zeros(0, dtype=dtype,
                                                           device=buf.device)).view(shape)
    return out


def to_host(tensors: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """The tensors on the host, in one device-to-host copy (one sync on CUDA).

    Args:
        tensors: {name: tensor}, all on one device (any dtypes and shapes).
        what: a short name of the decision point (for sync counting).

    Returns:
        {name: CPU tensor} with the same values, detached (decisions need no gradients).
    """
    record("to_host", what)
    if not tensors:
        return {}
    devices = {t.device for t in tensors.values()}
    if len(devices) != 1:
        raise ValueError(f"to_host({what!r}): tensors on several devices "
                         f"{sorted(map(str, devices))}")
    (device,) = devices
    if device.type == "cpu":
        out = {}
        for name, t in tensors.items():
            v = t.detach()
            v._spvis_host = True  # type: ignore[attr-defined]  # counted once, here
            out[name] = v
        return out
    buf, layout = _pack(tensors)
    host = buf.cpu()
    host._spvis_host = True  # type: ignore[attr-defined]
    out = {name: t.clone() for name, t in _unpack(host, layout).items()}
    for t in out.values():
        t._spvis_host = True  # type: ignore[attr-defined]
    return out


def to_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Host tensors on `device` without blocking the host: one upload from pinned memory
    (``non_blocking``; the caching host allocator keeps the pinned block until the copy is
    done). On a CPU device the tensors are returned as they are.

    Returns:
        {name: tensor on device}; each owns its memory.
    """
    if device.type == "cpu" or not tensors:
        return dict(tensors)
    buf, layout = _pack(tensors)
    pinned = torch.empty(buf.shape, dtype=torch.uint8, pin_memory=True)
    pinned.copy_(buf)
    on_device = pinned.to(device, non_blocking=True)
    return {name: t.clone() for name, t in _unpack(on_device, layout).items()}
