"""Training checkpoints, written and read in one place.

Layout (``torch.save``; loadable with ``torch.load(..., weights_only=True)``)::

    {"format": "mlpot-checkpoint",
     "model": state_dict, "optimizer": Adam state_dict, "step": int (completed steps),
     "config": JSON string (the training config; its "model" section is what
               EnergyModel.from_config takes, with sel resolved to numbers),
     "rng_torch": uint8 tensor, "mlpot_version": str}

A training run writes ``{prefix}-{step}.pt`` and a copy ``{prefix}.pt`` (the latest), keeping the
newest ``keep`` numbered ones (:func:`write`, :func:`prune`). :func:`read` returns a typed
:class:`Checkpoint` for a file or a training output directory (:func:`find`: its newest
checkpoint); it also accepts foreign checkpoints that hold the state dict under ``model_state_dict`` or
``state_dict`` (with ``module.`` / ``_orig_mod.`` prefixes of DDP / torch.compile removed).
:func:`read_weights` gives the state dict of a checkpoint *or* a frozen model (``init_model``).
Every problem is one :class:`~mlpot.errors.ModelError` line naming the file.
"""

from __future__ import annotations

import json
import warnings
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import torch

from mlpot.atomic_io import atomic_path
from mlpot.errors import ModelError

PathLike = Union[str, os.PathLike]

#: the format tag of a training checkpoint
FORMAT = "mlpot-checkpoint"
#: state_dict keys accepted in a checkpoint, in order of preference
STATE_KEYS = ("model", "model_state_dict", "state_dict")


class Checkpoint(NamedTuple):
    """A training checkpoint (see the module docstring). ``config``: the training config as a dict
    (``config["model"]`` builds the network); ``step``: completed steps (None if not recorded);
    ``path``: the file it was read from (None for one built in memory)."""

    model: dict[str, torch.Tensor]
    config: dict[str, Any]
    step: Optional[int]
    optimizer: Optional[dict[str, Any]] = None
    rng_torch: Optional[torch.Tensor] = None
    mlpot_version: Optional[str] = None
    path: Optional[Path] = None
    #: shortest pair distance (Å) of the training data (the table range of ``mlpot compress``)
    min_nbor_dist: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        """The ``torch.save`` payload (module docstring layout)."""
        from mlpot import __version__

        return {
            "format": FORMAT,
            "model": {k: v.detach().to("cpu").clone() for k, v in self.model.items()},
            "optimizer": self.optimizer,
            "step": None if self.step is None else int(self.step),
            "config": json.dumps(self.config, sort_keys=True),
            "rng_torch": self.rng_torch,
            "mlpot_version": self.mlpot_version or __version__,
            "min_nbor_dist": None if self.min_nbor_dist is None else float(self.min_nbor_dist),
        }

    def metadata(self) -> dict[str, Any]:
        """What a frozen model records about its training: ``training_config``, ``step`` and, for a
        checkpoint read from a file, ``source_checkpoint``."""
        meta: dict[str, Any] = {"training_config": self.config, "step": self.step}
        if self.path is not None:
            meta["source_checkpoint"] = str(self.path)
        if self.min_nbor_dist is not None:
            meta["min_nbor_dist"] = float(self.min_nbor_dist)
        return meta


def numbered_path(directory: PathLike, prefix: str, step: int) -> Path:
    """``directory/{prefix}-{step}.pt``."""
    return Path(directory) / f"{prefix}-{int(step)}.pt"


def latest_path(directory: PathLike, prefix: str) -> Path:
    """``directory/{prefix}.pt`` (the copy of the newest checkpoint)."""
    return Path(directory) / f"{prefix}.pt"


def write(ckpt: Checkpoint, directory: PathLike, prefix: str, keep: Optional[int] = None) -> Path:
    """Write ``{prefix}-{step}.pt`` and the latest copy ``{prefix}.pt`` atomically; with ``keep``, prune
    to the newest ``keep`` numbered ones. Returns the latest copy's path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    numbered, latest = numbered_path(d, prefix, int(ckpt.step or 0)), latest_path(d, prefix)
    with atomic_path(numbered) as tmp:
        torch.save(ckpt.to_dict(), tmp)
    with atomic_path(latest) as tmp:
        shutil.copyfile(numbered, tmp)
    if keep is not None:
        prune(d, prefix, keep)
    return latest


def prune(directory: PathLike, prefix: str, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` numbered checkpoints ``{prefix}-{step}.pt``; returns those deleted."""
    olds = []
    for f in Path(directory).glob(f"{prefix}-*.pt"):
        tail = f.name[len(prefix) + 1 : -3]
        if tail.isdigit():
            olds.append((int(tail), f))
    gone = [f for _, f in sorted(olds)[: max(len(olds) - int(keep), 0)]]
    for f in gone:
        f.unlink(missing_ok=True)
    return gone


