"""Observables, in one place: global reductions over the owned atoms of all ranks, kinetic energy and
tensor, temperature, degrees of freedom, momentum, pressure and pressure tensor; Maxwell–Boltzmann
velocities; and the registry of thermo observables by name (:data:`OBSERVABLES`).

Units: eV, K, Å³, amu·Å/fs; pressures in eV/Å³ (``*_bar`` helpers and the thermo columns in bar).
Every sum runs over ``[:n_local]`` and is reduced with ``comm.allreduce_sum`` (identity serially).
The virial W (eV) is ``state.virial``, already the global sum (DeePMD convention W = −stress·V).

**Registry.** ``OBSERVABLES`` maps a column name (``"temperature_K"``, ``"pressure_bar"``, ...) to
an :class:`Observable`: a function ``(sim) -> float``, a unit and a print format. Reporters take
observables by name (:func:`observe`); a name that is not registered but is a scalar output of the
potential (``state.outputs``, e.g. ``"dU_dlambda"``) is an observable automatically, so a new thermo
column needs no edit of :mod:`md_engine.io`. Register a new one with::

    @register_observable("density_g_cm3", unit="g/cm3", fmt="10.4f")
    def density(sim): ...
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable, Optional

import torch

from mlpot.errors import ConfigError
from mlpot.registry import Registry
from mlpot.units import AMU_A2_PER_FS2_TO_EV, EV_PER_A3_TO_BAR, KB_EV_PER_K

from md_engine.comm import Comm, as_comm
from md_engine.state import State

if TYPE_CHECKING:
    from md_engine.simulation import Simulation

# ---------------------------------------------------------------------------------------------------
# global reductions


def global_sum(x: torch.Tensor, comm: Optional[Comm] = None) -> torch.Tensor:
    """Sum of a per-rank partial result over ranks."""
    return as_comm(comm).allreduce_sum(x)


def global_n_atoms(state: State, comm: Optional[Comm] = None) -> int:
    """Number of owned atoms over all ranks."""
    n = torch.tensor(float(state.n_local), dtype=torch.float64)
    return int(global_sum(n, comm).item())


def degrees_of_freedom(state: State, comm: Optional[Comm] = None, fixed_com: bool = True) -> int:
    """3N − 3 with the centre-of-mass momentum fixed at zero (default), else 3N."""
    n = global_n_atoms(state, comm)
    return 3 * n - (3 if fixed_com and n > 1 else 0)


def kinetic_tensor(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Σ m v ⊗ v over owned atoms of all ranks, eV (3, 3) (twice the kinetic-energy tensor)."""
    n = state.n_local
    v = state.velocities[:n]
    t = (state.masses[:n, None, None] * v[:, :, None] * v[:, None, :]).sum(0) * AMU_A2_PER_FS2_TO_EV
    return global_sum(t, comm)


