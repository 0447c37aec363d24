"""Joining a ``torchrun`` launch: the process group for data-parallel training (DDP).

    torchrun --nproc_per_node=N -m mlpot train input.json      # NCCL on GPUs, gloo on CPU
"""

from __future__ import annotations

import os
from typing import Optional


def init_distributed(device: Optional[str] = None) -> bool:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1: NCCL when CUDA is available and
    ``device`` is None, ``"auto"`` or a CUDA device (each rank on ``cuda:<LOCAL_RANK>``), else gloo.

    Returns True when this call initialised the group (the caller destroys it at the end), False when
    not launched by torchrun or the group already exists.
    """
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return False
    use_cuda = torch.cuda.is_available() and (device is None or device in ("auto",) or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True
