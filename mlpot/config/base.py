"""The shared base of every mlpot input file (training and MD): one strict model, one reader, one
error formatter, one path rule.

* :class:`StrictModel`: unknown keys are errors (with the closest known key suggested, "did you mean
  `dt`?"), trees are immutable after validation (``frozen``; derive changed copies with
  ``model_copy(update=...)``), DeePMD-kit's ``_comment`` key is accepted everywhere, and, as DeePMD-kit
  does, any other key starting with ``_`` (``_comment1``, ...) is dropped.
* :func:`read_tree`: a JSON or YAML file → dict, :class:`~mlpot.errors.ConfigError` naming the file.
* :func:`validate`: ``cls.model_validate`` whose pydantic errors become ONE ConfigError line naming the
  key path of every problem (``training.numb_stepz: unknown key (did you mean `numb_steps`?)``).
* :func:`resolve_input_path`: the one path rule: a relative path in an input file is relative to the
  folder of that input file (``base_dir`` in the validation context); for a dict given in Python
  (no file), relative to the current directory.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, TypeVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from mlpot.errors import ConfigError, did_you_mean

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config section (see the module docstring).

    Subclasses may override :meth:`migrate` (a classmethod ``dict -> dict`` run before validation,
    e.g. DeePMD-kit's key aliases) — the unknown-key check runs on its result."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, validate_default=True)

    comment: Optional[str] = Field(default=None, alias="_comment", exclude=True)

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Rewrite raw input keys before validation (default: unchanged)."""
        return data

    @classmethod
    def known_keys(cls) -> list[str]:
        """Every key this section accepts (field names and their aliases)."""
        keys = []
        for name, field in cls.model_fields.items():
            keys.append(field.alias or name)
            if field.alias and field.alias != name:
                keys.append(name)
        return keys

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = cls.migrate(dict(data))
        known = cls.known_keys()
        # DeePMD-kit drops every key starting with "_" before its strict check (dargs trim_pattern "_*";
        # its example inputs carry "_comment1", "_comment2", ...): so does mlpot
        data = {k: v for k, v in data.items() if k in known or not (isinstance(k, str) and k.startswith("_"))}
        public = [k for k in known if not k.startswith("_") and k != "comment"]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("unknown_key", "unknown key{hint}", {"hint": _hint(k, public)}),
                        loc=(k,),
                        input=data[k],
                    )
                    for k in unknown
                ],
            )
        return data


def _hint(key: Any, known: Sequence[str]) -> str:
    hint = did_you_mean(str(key), known)
    return hint or f" (expected one of {', '.join(sorted(known))})"


def section_error(cls_name: str, errors: Sequence[tuple[tuple, str, Any]]) -> ValidationError:
    """A pydantic ValidationError of ``(loc, message, input)`` triples (for validators that check
    several keys of a section at once and must name each key path)."""
    return ValidationError.from_exception_data(
        cls_name,
        [
            InitErrorDetails(type=PydanticCustomError("mlpot_error", "{msg}", {"msg": msg}), loc=tuple(loc), input=value)
            for loc, msg, value in errors
        ],
    )


def relocated(exc: ValidationError, prefix: Sequence[Any], cls_name: str = "section") -> ValidationError:
    """``exc`` with every error's key path prefixed by ``prefix`` and its message already worded (for
    a validator that validates a sub-mapping that the user wrote one level deeper, e.g. the MD
    input's ``potential: {lj: {...}}``)."""
    return section_error(cls_name, [((*prefix, *err.get("loc", ())), _describe(err), err.get("input")) for err in exc.errors()])


# ---------------------------------------------------------------------------------------- reusable field types
def _non_negative(noun: str):
    def check(v: float) -> float:
        if not v >= 0:
            raise ValueError(f"expected a non-negative {noun}, found {v}")
        return v

    return AfterValidator(check)


def non_negative(noun: str = "number"):
    """``Annotated[float, non_negative("prefactor")]``: ≥ 0, worded with the quantity's name."""
    return _non_negative(noun)


