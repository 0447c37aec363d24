"""Device resolution, written once: every public entry point takes ``device=``.

``None`` or ``"auto"``: CUDA when available (``cuda:<local_rank>`` modulo the visible GPUs when a
local rank is given, e.g. under torchrun or MPI), else CPU. ``"cuda"`` with a local rank: that rank's
GPU. Anything else is passed to :class:`torch.device` ("cpu", "cuda:1", a ``torch.device``).
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from mlpot.errors import ConfigError

DeviceLike = Union[str, torch.device, None]


def resolve_device(device: DeviceLike = None, local_rank: Optional[int] = None) -> torch.device:
    """The :class:`torch.device` to use (see the module docstring); ConfigError for a bad string."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = "cuda"
    if device == "cuda" and local_rank is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(local_rank) % max(torch.cuda.device_count(), 1)}")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None


__all__ = ["resolve_device", "DeviceLike"]
