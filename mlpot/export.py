"""Freeze and load models: one self-contained, safely loadable model file.

File layout (written with :func:`torch.save`, read back with ``torch.load(..., weights_only=True)``, so
loading never unpickles an arbitrary object and never needs the training code or the data)::

    {
      "format":         "mlpot-model",          # format tag
      "format_version": 1,                      # int, bumped on incompatible changes
      "metadata":       "<JSON string>",        # type_map, rcut, precision, model_config,
                                                # training_config, mlpot_version, created, ...
      "tensors":        {name: torch.Tensor},   # the model's state_dict (weights, statistics, bias)
      "digest":         "<sha256 hex>",         # over format tag/version, metadata and tensors
    }

The SHA-256 digest covers, in this order: the format tag and version, then for every tensor in
sorted name order its name, dtype, shape and raw bytes, then the metadata string. :func:`load_model`
recomputes it and refuses a file whose digest does not match (tampered or corrupted), a truncated file,
a file that is not a weights-only torch archive, and an archive that is not an mlpot model, each
with one :class:`~mlpot.errors.ModelError` line naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

import torch

from mlpot.atomic_io import atomic_path
from mlpot.device import resolve_device
from mlpot.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from mlpot.train.checkpoint import Checkpoint

#: the format tag stored in every model file
FORMAT_TAG = "mlpot-model"
#: the newest file format version this code writes and reads
FORMAT_VERSION = 1

def model_precision(model: torch.nn.Module) -> str:
    """``"float64"`` or ``"float32"``: the model's precision (``model.dtype``)."""
    return str(model.dtype).replace("torch.", "")


