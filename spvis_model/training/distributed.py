"""torch.distributed plumbing for the trainer: process group from the torchrun environment,
a deterministic sharded batch sampler, seeds derived from (seed, rank, step), and small
collectives (mean of logged scalars, gathering per-rank state for checkpoints).

Everything here also works in a single process without torchrun (world size 1, no process
group).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job.

    Attributes:
        rank, world_size, local_rank: from torchrun's RANK / WORLD_SIZE / LOCAL_RANK (0, 1, 0
            without torchrun).
        device: the device this rank trains on.
        owns_group: True when `init_distributed` created the process group (and so destroys
            it in `cleanup`).
        in_group: True when a process group is in use: the one `init_distributed` created, or
            one the caller initialised before (then DDP and the collectives run through it
            even at world size 1, e.g. to exercise NCCL on one GPU).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False
    in_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Gradients, logged values and checkpoint state go through the process group (DDP,
        collectives): with several processes, and with one when a group is in use."""
        return self.world_size > 1 or self.in_group


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} = {raw!r}: must be an int") from exc


def pick_device(device: str, local_rank: int) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when torch sees CUDA, else cpu; 'cuda' where it cannot run
    (no CUDA device, no CUDA kernels in spvis_model._C, LOCAL_RANK past the devices) raises
    ValueError naming the device."""
    from spvis_model.devices import cuda_problem

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        problem = cuda_problem()
        if problem is not None:
            raise ValueError(f"device = {device!r}: {problem}")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK = {local_rank} but only {torch.cuda.device_count()} "
                             "CUDA device(s) are visible")
        return torch.device("cuda", local_rank)
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device = {device!r}: must be 'auto', 'cpu' or 'cuda'")


def check_device(device: str) -> torch.device:
    """The device this process would train on (`pick_device` with the environment's
    LOCAL_RANK), to refuse a bad one before any data is read."""
    return pick_device(device, _env_int("LOCAL_RANK", 0))


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun job described by the environment (or run alone without one).

    With WORLD_SIZE > 1 this initialises the default process group from the env:// rendezvous
    torchrun sets up: NCCL when training on CUDA, gloo on the CPU. A group that is already
    initialised (by the caller) is used as it is, also at world size 1 (`DistInfo.in_group`).
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        dev = pick_device(device, local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistInfo(rank, world, local_rank, dev, owns_group=False, in_group=True)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK = {rank}, WORLD_SIZE = {world}: need 0 <= RANK < WORLD_SIZE")
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world == 1:
        return DistInfo(0, 1, local_rank, dev, owns_group=False)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                            device_id=dev if dev.type == "cuda" else None)
    return DistInfo(rank, world, local_rank, dev, owns_group=True, in_group=True)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if `init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. seed, rank, step) via numpy's SeedSequence: distinct
    tuples give independent streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (on every rank). A single process gets [obj]."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(info: DistInfo, values: dict[str, float]) -> dict[str, float]:
    """The mean of each key over the ranks that report it (keys may differ between ranks)."""
    if not info.distributed:
        return dict(values)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for d in gather_objects(info, values):
        for k, v in d.items():
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of data set indices for one rank: a DistributedSampler-equivalent.

    Each epoch is a permutation of range(size) that depends only on (seed, epoch). It is
    extended by wrapping round to a multiple of world_size × batch_size (so every rank gets the
    same number of full batches; the wrapped indices are the only repeats), and rank r takes
    every world_size-th index from position r. Ranks therefore see disjoint indices within an
    epoch, except for the wrapped padding.

    `set_epoch(epoch, start_batch)` selects the epoch and skips its first batches (resuming
    mid-epoch without replaying them).
    """

    def __init__(self, size: int, batch_size: int, rank: int, world_size: int, seed: int,
                 shuffle: bool = True) -> None:
        if size <= 0:
            raise ValueError(f"ShardedBatchSampler: the data set is empty (size = {size})")
        if batch_size <= 0:
            raise ValueError(f"ShardedBatchSampler: batch_size = {batch_size}: must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"ShardedBatchSampler: rank = {rank} outside [0, {world_size})")
        self.size, self.batch_size = size, batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start_batch = 0, 0

    def __len__(self) -> int:
        """Batches per epoch (per rank)."""
        per_step = self.world_size * self.batch_size
        return (self.size + per_step - 1) // per_step

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"ShardedBatchSampler: start_batch = {start_batch} outside "
                             f"[0, {len(self)}]")
        self.epoch, self.start_batch = epoch, start_batch

    def rank_indices(self, epoch: int) -> list[int]:
        """This rank's indices for `epoch`, in order (len(self) × batch_size of them)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0x5A3))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.world_size * self.batch_size
        padded = (order * (total // self.size + 1))[:total]
        return padded[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        idx = self.rank_indices(self.epoch)
        for b in range(self.start_batch, len(self)):
            yield idx[b * self.batch_size:(b + 1) * self.batch_size]
