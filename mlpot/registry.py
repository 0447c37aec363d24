"""Named component registries: descriptors, data formats, MD potentials, integrators, ...

A component registers itself where it is defined, with its canonical name, its aliases and (for
configurable components) its pydantic config class::

    DESCRIPTORS = Registry("descriptor")

    @DESCRIPTORS.register("se_e2_a", aliases=("se_a",), config=SeE2AConfig)
    class DescriptorSeA(...): ...

so that adding a component touches its own file (plus, at most, one mapping elsewhere). Lookups of
an unknown name raise the registry's error type (ConfigError by default) naming the key path, the
known names and the closest match ("did you mean ...?").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

from mlpot.errors import ConfigError, MlpotError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component: canonical ``name``, the object, its config class and aliases."""

    name: str
    obj: T
    config: Optional[type] = None
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A name → component table with aliases (see the module docstring)."""

    def __init__(self, kind: str, error: type[MlpotError] = ConfigError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, Entry[T]] = {}
        self._alias: dict[str, str] = {}

    def register(
        self, name: str, *, aliases: tuple[str, ...] = (), config: Optional[type] = None, **meta: Any
    ) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` and ``aliases``; returns ``obj`` unchanged.
        Registering a taken name again replaces the entry (a test may redefine a toy component)."""

        def deco(obj: T) -> T:
            self.add(name, obj, aliases=aliases, config=config, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, *, aliases: tuple[str, ...] = (), config: Optional[type] = None, **meta: Any) -> None:
        """Non-decorator form of :meth:`register`."""
        for a in (name, *aliases):
            owner = self._alias.get(a)
            if owner is not None and owner != name:
                raise ValueError(f"{self.kind} registry: {a!r} is already a name of {owner!r}")
        self._entries[name] = Entry(name, obj, config, tuple(aliases), dict(meta))
        for a in (name, *aliases):
            self._alias[a] = name

    def remove(self, name: str) -> None:
        """Unregister ``name`` and its aliases (tests that register toy components clean up)."""
        entry = self._entries.pop(self.canonical(name))
        for a in (entry.name, *entry.aliases):
            self._alias.pop(a, None)

    def canonical(self, name: Any, where: Optional[str] = None) -> str:
        """The canonical name for ``name`` or an alias; the registry's error otherwise."""
        if isinstance(name, str) and name in self._alias:
            return self._alias[name]
        where = where or self.kind
        raise self.error(
            f"{where}: unknown {self.kind} {name!r}; expected one of {self.names(aliases=True)}"
            + (did_you_mean(name, self._alias) if isinstance(name, str) else "")
        )

    def get(self, name: Any, where: Optional[str] = None) -> Entry[T]:
        """The entry for ``name`` (canonical or alias)."""
        return self._entries[self.canonical(name, where)]

    def __getitem__(self, name: str) -> T:
        return self.get(name).obj

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._alias

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(list(self._entries.values()))

    def names(self, aliases: bool = False) -> list[str]:
        """Canonical names (sorted); with ``aliases`` every accepted spelling."""
        return sorted(self._alias if aliases else self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


__all__ = ["Registry", "Entry"]
