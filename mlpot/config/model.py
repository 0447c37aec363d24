"""The ``model`` section: DeePMD-kit's "standard" energy model {type_map, descriptor, fitting_net}.

``descriptor`` is validated by the config class its ``type`` names in the descriptor registry
(:data:`mlpot.descriptors.DESCRIPTORS`, looked up at validation time: a descriptor registered from
anywhere, a test file included, is a valid ``type``); aliases (``se_a``) become the canonical name.
Every default of a component exists once, in its config class (DeePMD-kit 3.2's ``argcheck``
defaults); the component constructors take the validated config and have no defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping, Optional, Sequence, Union

from pydantic import AfterValidator, Field, PositiveInt, SerializeAsAny, ValidationInfo, field_validator, model_validator

from mlpot.config.base import StrictModel, section_error
from mlpot.config.deepmd_compat import DeepmdSection
from mlpot.errors import did_you_mean


def _activation(v: str) -> str:
    from mlpot.nn import normalize_activation

    return normalize_activation(v)


def _precision(v: str) -> str:
    from mlpot.nn import normalize_precision

    return normalize_precision(v)


#: an activation name of :data:`mlpot.nn.ACTIVATIONS` (or ``silut[:t]``), lower-cased
Activation = Annotated[str, AfterValidator(_activation)]
#: a precision name of :data:`mlpot.nn.PRECISIONS` (``"default"`` = float64)
Precision = Annotated[str, AfterValidator(_precision)]
#: layer widths: at least one, each positive
Neuron = Annotated[list[PositiveInt], Field(min_length=1)]

# ---------------------------------------------------------------------------------------------- sel: "auto"
#: DeePMD-kit's default safety factor of ``sel: "auto"`` (``deepmd/utils/update_sel.py``)
AUTO_SEL_RATIO = 1.1


def parse_auto_sel(spec: Any) -> Optional[float]:
    """The safety factor of ``sel: "auto"`` (1.1) or ``"auto:R"`` (R); ``None`` for an explicit sel.

    Raises ValueError for any other string, or a factor that is not a finite number >= 1."""
    if not isinstance(spec, str):
        return None
    words = spec.split(":")
    if words[0] == "auto" and len(words) == 1:
        return AUTO_SEL_RATIO
    if words[0] == "auto" and len(words) == 2:
        try:
            ratio = float(words[1])
        except ValueError:
            ratio = float("nan")
        if ratio >= 1.0 and ratio != float("inf"):
            return ratio
    raise ValueError(
        f"expected a list of neighbor counts, 'auto' or 'auto:R' with a factor R >= 1 (e.g. 'auto:1.2'), found {spec!r}"
    )


def auto_sel(max_nbor: Any, ratio: float = AUTO_SEL_RATIO) -> list[int]:
    """``sel`` from the largest neighbor count per neighbor type (DeePMD-kit's rule, ``update_sel.py``):
    ``n · ratio`` truncated to an integer, then rounded up to a multiple of 4 (``4·⌈⌊n·ratio⌋ / 4⌉``)."""
    return [4 * ((int(int(n) * float(ratio)) + 3) // 4) for n in max_nbor]


# ---------------------------------------------------------------------------------------------- descriptor
class DescriptorConfig(DeepmdSection):
    """Base of every descriptor's config class (``model.descriptor``): ``type`` (its registry name)
    and ``rcut`` (Å). A subclass may override :meth:`check_type_map` (checks that need the model's
    type_map, e.g. one sel per type)."""

    deepmd_section = "descriptor"

    type: str
    rcut: float = Field(6.0, gt=0, description="cutoff radius, Å")

    def check_type_map(self, type_map: Sequence[str]) -> None:
        """Raise ValueError (message naming ``descriptor.<key>``) if the config does not fit ``type_map``."""


class FittingConfig(DeepmdSection):
    """``model.fitting_net``: the per-type atomic-energy network (:class:`mlpot.fitting.EnergyFitting`)."""

    deepmd_section = "fitting_net"

    type: Literal["ener"] = "ener"
    neuron: Neuron = [120, 120, 120]
    resnet_dt: bool = True
    activation_function: Activation = "tanh"
    precision: Precision = "default"
    seed: Optional[int] = None


def _descriptor_entry(name: Any):
    """The registry entry of descriptor ``name`` (canonical or alias); a ValidationError at ``type``."""
    from mlpot.descriptors import DESCRIPTORS

    if name in DESCRIPTORS:
        return DESCRIPTORS.get(name)
    known = DESCRIPTORS.names(aliases=True)
    hint = did_you_mean(name, known) if isinstance(name, str) else ""
    raise section_error("descriptor", [(("type",), f"unsupported descriptor {name!r}; expected one of {known}{hint}", name)])


class ModelConfig(DeepmdSection):
    """``model``: type_map, descriptor (validated by its registered config class), fitting_net."""

    deepmd_section = "model"

    type: Literal["standard"] = "standard"
    type_map: list[str]
    descriptor: SerializeAsAny[DescriptorConfig]
    fitting_net: FittingConfig = Field(default_factory=FittingConfig)
    data_stat_nbatch: PositiveInt = 10
    data_stat_protect: float = Field(1e-2, gt=0)

    @field_validator("type_map")
    @classmethod
    def _type_map(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("expected at least one element name, found an empty list")
        if len(set(v)) != len(v):
            raise ValueError(f"expected unique element names, found {v}")
        return v

    @field_validator("descriptor", mode="before")
    @classmethod
    def _descriptor(cls, v: Any, info: ValidationInfo) -> Any:
        """Validate with the config class registered for ``type`` (default ``se_e2_a``)."""
        if isinstance(v, DescriptorConfig):
            return v
        if not isinstance(v, Mapping):
            raise ValueError(f"expected a mapping with the descriptor's keys, found {type(v).__name__}")
        entry = _descriptor_entry(v.get("type", "se_e2_a"))
        return entry.config.model_validate({**v, "type": entry.name}, context=info.context)

    @model_validator(mode="after")
    def _fits_type_map(self) -> "ModelConfig":
        self.descriptor.check_type_map(self.type_map)
        return self

    def with_precision(self, precision: Optional[str]) -> "ModelConfig":
        """A copy with ``precision`` for the descriptor and the fitting net (``training.precision``
        overrides the model's); ``None``: unchanged."""
        if precision is None:
            return self
        precision = _precision(precision)
        update: dict[str, Any] = {"fitting_net": self.fitting_net.model_copy(update={"precision": precision})}
        if "precision" in type(self.descriptor).model_fields:
            update["descriptor"] = self.descriptor.model_copy(update={"precision": precision})
        return self.model_copy(update=update)

    def with_descriptor(self, **changes: Any) -> "ModelConfig":
        """A copy with descriptor keys replaced (e.g. ``sel`` resolved from neighbor statistics),
        re-validated by the descriptor's config class."""
        data = {**self.descriptor.model_dump(by_alias=True, exclude_unset=False), **changes}
        data.pop("_comment", None)
        return self.model_copy(update={"descriptor": type(self.descriptor).model_validate(data)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data (DeePMD-kit key names); ``validate(ModelConfig, to_dict())`` rebuilds it."""
        return self.model_dump(mode="json", by_alias=True)


__all__ = [
    "ModelConfig", "DescriptorConfig", "FittingConfig", "Activation", "Precision", "Neuron",
    "parse_auto_sel", "auto_sel", "AUTO_SEL_RATIO",
]