# ---------------------------------------------------------------------------------------- reading
def read_tree(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """The mapping in a JSON or YAML (``.yaml``/``.yml``) input file; ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------- paths
def resolve_input_path(value: Union[str, os.PathLike], info: Optional[ValidationInfo], must_exist: bool = True) -> str:
    """The one path rule (module docstring): ``value`` made absolute against the validation
    context's ``base_dir`` (the input file's folder); ValueError if ``must_exist`` and it does not."""
    base = ((info.context if info is not None else None) or {}).get("base_dir")
    p = Path(os.path.expanduser(os.fspath(value)))
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    if must_exist and not p.exists():
        raise ValueError(f"expected an existing file or directory, found no such path: {str(p)!r}")
    return os.path.normpath(str(p))


def resolve_input_paths(values: Sequence[Union[str, os.PathLike]], info: Optional[ValidationInfo],
                        must_exist: bool = True) -> list[str]:
    """:func:`resolve_input_path` of every entry; the error names the entry (``entry k ('x'): ...``)."""
    out = []
    for k, item in enumerate(values):
        try:
            out.append(resolve_input_path(item, info, must_exist=must_exist))
        except ValueError as exc:
            raise ValueError(f"entry {k} ({item!r}): {exc}") from None
    return out


# ---------------------------------------------------------------------------------------- errors
#: pydantic's names for union branches / validator wrappers inside an error location (not config keys)
_BRANCH = re.compile(
    r"^(int|str|float|bool|none|(list|dict|tuple|set|union|literal|nullable|is-instance)\[.*\]|(function|constrained)-.*)$"
)


def _loc_to_path(loc: Sequence[Any]) -> str:
    """pydantic's error location → ``model.descriptor.sel[1]`` (branch names dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _BRANCH.match(str(part)):
            out += ("." if out else "") + str(part)
    return out or "<root>"


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _describe(err: Mapping[str, Any]) -> str:
    """One error's message: "expected ..., found ..." (pydantic's own wording rephrased)."""
    typ = err.get("type", "")
    msg = str(err.get("msg", ""))
    ctx = err.get("ctx") or {}
    found = err.get("input")
    if typ in ("unknown_key", "mlpot_error"):
        return msg
    if typ == "extra_forbidden":
        return "unknown key"
    if typ == "missing":
        return "missing required key"
    if typ in ("greater_than", "greater_than_equal") and ctx.get("gt", ctx.get("ge")) == 0:
        return f"expected a {'positive' if typ == 'greater_than' else 'non-negative'} number, found {_shown(found)}"
    if typ == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s), found {_shown(found)}"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, "):]
    if msg.startswith("Input should be "):
        msg = msg[len("Input should be "):]
    return f"expected {msg[0].lower() + msg[1:] if msg else typ}, found {_shown(found)}"


def format_error(exc: ValidationError, source: str = "", prefix: Sequence[str] = ()) -> ConfigError:
    """The ONE formatter of pydantic errors: one ConfigError line, ``[source: ]path: what[; ...]``.
    ``prefix``: key path of the validated section inside its file (e.g. ``("model",)``)."""
    seen: dict[str, str] = {}
    for err in exc.errors():
        loc = tuple(prefix) + tuple(err.get("loc", ()))
        seen.setdefault(_loc_to_path(loc), _describe(err))  # a union gives one error per branch: keep the first
    # a whole-tree check (path "<root>") already names its key paths in its message
    lines = [what if path == "<root>" else f"{path}: {what}" for path, what in seen.items()]
    head = f"{source}: " if source else ""
    if len(lines) == 1:
        return ConfigError(head + lines[0])
    return ConfigError(head + f"{len(lines)} problems: " + "; ".join(lines))


def validate(
    cls: type[M],
    data: Any,
    source: str = "",
    base_dir: Union[str, os.PathLike, None] = None,
    prefix: Sequence[str] = (),
) -> M:
    """``cls.model_validate(data)`` with ``base_dir`` (for :func:`resolve_input_path`) in the
    context; a ConfigError from :func:`format_error` otherwise."""
    context = {"base_dir": None if base_dir is None else os.fspath(base_dir)}
    try:
        return cls.model_validate(data, context=context)
    except ValidationError as exc:
        raise format_error(exc, source, prefix) from None


__all__ = [
    "StrictModel", "read_tree", "validate", "format_error", "resolve_input_path", "section_error", "relocated",
    "non_negative",
]
