"""Embedding and fitting networks of the Deep Potential family (residual MLPs with timesteps).

Layer convention (DeePMD-kit ``deepmd/dpmodel/utils/network.py`` ``NativeLayer.call`` and
``deepmd/pt/model/network/mlp.py`` ``MLPLayer.forward``)::

    y = act(x @ matrix + bias)            matrix: (n_in, n_out), bias: (n_out,)
    y = y * idt                           only if the layer has a timestep ``idt`` (n_out,)
    y = y + x           if resnet and n_out == n_in
    y = y + [x, x]      if resnet and n_out == 2 n_in   (concatenation along the feature axis)

A timestep ``idt`` exists only where a skip connection does (``resnet_dt`` and n_out ∈ {n_in, 2 n_in}).
Embedding nets: every layer has the activation and ``resnet=True``. Fitting nets: the hidden layers as
in an embedding net, then a linear output layer (no activation, no skip, no timestep, with bias).

Parameter names are stable for weight import: ``layers.<k>.matrix`` (n_in, n_out — note: *not*
``torch.nn.Linear``'s (out, in)), ``layers.<k>.bias``, ``layers.<k>.idt``.
Initialisation follows DeePMD-kit's PyTorch default: matrix ~ N(0, 1/√(n_in+n_out)), bias ~ N(0, 1),
idt ~ N(0.1, 0.001).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from mlpot.errors import ConfigError

#: accepted precision names (DeePMD-kit's, ``"default"`` = float64) → dtype: the one precision table
PRECISIONS = {
    "float64": torch.float64,
    "double": torch.float64,
    "default": torch.float64,
    "float32": torch.float32,
    "float": torch.float32,
    "single": torch.float32,
}


def normalize_precision(name: str) -> str:
    """The lower-cased precision name, or ValueError naming the accepted ones (config validation)."""
    key = str(name).lower()
    if key not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; expected one of {', '.join(PRECISIONS)}")
    return key


def resolve_precision(name: str, where: str = "precision") -> torch.dtype:
    """Map a DeePMD precision string ("float64", "float32", "default") to a torch dtype."""
    try:
        return PRECISIONS[normalize_precision(name)]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def precision_name(dtype: torch.dtype) -> str:
    return "float64" if dtype == torch.float64 else "float32"


#: activation names (DeePMD-kit's): the one activation table; ``silut[:t]`` / ``custom_silu[:t]``
#: (silu with a tanh continuation above the threshold t, default 3.0) come in addition
ACTIVATIONS = ("tanh", "relu", "relu6", "softplus", "sigmoid", "silu", "gelu", "gelu_tf", "linear", "none")
THRESHOLD_ACTIVATIONS = ("silut", "custom_silu")


def normalize_activation(name: str) -> str:
    """The lower-cased activation name, or ValueError naming the accepted ones (config validation)."""
    key = str(name).lower()
    if key in ACTIVATIONS:
        return key
    head, _, threshold = key.partition(":")
    if head in THRESHOLD_ACTIVATIONS:
        try:
            if threshold:
                float(threshold)
        except ValueError:
            raise ValueError(f"bad threshold in {name!r}; expected e.g. 'silut:3.0'") from None
        return key
    raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}, silut[:t]")


def check_activation(name: str, where: str = "activation_function") -> str:
    """Validate an activation name (see :data:`ACTIVATIONS`); ConfigError naming ``where``."""
    try:
        return normalize_activation(name)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    """Apply the activation ``name`` (see :func:`check_activation`)."""
    if name == "tanh":
        return torch.tanh(x)
    if name in ("gelu", "gelu_tf"):
        return F.gelu(x, approximate="tanh")  # DeePMD uses the tanh approximation
    if name == "relu":
        return F.relu(x)
    if name == "relu6":
        return F.relu6(x)
    if name == "softplus":
        return F.softplus(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "silu":
        return F.silu(x)
    if name in ("linear", "none"):
        return x
    # silut: silu below a threshold t, tanh(slope (x − t)) + silu(t) above (C¹ continuation)
    t = float(name.split(":")[-1]) if ":" in name else 3.0
    sig_t = 1.0 / (1.0 + math.exp(-t))
    slope = sig_t + t * sig_t * (1.0 - sig_t)
    const = t * sig_t
    return torch.where(x >= t, torch.tanh(slope * (x - t)) + const, F.silu(x))


class DPLayer(torch.nn.Module):
    """One layer ``y = [x or (x,x)] + idt · act(x W + b)`` (see module docstring)."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        activation_function: str = "tanh",
        resnet: bool = True,
        use_timestep: bool = False,
        dtype: torch.dtype = torch.float64,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.activation_function = check_activation(activation_function)
        self.resnet = bool(resnet)
        skip = self.resnet and (self.n_out == self.n_in or self.n_out == 2 * self.n_in)
        self.skip = skip
        g = generator
        w = torch.randn(self.n_in, self.n_out, generator=g, dtype=torch.float64) / math.sqrt(self.n_in + self.n_out)
        b = torch.randn(self.n_out, generator=g, dtype=torch.float64)
        self.matrix = torch.nn.Parameter(w.to(dtype))
        self.bias = torch.nn.Parameter(b.to(dtype))
        if use_timestep and skip:
            idt = 0.1 + 0.001 * torch.randn(self.n_out, generator=g, dtype=torch.float64)
            self.idt: Optional[torch.nn.Parameter] = torch.nn.Parameter(idt.to(dtype))
        else:
            self.register_parameter("idt", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = activation(self.activation_function, torch.matmul(x, self.matrix) + self.bias)
        if self.idt is not None:
            y = y * self.idt
        if self.skip:
            y = y + (x if self.n_out == self.n_in else torch.cat([x, x], dim=-1))
        return y


class EmbeddingNet(torch.nn.Module):
    """Embedding net: ``in_dim → neuron[0] → … → neuron[-1]``, every layer activated and residual.

    Input (..., in_dim), output (..., neuron[-1]).
    """

    def __init__(
        self,
        in_dim: int,
        neuron: Sequence[int],
        activation_function: str = "tanh",
        resnet_dt: bool = False,
        dtype: torch.dtype = torch.float64,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        dims = [int(in_dim), *[int(n) for n in neuron]]
        self.layers = torch.nn.ModuleList(
            DPLayer(dims[k], dims[k + 1], activation_function, True, resnet_dt, dtype, generator)
            for k in range(len(dims) - 1)
        )
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class FittingNet(torch.nn.Module):
    """Fitting net: residual hidden layers ``neuron`` then a linear layer to ``out_dim``.

    Input (..., in_dim), output (..., out_dim).
    """

    def __init__(
        self,
        in_dim: int,
        neuron: Sequence[int],
        out_dim: int = 1,
        activation_function: str = "tanh",
        resnet_dt: bool = True,
        dtype: torch.dtype = torch.float64,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        dims = [int(in_dim), *[int(n) for n in neuron]]
        layers = [
            DPLayer(dims[k], dims[k + 1], activation_function, True, resnet_dt, dtype, generator)
            for k in range(len(dims) - 1)
        ]
        layers.append(DPLayer(dims[-1], out_dim, "linear", False, False, dtype, generator))
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
