"""One error type per layer. Every message names the file or field and what was expected.

The CLI catches :class:`MlpotError` and prints its message as one line (exit status 2);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MlpotError(Exception):
    """Base class of all user-facing mlpot errors."""


class DataError(MlpotError):
    """Bad or unreadable data: a file, a field, a shape, a value."""


class ConfigError(MlpotError):
    """An invalid configuration: names the key path (``model.descriptor.rcut``) and what was expected."""


class ModelError(MlpotError):
    """A model that cannot be built, loaded or evaluated as asked (unknown element, sel overflow, bad file)."""


class SimulationError(MlpotError):
    """An MD run that cannot go on (NaN forces, atoms too close, lost atoms, neighbor overflow)."""