def find(path: PathLike) -> Path:
    """``path`` itself, or for a directory its newest ``*.ckpt.pt`` / ``checkpoint*.pt`` / ``*.pt`` file."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"checkpoint '{p}': no such file or directory")
    if p.is_file():
        return p
    for pattern in ("*.ckpt.pt", "checkpoint*.pt", "*.pt"):
        found = sorted(p.glob(pattern), key=lambda f: f.stat().st_mtime)
        if found:
            return found[-1]
    raise ModelError(f"checkpoint directory '{p}': no *.ckpt.pt or *.pt file in it")


def _load(p: Path, what: str) -> Any:
    try:
        from mlpot.export import _is_torchscript

        if _is_torchscript(p):
            raise ValueError("TorchScript")  # never handed to torch.jit.load
        with warnings.catch_warnings():  # torch's advice about the file is not the user's business
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling problem is a bad file
        from mlpot.export import deepmd_hint, describe_unreadable

        hint = deepmd_hint(p)
        raise ModelError(f"{what} '{p}': {hint or 'cannot be read as a torch checkpoint (' + describe_unreadable(p) + ')'}") from None


def _state_dict(ckpt: dict, where: str) -> Optional[dict[str, torch.Tensor]]:
    state = next((ckpt[k] for k in STATE_KEYS if isinstance(ckpt.get(k), dict)), None)
    if state is None:
        return None
    for prefix in ("module.", "_orig_mod."):  # DistributedDataParallel / torch.compile wrappers
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read(path: PathLike) -> Checkpoint:
    """The :class:`Checkpoint` in ``path`` (a file, or a directory: :func:`find`); ModelError if it is
    not a training checkpoint."""
    p = find(path)
    where = f"checkpoint '{p}'"
    ckpt = _load(p, "checkpoint")
    if not isinstance(ckpt, dict):
        raise ModelError(f"{where}: expected a dict with the model state_dict and config, found {type(ckpt).__name__}")
    if ckpt.get("format") == "mlpot-model":
        raise ModelError(f"{where}: is already a frozen model file, not a training checkpoint")
    state = _state_dict(ckpt, where)
    if state is None:
        raise ModelError(f"{where}: no model state_dict (expected key 'model'); keys are {sorted(map(str, ckpt))}")
    config = ckpt.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{where}: field 'config': invalid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ModelError(f"{where}: field 'config': expected the training config (JSON string or dict)")
    if "model" not in config and "type_map" in config and "descriptor" in config:
        config = {"model": config}  # a bare model section
    if not isinstance(config.get("model"), dict):
        raise ModelError(f"{where}: field 'config.model': expected the model section of the training config")
    step = ckpt.get("step")
    rng = ckpt.get("rng_torch")
    return Checkpoint(
        model=state,
        config=config,
        step=int(step) if isinstance(step, (int, float)) else None,
        optimizer=ckpt.get("optimizer") if isinstance(ckpt.get("optimizer"), dict) else None,
        rng_torch=rng if isinstance(rng, torch.Tensor) else None,
        mlpot_version=ckpt.get("mlpot_version"),
        path=p,
        min_nbor_dist=float(ckpt["min_nbor_dist"]) if isinstance(ckpt.get("min_nbor_dist"), (int, float)) else None,
    )


def is_frozen_model(path: PathLike) -> bool:
    """Whether ``path`` is a frozen mlpot model file (``mlpot freeze``), not a training checkpoint."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable: read() words the error
        return False
    return isinstance(payload, dict) and payload.get("format") == "mlpot-model"


def read_weights(path: PathLike, what: str = "init_model") -> dict[str, torch.Tensor]:
    """The state dict of a training checkpoint or of a frozen mlpot model (``init_model``)."""
    p = Path(path)
    ckpt = _load(p, what)
    if isinstance(ckpt, dict) and ckpt.get("format") == "mlpot-model":
        from mlpot.export import load_model

        model = load_model(p, device="cpu")
        if getattr(model, "compressed", False):
            raise ModelError(f"{what} '{p}': is a compressed model (mlpot compress), which cannot be trained; "
                             "start from the uncompressed model file")
        return model.state_dict()
    state = _state_dict(ckpt, f"{what} '{p}'") if isinstance(ckpt, dict) else None
    if state is None:
        raise ModelError(f"{what} '{p}': expected a training checkpoint or a frozen mlpot model")
    return state


__all__ = ["Checkpoint", "FORMAT", "write", "read", "read_weights", "is_frozen_model", "find", "prune", "numbered_path", "latest_path"]
