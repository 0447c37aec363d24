"""Read the data of a TorchScript archive (``torch.jit.save``) without executing anything.

A TorchScript ``.pth`` is a zip archive ``<name>/data.pkl`` (the module tree, pickle protocol 2),
``<name>/data/<key>`` (raw little-endian tensor storages), ``<name>/code/...`` (the TorchScript
program: never read here), ``<name>/constants.pkl`` (constants of the program: not read) and a few
bookkeeping entries. :func:`read_script_archive` unpickles ``data.pkl`` with a restricted
:class:`pickle.Unpickler` whose ``find_class`` allows only:

* ``__torch__.*`` classes (the scripted modules): mapped to an inert :class:`ScriptObject` that only
  records its class name and state (no user code exists on this side to call);
* ``torch._utils._rebuild_tensor_v2``: replaced by our own strided view onto a storage;
* ``torch.<Type>Storage``: replaced by a dtype marker; storages are read from ``data/<key>``;
* ``collections.OrderedDict`` and the ``torch.jit._pickle`` list/type-tag helpers (replaced by
  plain ``list`` / identity functions).

Any other global (``os.system``, ``builtins.eval``, ...) raises :class:`~mlpot.errors.ModelError`
naming the file and the global, before anything is called.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mlpot.errors import ModelError

#: storage class name → numpy dtype (little-endian, as ``torch.jit.save`` writes)
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}
#: largest data.pkl read (bytes): a module tree is a few hundred KiB at most
_MAX_PICKLE = 64 * 2**20


class ScriptObject:
    """An inert record of one scripted object: ``qualname`` (``__torch__.a.b.Class``) and ``state``
    (the attribute dict TorchScript pickled for it). Constructed by the restricted unpickler only."""

    qualname = "?"

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<ScriptObject {self.qualname}>"


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _identity_tag(value: Any, *_: Any) -> Any:
    return value


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, where: str) -> None:
        super().__init__(io.BytesIO(data))
        self.zf, self.prefix, self.where = zf, prefix, where
        self.classes: dict[str, type] = {}
        self.storages: dict[str, Any] = {}

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        if module == "__torch__" or module.startswith("__torch__."):
            qual = f"{module}.{name}"
            if qual not in self.classes:
                self.classes[qual] = type(name, (ScriptObject,), {"qualname": qual})
            return self.classes[qual]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self.rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle":
            if name == "restore_type_tag":
                return _identity_tag
            if name in ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist"):
                return list
        raise ModelError(
            f"{self.where}: its data.pkl refers to the Python global '{module}.{name}', which a TorchScript model "
            "of tensors and modules does not need; refused without executing anything (a crafted or foreign file?)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise ModelError(f"{self.where}: unexpected persistent id {str(pid)[:80]!r} in data.pkl (expected a tensor storage)")
        _, stype, key, _location, numel = pid
        if key in self.storages:
            return self.storages[key]
        entry = f"{self.prefix}data/{key}"
        try:
            raw = self.zf.read(entry)
        except KeyError:
            raise ModelError(f"{self.where}: storage '{entry}' named by data.pkl is missing (truncated file?)") from None
        if not isinstance(numel, int) or len(raw) != numel * stype.dtype.itemsize:
            raise ModelError(f"{self.where}: storage '{entry}' holds {len(raw)} bytes, expected {numel} × {stype.name}")
        arr = np.frombuffer(raw, dtype=stype.dtype).astype(stype.dtype.newbyteorder("="), copy=True)
        self.storages[key] = arr
        return arr

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> Any:
        import torch

        if not isinstance(storage, np.ndarray):
            raise ModelError(f"{self.where}: a tensor in data.pkl is not backed by a storage of the archive")
        try:
            offset, size, stride = int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
        except (TypeError, ValueError):
            raise ModelError(f"{self.where}: a tensor in data.pkl has a malformed size/stride") from None
        if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
            raise ModelError(f"{self.where}: a tensor in data.pkl has size {size}, stride {stride}, offset {offset}")
        last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
        if last >= storage.size:
            raise ModelError(f"{self.where}: a tensor in data.pkl reaches past its storage ({last} >= {storage.size})")
        base = torch.from_numpy(storage)
        return torch.as_strided(base, size, stride, offset).clone()


def is_script_archive(names: list[str]) -> bool:
    """Whether the zip member ``names`` are those of a TorchScript archive (a ``code/`` folder and
    ``constants.pkl`` beside ``data.pkl``)."""
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def read_script_archive(path: str | Path, where: str) -> ScriptObject:
    """The root :class:`ScriptObject` of the TorchScript archive ``path`` (tensors as torch tensors).

    ModelError (one line, prefixed by ``where``) for an unreadable archive, a missing ``data.pkl``,
    a global other than those listed in the module docstring, or a malformed storage/tensor."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkls) != 1:
                raise ModelError(f"{where}: a zip archive without exactly one '<name>/data.pkl' (found {pkls[:3]}); not a TorchScript model")
            prefix = pkls[0][: -len("data.pkl")]
            info = zf.getinfo(pkls[0])
            if info.file_size > _MAX_PICKLE:
                raise ModelError(f"{where}: data.pkl is {info.file_size} bytes, more than a model tree needs")
            byteorder = f"{prefix}byteorder"
            if byteorder in names and zf.read(byteorder).strip() not in (b"little", b""):
                raise ModelError(f"{where}: tensors stored {zf.read(byteorder)!r}-endian; only little-endian archives are read")
            unpickler = _ArchiveUnpickler(zf.read(pkls[0]), zf, prefix, where)
            try:
                root = unpickler.load()
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - any malformed pickle
                reason = " ".join(str(exc).split())[:160]
                raise ModelError(f"{where}: cannot read data.pkl ({type(exc).__name__}: {reason}); truncated or corrupted") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{where}: not a readable zip archive ({exc}); truncated, corrupted or of another type") from None
    if not isinstance(root, ScriptObject):
        raise ModelError(f"{where}: data.pkl holds a {type(root).__name__}, expected a scripted module")
    return root


def walk_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, tensor) for every tensor below ``obj`` (ScriptObject states, dicts, lists), in
    the naming of ``Module.state_dict``: attribute names joined by dots, list items by their index."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix, obj
        return
    if isinstance(obj, ScriptObject):
        obj = obj.state
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, str):
                yield from walk_tensors(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from walk_tensors(value, f"{prefix}.{i}" if prefix else str(i))


__all__ = ["ScriptObject", "read_script_archive", "is_script_archive", "walk_tensors"]
