"""``mlpot freeze``: turn a training checkpoint into one self-contained model file.

    mlpot freeze -c train/model.ckpt.pt -o model.pt

The checkpoint is the trainer's ``torch.save`` dict (read with ``weights_only=True``): the model
``state_dict`` (key ``model``), the training config as a JSON string (key ``config``; its ``model``
section builds the network) and the ``step``. ``-c`` may also name the training output directory;
the newest ``*.ckpt.pt`` (or ``checkpoint*.pt``) in it is used. The model file (see
:mod:`mlpot.export`) carries weights, statistics, type_map, rcut, precision, the model and full
training config and the mlpot version.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: state_dict keys accepted in a checkpoint, in order of preference
_STATE_KEYS = ("model", "model_state_dict", "state_dict")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--checkpoint", required=True,
                        help="training checkpoint file, or the training output directory (newest checkpoint)")
    parser.add_argument("-o", "--output", default="model.pt", help="model file to write (default model.pt)")


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself, or for a directory its newest ``*.ckpt.pt`` / ``checkpoint*.pt`` / ``*.pt`` file."""
    from mlpot.errors import ModelError

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


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """``(state_dict, config, step)`` of a trainer checkpoint, loaded weights-only; ModelError if not one."""
    import torch

    from mlpot.errors import ModelError

    p = find_checkpoint(path)
    where = f"checkpoint '{p}'"
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"{where}: cannot be read as a weights-only torch checkpoint ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]})"
        ) from None
    if not isinstance(ckpt, dict):
        raise ModelError(f"{where}: expected a dict with the model state_dict and config, found {type(ckpt).__name__}")
    if ckpt.get("format") == "mlpot-model":
        raise ModelError(f"{where}: is already a frozen model file, not a training checkpoint")
    state = next((ckpt[k] for k in _STATE_KEYS if isinstance(ckpt.get(k), dict)), None)
    if state is None:
        raise ModelError(f"{where}: no model state_dict (expected key 'model'); keys are {sorted(map(str, ckpt))}")
    # unwrap DistributedDataParallel / compiled prefixes
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
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
    return state, config, ckpt.get("step")


def freeze(checkpoint: str | Path, output: str | Path) -> Path:
    """Build the model from the checkpoint's config, load its weights, and write the model file."""
    from mlpot.errors import MlpotError, ModelError
    from mlpot.export import save_model
    from mlpot.model import EnergyModel

    state, config, step = read_checkpoint(checkpoint)
    where = f"checkpoint '{find_checkpoint(checkpoint)}'"
    try:
        model = EnergyModel.from_config(config["model"])
    except MlpotError as exc:
        raise ModelError(f"{where}: its model config cannot be built: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{where}: weights do not fit the model config ({' '.join(str(exc).split())[:300]})") from None
    meta = {"training_config": config, "step": step if isinstance(step, (int, float)) else None,
            "source_checkpoint": str(Path(checkpoint))}
    return save_model(model, output, metadata=meta)


def run(args: argparse.Namespace) -> int:
    out = freeze(args.checkpoint, args.output)
    from mlpot.export import read_model_file

    _, meta = read_model_file(out)
    print(
        f"froze {find_checkpoint(args.checkpoint)} (step {meta.get('step')}) -> {out}: type_map {meta['type_map']}, "
        f"rcut {meta['rcut']} Å, {meta['precision']}"
    )
    return 0
