"""Random-number state of one training process: seeding torch / numpy / random per rank, and
saving and restoring all of their states as tensors and primitives (so a training checkpoint
loads with weights_only=True and a resume continues the same streams)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from spvis_model.training import distributed as D


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states as tensors and primitives (weights_only-loadable)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": torch.tensor(py_state[1],
                                                                      dtype=torch.int64),
                   "gauss_next": py_state[2]},
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))


def seed_everything(seed: int, rank: int) -> None:
    """Seed torch, numpy and random from (seed, rank)."""
    s = D.derive_seed(seed, rank, 0x7A1)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)
