"""Data formats as a registry: a format is ONE module in this package.

A module here calls :func:`register` with the format's canonical name, its aliases, a reader, a writer
and the file suffixes it owns; every module of the package is imported when the package is, so
:mod:`mlpot.data.io` (``read``, ``write``, ``guess_format``), ``mlpot convert --format`` and its help
see it without further edits::

    # mlpot/data/formats/myformat.py
    from mlpot.data.formats import register

    def read(path, type_map): ...            # -> list[LabeledFrames] (re-indexed into type_map if given)
    def write(systems, path, append=False): ...

    register("myformat", aliases=("mf",), read=read, write=write, suffixes=(".mf",),
             description="my format")

Reader: ``read(path: Path, type_map: list[str] | None) -> list[LabeledFrames]``; writer:
``write(systems: list[LabeledFrames], path: Path, append: bool) -> None`` (atomic,
:func:`mlpot.atomic_io.atomic_path`); optional ``open(path, type_map) -> list[Dataset]`` for lazy
reading (training); optional ``steps(path) -> list[np.ndarray]`` for a trajectory that records
the MD step of each frame (``mlpot model-devi``'s step column). Read-format guessing (:func:`guess`) tries the formats by decreasing
``priority``: ``match(path)`` if given, else the suffixes; the ``fallback`` format takes the rest.
Every error is a :class:`~mlpot.errors.DataError`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from mlpot.errors import DataError
from mlpot.registry import Registry


@dataclass(frozen=True)
class Format:
    """One registered data format (see the module docstring)."""

    name: str
    read: Optional[Callable[..., list]] = None
    write: Optional[Callable[..., None]] = None
    open: Optional[Callable[..., list]] = None
    #: optional ``steps(path) -> list[np.ndarray]``: the MD step of every frame, one array per system read
    steps: Optional[Callable[..., list]] = None
    suffixes: tuple[str, ...] = ()
    match: Optional[Callable[[Path], bool]] = None
    priority: int = 0
    fallback: bool = False
    default_write: bool = False
    description: str = ""

    def matches(self, path: Path) -> bool:
        """Whether ``path`` looks like this format (``match``, else the suffixes)."""
        if self.match is not None:
            return bool(self.match(path))
        return bool(self.suffixes) and path.name.lower().endswith(self.suffixes)


#: every data format by name (aliases included); lookups of an unknown name raise DataError
FORMATS: Registry[Format] = Registry("data format", error=DataError)


def register(name: str, *, aliases: tuple[str, ...] = (), **fields: Any) -> Format:
    """Register a :class:`Format` ``name`` (fields as in :class:`Format`); returns it."""
    fmt = Format(name=name, **fields)
    FORMATS.add(name, fmt, aliases=tuple(aliases))
    return fmt


def read_formats() -> list[str]:
    """Canonical names of the formats that can be read."""
    return [e.name for e in FORMATS if e.obj.read is not None]


def write_formats() -> list[str]:
    """Canonical names of the formats that can be written."""
    return [e.name for e in FORMATS if e.obj.write is not None]


def guess(path: Path) -> Format:
    """The read format of ``path`` (see the module docstring)."""
    formats = sorted((e.obj for e in FORMATS), key=lambda f: -f.priority)
    for f in formats:
        if not f.fallback and f.read is not None and f.matches(path):
            return f
    for f in formats:
        if f.fallback:
            return f
    raise DataError(f"{path}: cannot tell its data format; expected one of {read_formats()}")


def guess_write(path: Path) -> Format:
    """The write format of ``path``: the writable format owning its suffix, else the default one."""
    writable = [e.obj for e in FORMATS if e.obj.write is not None]
    for f in writable:
        if f.suffixes and path.name.lower().endswith(f.suffixes):
            return f
    for f in writable:
        if f.default_write:
            return f
    raise DataError(f"{path}: cannot tell the output format; expected one of {write_formats()}")


def help_text(writable: bool = False) -> str:
    """``name (aliases): description`` of every (writable) format, for command-line help."""
    parts = []
    for e in FORMATS:
        if writable and e.obj.write is None:
            continue
        alias = f" ({', '.join(e.aliases)})" if e.aliases else ""
        parts.append(f"{e.name}{alias}")
    return ", ".join(parts)


for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["FORMATS", "Format", "register", "guess", "guess_write", "read_formats", "write_formats", "help_text"]