def tensors_digest(tensors: Mapping[str, torch.Tensor], metadata: str, format_version: int = FORMAT_VERSION) -> str:
    """SHA-256 (hex) over the format tag/version, each tensor's name, dtype, shape and bytes
    (sorted by name), and the metadata JSON string."""
    h = hashlib.sha256()
    h.update(f"{FORMAT_TAG}\0{int(format_version)}\0".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}\0{str(t.dtype)}\0{tuple(tensors[name].shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(b"\0")
    h.update(metadata.encode("utf-8"))
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def build_metadata(model: torch.nn.Module, metadata: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The metadata dict stored with ``model``: type_map, rcut (Å), precision, model_config (the
    DeePMD-style ``model`` section, from ``model.get_config()``), mlpot_version, created (UTC ISO time),
    plus the caller's ``metadata`` (e.g. ``training_config``, ``step``); computed keys win."""
    from mlpot import __version__

    try:
        model_config = model.get_config()  # type: ignore[operator]
    except AttributeError:
        raise ModelError(f"save_model: expected an EnergyModel with get_config(), got {type(model).__name__}") from None
    meta: dict[str, Any] = dict(metadata or {})
    meta.setdefault("training_config", None)
    meta.update(
        type_map=[str(t) for t in model.type_map],  # type: ignore[union-attr]
        rcut=float(model.rcut),  # type: ignore[arg-type]
        precision=model_precision(model),
        model_config=model_config,
        mlpot_version=__version__,
    )
    r_min = getattr(model, "min_nbor_dist", None)
    if r_min is not None:  # the table range of `mlpot compress` (Å)
        meta["min_nbor_dist"] = float(r_min)
    record = getattr(model.descriptor, "compression", None)  # type: ignore[union-attr]
    if record is not None:
        meta["compression"] = record
    else:
        meta.pop("compression", None)
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return meta


def save_model(model: torch.nn.Module, path: str | os.PathLike, metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model`` (an :class:`mlpot.model.EnergyModel`) as one self-contained model file.

    ``metadata``: extra JSON-serialisable entries (``training_config``: the full training config,
    ``step``, ...); the type_map, rcut, precision, model config and mlpot version are added from the
    model. The write is atomic. Returns the path written.
    """
    path = Path(path)
    meta = build_metadata(model, metadata)
    try:
        meta_str = json.dumps(meta, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: model metadata is not JSON serialisable ({exc})") from None
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"{path}: state_dict entry '{name}' is a {type(value).__name__}, expected a tensor")
        tensors[name] = value.detach().to("cpu").clone()
    payload = {
        "format": FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "metadata": meta_str,
        "tensors": tensors,
        "digest": tensors_digest(tensors, meta_str),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a model file without building the model: ``(tensors, metadata)``.

    Raises :class:`ModelError` (one line naming the file) for a missing, unreadable, truncated,
    non-model, unsupported-version or tampered file.
    """
    p = Path(path)
    where = f"model file '{p}'"
    if not p.exists():
        raise ModelError(f"{where}: no such file")
    if p.is_dir():
        raise ModelError(f"{where}: is a directory, expected a model file written by 'mlpot freeze'")
    if p.stat().st_size == 0:
        raise ModelError(f"{where}: is empty")
    hint = deepmd_hint(p)
    if hint is not None and not _is_torch_archive(p):  # .dp (HDF5), .yaml, .pb: never a torch file
        raise ModelError(f"{where}: {hint}")
    if _is_torchscript(p):  # torch.load would hand it to torch.jit.load
        raise ModelError(f"{where}: {hint or 'is a TorchScript archive, not an mlpot model file (written by mlpot freeze)'}")
    try:
        with warnings.catch_warnings():  # torch's advice about the file is not the user's business
            warnings.simplefilter("ignore")
            payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure to read is one user-facing error
        hint = deepmd_hint(p)
        raise ModelError(f"{where}: {hint or 'not a readable mlpot model file (' + describe_unreadable(p) + ')'}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
        found = f"a {type(payload).__name__}" if not isinstance(payload, dict) else f"keys {sorted(map(str, payload))[:8]}"
        hint = deepmd_hint(p, payload)
        if hint is not None:
            raise ModelError(f"{where}: {hint}")
        hint = ""
        if isinstance(payload, dict) and any(k in payload for k in ("model", "model_state_dict", "state_dict")):
            hint = " (it looks like a training checkpoint: run 'mlpot freeze -c CKPT -o model.pt' first)"
        raise ModelError(f"{where}: not an mlpot model file: expected format tag '{FORMAT_TAG}', found {found}{hint}")
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelError(f"{where}: invalid format_version {version!r}, expected a positive integer")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{where}: format version {version} is newer than this mlpot supports ({FORMAT_VERSION}); upgrade mlpot"
        )
    tensors, meta_str, digest = payload.get("tensors"), payload.get("metadata"), payload.get("digest")
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise ModelError(f"{where}: field 'tensors': expected a dict of name -> tensor")
    if not isinstance(meta_str, str):
        raise ModelError(f"{where}: field 'metadata': expected a JSON string, found {type(meta_str).__name__}")
    if not isinstance(digest, str):
        raise ModelError(f"{where}: field 'digest': expected a SHA-256 hex string, found {type(digest).__name__}")
    actual = tensors_digest(tensors, meta_str, version)
    if actual != digest:
        raise ModelError(
            f"{where}: SHA-256 digest mismatch (stored {digest[:16]}..., computed {actual[:16]}...): "
            "the file was modified or corrupted after it was written"
        )
    try:
        meta = json.loads(meta_str)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: field 'metadata': invalid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{where}: field 'metadata': expected a JSON object, found {type(meta).__name__}")
    for key in ("type_map", "rcut", "model_config"):
        if key not in meta:
            raise ModelError(f"{where}: field 'metadata.{key}' is missing")
    return tensors, meta


_ZIP, _PICKLE, _HDF5 = b"PK\x03\x04", b"\x80", b"\x89HDF\r\n\x1a\n"
_DEEPMD_SUFFIXES = (".pth", ".pb", ".dp", ".yaml", ".yml")


def _head(p: Path, n: int = 8) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _is_torch_archive(p: Path) -> bool:
    head = _head(p)
    return head.startswith(_ZIP) or head.startswith(_PICKLE)


def _is_torchscript(p: Path) -> bool:
    """Whether ``p`` is a TorchScript archive (a zip with ``code/`` and ``constants.pkl``, e.g. DeePMD-kit's .pth)."""
    if not _head(p).startswith(_ZIP):
        return False
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def describe_unreadable(p: Path) -> str:
    """Why a file torch's weights-only loader refused is no model file, in a few words (never torch's own
    advice to load it with ``weights_only=False``, which would run arbitrary code from the file)."""
    head = _head(p, 512)
    if head.startswith(_ZIP):
        return ("a torch archive that is truncated, corrupted, or holds Python objects other than tensors and "
                "plain data, which the weights-only loader refuses; expected a file written by 'mlpot freeze'")
    if head.startswith(_PICKLE):
        return ("a Python pickle holding objects other than tensors and plain data, which the weights-only loader refuses; "
                "expected a file written by 'mlpot freeze'")
    if head.startswith(_HDF5):
        return "an HDF5 file, not a torch archive; expected a file written by 'mlpot freeze'"
    try:
        head.decode("utf-8")
        return "a text file, not a torch archive; expected a file written by 'mlpot freeze'"
    except UnicodeDecodeError:
        return "not a torch archive; expected a file written by 'mlpot freeze'"


def deepmd_hint(p: Path, payload: Any = None) -> Optional[str]:
    """The one-line advice for a DeePMD-kit model given where an mlpot model is expected, else None:
    a ``.dp``/``.yaml`` (dpmodel) or a frozen / compressed ``.pth`` (TorchScript), which
    :func:`mlpot.interop.deepmd.import_deepmd` reads, a ``.pb`` (TensorFlow) that ``dp convert-backend``
    turns into a ``.dp`` first, or a
    DeePMD-kit PyTorch training checkpoint (a ``model`` state dict with ``_extra_state``)."""
    suffix = p.suffix.lower()
    convert = f"convert it with 'mlpot import-deepmd {p} -o model.pt'"
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict) and any(
        str(k).endswith("_extra_state") for k in payload["model"]
    ):
        return f"is a DeePMD-kit training checkpoint, not an mlpot model file: {convert}"
    if suffix == ".pth" and not (isinstance(payload, dict) and payload.get("format") == FORMAT_TAG):
        return (f"looks like a DeePMD-kit frozen or compressed TorchScript model (.pth), not an mlpot model file: "
                f"{convert}")
    if suffix == ".pb" and not (isinstance(payload, dict) and payload.get("format") == FORMAT_TAG):
        return (f"looks like a DeePMD-kit frozen TensorFlow model (.pb), not an mlpot model file: convert it with "
                f"'dp convert-backend {p} model.dp' and then 'mlpot import-deepmd model.dp -o model.pt'")
    if suffix in (".dp", ".yaml", ".yml"):
        return f"looks like a DeePMD-kit model ({suffix}), not an mlpot model file: {convert}"
    return None


def load_model(path: str | os.PathLike, device: Optional[str | torch.device] = None) -> torch.nn.Module:
    """Load a model file written by :func:`save_model` (``mlpot freeze``).

    Returns an :class:`mlpot.model.EnergyModel` in eval mode on ``device`` (default
    :func:`mlpot.device.resolve_device`: CUDA when available, else CPU) with ``model.metadata`` (dict: type_map, rcut, precision, model_config,
    training_config, mlpot_version, created, ...). Raises :class:`ModelError` for a bad file.
    """
    from mlpot.errors import MlpotError
    from mlpot.model import EnergyModel

    tensors, meta = read_model_file(path)
    where = f"model file '{Path(path)}'"
    try:
        model = EnergyModel.from_config(meta["model_config"])
    except MlpotError as exc:
        raise ModelError(f"{where}: its model config cannot be built: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{where}: its model config cannot be built ({type(exc).__name__}: {exc})") from None
    # the module's own float dtype follows the recorded precision (from_config builds it so)
    if meta.get("compression") is not None:  # tabulated embedding nets (mlpot compress)
        if not callable(getattr(model.descriptor, "enable_compression", None)):
            raise ModelError(f"{where}: records a compressed descriptor of a type that has no tables")
        try:
            model.descriptor.enable_compression(meta["compression"])
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from None
    if meta.get("min_nbor_dist") is not None:
        model.min_nbor_dist = float(meta["min_nbor_dist"])
    expected = set(model.state_dict().keys())
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise ModelError(
            f"{where}: tensors do not match the model config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{where}: tensors do not fit the model config ({' '.join(str(exc).split())[:300]})") from None
    model = model.to(resolve_device(device))
    model.eval()
    model.metadata = meta  # type: ignore[assignment]
    return model


def freeze(checkpoint: "Union[str, os.PathLike, Checkpoint]", path: str | os.PathLike) -> Path:
    """The one freeze: build the model from a training checkpoint's config, load its weights and write
    the model file ``path`` (:func:`save_model`) with the checkpoint's training config and step.

    ``checkpoint``: a checkpoint file, a training output directory (its newest checkpoint) or a
    :class:`mlpot.train.checkpoint.Checkpoint` (e.g. the trainer's, in memory). Returns the path.
    """
    from mlpot.errors import MlpotError
    from mlpot.model import EnergyModel
    from mlpot.train import checkpoint as ckpt_mod

    ckpt = checkpoint if isinstance(checkpoint, ckpt_mod.Checkpoint) else ckpt_mod.read(checkpoint)
    where = f"checkpoint '{ckpt.path}'" if ckpt.path is not None else "checkpoint"
    try:
        model = EnergyModel.from_config(ckpt.config["model"], device="cpu")
    except MlpotError as exc:
        raise ModelError(f"{where}: its model config cannot be built: {exc}") from None
    try:
        model.load_state_dict(ckpt.model, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{where}: weights do not fit the model config ({' '.join(str(exc).split())[:300]})") from None
    return save_model(model, path, metadata=ckpt.metadata())
