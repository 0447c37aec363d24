"""Element symbol → type index, written once (one error type, one wording).

Every layer that maps element names to a model's or dataset's ``type_map`` (readers, the ASE
calculator, ``mlpot test``, md_engine structures) calls :func:`type_indices` or :func:`remap_types`.
An element missing from the type_map is an :class:`UnknownElementError` (a DataError and, since the
model is what cannot handle it, a ModelError too) whose message names where it happened, the
elements and the type_map.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from mlpot.errors import DataError, ModelError


class UnknownElementError(DataError, ModelError):
    """An element that is not in the type_map it must be mapped into."""


def unknown_element_message(where: str, missing: Sequence[str], type_map: Sequence[str], owner: str = "the model's") -> str:
    """The one wording: ``"<where>: element(s) ['Fe'] not in the model's type_map ['O', 'H']"``."""
    return f"{where}: element(s) {list(missing)} not in {owner} type_map {list(type_map)}"


def check_elements(symbols: Iterable[str], type_map: Sequence[str], where: str, owner: str = "the model's") -> None:
    """Raise :class:`UnknownElementError` unless every symbol is in ``type_map``."""
    known = set(str(t) for t in type_map)
    missing = [s for s in dict.fromkeys(str(s) for s in symbols) if s not in known]
    if missing:
        raise UnknownElementError(unknown_element_message(where, missing, [str(t) for t in type_map], owner))


def type_indices(symbols: Sequence[str], type_map: Sequence[str], where: str, owner: str = "the model's") -> np.ndarray:
    """Type index of each symbol in ``type_map``, (n,) int64."""
    type_map = [str(t) for t in type_map]
    check_elements(symbols, type_map, where, owner)
    index = {s: i for i, s in enumerate(type_map)}
    return np.fromiter((index[str(s)] for s in symbols), dtype=np.int64, count=len(symbols))


def remap_types(
    atom_types: np.ndarray, from_map: Sequence[str], to_map: Sequence[str], where: str, owner: str = "the model's"
) -> np.ndarray:
    """``atom_types`` (indices into ``from_map``) re-indexed into ``to_map``. Only the elements that
    actually occur must exist in ``to_map``."""
    from_map = [str(t) for t in from_map]
    atom_types = np.asarray(atom_types, dtype=np.int64)
    present = [from_map[t] for t in np.unique(atom_types)]
    check_elements(present, to_map, where, owner)
    to_index = {s: i for i, s in enumerate(str(t) for t in to_map)}
    lut = np.array([to_index.get(s, -1) for s in from_map], dtype=np.int64)
    return lut[atom_types]


__all__ = ["UnknownElementError", "type_indices", "remap_types", "check_elements", "unknown_element_message"]
