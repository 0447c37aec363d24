"""One error type per layer. Every message names the file or field and what was expected.

The CLI catches :class:`MlpotError` and prints its message as one line (exit status 2);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Iterable


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


class WorkflowError(MlpotError):
    """A workflow that cannot run as given (bad task list, a task needing resources the machine lacks)."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" (did you mean `dt`?)"`` for the closest candidate to a mistyped ``word``, or ``""``.

    Used by every "unknown key / unknown name" message so that ``mlpot train`` and ``mlpot md`` word
    the same mistake the same way."""
    import difflib

    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean `{match[0]}`?)" if match else ""
