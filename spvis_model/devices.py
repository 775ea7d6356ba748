"""Where the model runs: one check of a device name, shared by the API, the CLI and the node.

    device = resolve_device("cuda:1", field="--device")   # torch.device("cuda", 1), or ValueError

A name the machine cannot serve (CUDA asked on a CPU-only torch, an index past the visible
devices, an extension built without CUDA kernels, a typo) is refused with one line that names
the field and the value and says what would work, instead of a traceback from deep inside
`Module.to`. Nothing falls back silently: `auto` picks the CPU only where torch sees no CUDA.
"""

from __future__ import annotations

import re

import torch

from spvis_model.ops import with_cuda

DEVICE_FORMS = "auto, cpu, cuda or cuda:N"
_NAME = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def resolve_device(name: str | torch.device, field: str = "device") -> torch.device:
    """The torch device for `name`: 'auto' (CUDA device 0 when torch sees one, else the CPU),
    'cpu', 'cuda' or 'cuda:N'; a torch.device is checked the same way. 'cpu:0' (what
    ``str(torch.device("cpu", 0))`` gives) is the CPU too. 'auto' on a CUDA machine
    whose extension has no CUDA kernels is refused like 'cuda', not run on the CPU.

    Raises:
        ValueError: the name is not one of those forms, or it asks for CUDA on a machine or
            build that cannot run it; the message starts with '`field` = `name`'.
    """
    text = str(name) if isinstance(name, torch.device) else name
    if not isinstance(text, str):
        raise ValueError(f"{field} = {name!r}: must be a string ({DEVICE_FORMS})")
    m = _NAME.match(text.strip())
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"
                     and (m.group(1), m.group(2)) != ("cpu", "0")):
        raise ValueError(f"{field} = {name!r}: must be {DEVICE_FORMS}")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu" or (kind == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    problem = cuda_problem()
    if problem is not None:
        raise ValueError(f"{field} = {name!r}: {problem}")
    count = torch.cuda.device_count()
    i = int(index) if index is not None else 0
    if i >= count:
        raise ValueError(f"{field} = {name!r}: only {count} CUDA device(s) are visible "
                         f"(cuda:0{'' if count == 1 else f' to cuda:{count - 1}'})")
    return torch.device("cuda", i)


def cuda_problem() -> str | None:
    """Why CUDA cannot run the model here, or None when it can."""
    if not torch.cuda.is_available():
        return "torch sees no CUDA device (use cpu or auto)"
    if not with_cuda():
        return ("spvis_model._C was built without CUDA kernels: rebuild it on this machine "
                "(pip install -e . with nvcc present) or use cpu")
    return None