def kinetic_diagonal(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """K_αα = Σ ½ m v_α² over owned atoms of all ranks, eV, shape (3,)."""
    n = state.n_local
    k = 0.5 * (state.masses[:n, None] * state.velocities[:n] ** 2).sum(0) * AMU_A2_PER_FS2_TO_EV
    return global_sum(k, comm)


def kinetic_energy(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Σ ½ m v² over owned atoms of all ranks, eV (0-d tensor)."""
    n = state.n_local
    ke = 0.5 * (state.masses[:n, None] * state.velocities[:n] ** 2).sum() * AMU_A2_PER_FS2_TO_EV
    return global_sum(ke, comm)


def temperature(state: State, comm: Optional[Comm] = None, dof: Optional[int] = None) -> torch.Tensor:
    """Instantaneous temperature 2K/(dof·k_B), K (0-d tensor); dof default 3N − 3."""
    dof = dof if dof is not None else degrees_of_freedom(state, comm)
    return 2.0 * kinetic_energy(state, comm) / (max(dof, 1) * KB_EV_PER_K)


def total_momentum(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Σ m v (3,), amu·Å/fs."""
    n = state.n_local
    return global_sum((state.masses[:n, None] * state.velocities[:n]).sum(0), comm)


def pressure(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Instantaneous pressure (2K + tr W)/(3V), eV/Å³ (0-d)."""
    ke = kinetic_energy(state, comm)
    return (2 * ke + torch.trace(state.virial)) / (3 * state.volume)


def pressure_tensor(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Instantaneous pressure tensor (Σ m v⊗v + W)/V, eV/Å³ (3, 3)."""
    return (kinetic_tensor(state, comm) + state.virial) / state.volume


def pressure_diagonal(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Diagonal of the pressure tensor, P_αα = (2K_αα + W_αα)/V, eV/Å³, shape (3,)."""
    return (2 * kinetic_diagonal(state, comm) + torch.diagonal(state.virial)) / state.volume


def pressure_bar(state: State, comm: Optional[Comm] = None) -> float:
    """:func:`pressure` in bar (a host float)."""
    return float(pressure(state, comm)) * EV_PER_A3_TO_BAR


# ---------------------------------------------------------------------------------------------------
# velocities


def remove_com_velocity(state: State, comm: Optional[Comm] = None) -> None:
    """Subtract the centre-of-mass velocity in place, so that the total momentum is zero."""
    n = state.n_local
    p = total_momentum(state, comm)
    m = global_sum(state.masses[:n].sum(), comm)
    state.velocities[:n] -= p / m


def maxwell_boltzmann(
    state: State,
    temperature_k: float,
    seed: int = 0,
    exact: bool = True,
    zero_momentum: bool = True,
    comm: Optional[Comm] = None,
    generator: Optional[torch.Generator] = None,
) -> None:
    """Draw velocities from the Maxwell–Boltzmann distribution at ``temperature_k`` (K), in place.

    Each Cartesian component is normal with variance k_B T / m (Å²/fs²); the draw is seeded by
    ``seed`` (or uses ``generator``), on the CPU so that it does not depend on the device (it runs once,
    on the global state before it is distributed). With ``zero_momentum`` the centre-of-mass velocity
    is removed; with ``exact`` the velocities are then rescaled so that 2K/(dof k_B) equals
    ``temperature_k`` exactly (dof = 3N−3 or 3N).
    """
    n = state.n_local
    gen = generator or torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    sigma = torch.sqrt(KB_EV_PER_K * temperature_k / (state.masses[:n].detach().cpu().double() * AMU_A2_PER_FS2_TO_EV))
    state.velocities[:n] = (z * sigma[:, None]).to(dtype=state.dtype, device=state.device)
    if zero_momentum:
        remove_com_velocity(state, comm)
    if exact and temperature_k > 0:
        t_now = float(temperature(state, comm, degrees_of_freedom(state, comm, zero_momentum)))
        if t_now > 0:
            state.velocities[:n] *= math.sqrt(temperature_k / t_now)
    if temperature_k == 0:
        state.velocities.zero_()


# ---------------------------------------------------------------------------------------------------
# the registry of thermo observables


class Observable:
    """A named scalar of a running simulation: ``fn(sim) -> float`` (collective under MPI), ``unit``,
    print ``fmt`` (format spec) and ``header`` (the printed column title)."""

    def __init__(self, name: str, fn: Callable[["Simulation"], float], unit: str = "", fmt: str = "14.6f",
                 header: Optional[str] = None) -> None:
        self.name, self.fn, self.unit, self.fmt = name, fn, unit, fmt
        self.header = header or name

    def __call__(self, sim: "Simulation") -> float:
        return self.fn(sim)


OBSERVABLES: Registry[Observable] = Registry("observable")


def register_observable(name: str, unit: str = "", fmt: str = "14.6f", header: Optional[str] = None,
                        aliases: tuple[str, ...] = ()) -> Callable[[Callable[["Simulation"], float]], Callable[["Simulation"], float]]:
    """Decorator: register ``fn(sim) -> float`` as the observable ``name`` in :data:`OBSERVABLES`."""

    def deco(fn: Callable[["Simulation"], float]) -> Callable[["Simulation"], float]:
        OBSERVABLES.add(name, Observable(name, fn, unit, fmt, header), aliases=aliases)
        return fn

    return deco


def _periodic(sim: "Simulation") -> bool:
    return bool(sim.state.pbc.all())


@register_observable("step", fmt="10d", header="step")
def _step(sim: "Simulation") -> float:
    return sim.state.step


@register_observable("time_ps", unit="ps", fmt="10.4f", header="time[ps]")
def _time(sim: "Simulation") -> float:
    return sim.state.time_fs / 1000.0


@register_observable("potential_eV", unit="eV", fmt="14.6f", header="Epot[eV]")
def _potential(sim: "Simulation") -> float:
    return float(sim.state.energy)


@register_observable("kinetic_eV", unit="eV", fmt="12.6f", header="Ekin[eV]")
def _kinetic(sim: "Simulation") -> float:
    return float(kinetic_energy(sim.state, sim.comm))


@register_observable("total_eV", unit="eV", fmt="14.6f", header="Etot[eV]")
def _total(sim: "Simulation") -> float:
    return float(sim.state.energy) + float(kinetic_energy(sim.state, sim.comm))


@register_observable("conserved_eV", unit="eV", fmt="14.6f", header="Econs[eV]")
def _conserved(sim: "Simulation") -> float:
    return _total(sim) + float(sim.integrator.conserved_extra(sim.state))


@register_observable("temperature_K", unit="K", fmt="9.2f", header="T[K]")
def _temperature(sim: "Simulation") -> float:
    return float(temperature(sim.state, sim.comm, sim.integrator.dof))


@register_observable("pressure_bar", unit="bar", fmt="11.2f", header="P[bar]")
def _pressure(sim: "Simulation") -> float:
    return pressure_bar(sim.state, sim.comm) if _periodic(sim) else float("nan")


@register_observable("volume_A3", unit="A3", fmt="11.3f", header="V[A3]")
def _volume(sim: "Simulation") -> float:
    return float(sim.state.volume) if _periodic(sim) else float("nan")


@register_observable("ns_per_day", unit="ns/day", fmt="8.3f", header="ns/day")
def _ns_per_day(sim: "Simulation") -> float:
    elapsed = time.perf_counter() - sim._t0
    n = sim._steps_timed
    return (n * sim.integrator.dt * 1e-6) / (elapsed / 86400.0) if n and elapsed > 0 else 0.0


def observable(name: str, state: Optional[State] = None) -> Observable:
    """The observable ``name``: a registered one, else a scalar potential output of ``state``
    (``state.outputs[name]``, summed over ranks by the simulation); ConfigError otherwise."""
    if name in OBSERVABLES:
        return OBSERVABLES[name]
    if state is not None and name in state.outputs and state.outputs[name].numel() == 1:
        return Observable(name, lambda sim: float(sim.state.outputs[name]))
    where = "thermo columns"
    known = OBSERVABLES.names() + (sorted(k for k, v in state.outputs.items() if v.numel() == 1) if state else [])
    from mlpot.errors import did_you_mean

    raise ConfigError(f"{where}: unknown observable {name!r}; expected one of {known}" + did_you_mean(name, known))


def observe(sim: "Simulation", names: list[str]) -> dict[str, float]:
    """Collective: the values of the observables ``names`` (module docstring) for ``sim`` now."""
    return {name: observable(name, sim.state)(sim) for name in names}


#: the default thermo columns (CSV and printed)
THERMO_COLUMNS = ["step", "time_ps", "potential_eV", "kinetic_eV", "total_eV", "conserved_eV", "temperature_K",
                  "pressure_bar", "volume_A3", "ns_per_day"]

__all__ = [
    "global_sum", "global_n_atoms", "degrees_of_freedom", "kinetic_energy", "kinetic_tensor", "kinetic_diagonal",
    "temperature", "total_momentum", "pressure", "pressure_tensor", "pressure_diagonal", "pressure_bar",
    "remove_com_velocity", "maxwell_boltzmann", "Observable", "OBSERVABLES", "register_observable", "observable",
    "observe",
    "THERMO_COLUMNS",
]
