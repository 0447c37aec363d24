"""Integrators and ensembles. Units: dt and time constants in fs, temperature K, pressure bar,
compressibility 1/bar; internally eV, Å, fs, amu.

Every integrator has ``dt``, ``setup(state, comm)``, ``step(state, compute)`` — ``compute(state)``
evaluates the potential at the current positions/cell and stores ``state.energy``, ``state.forces``,
``state.virial`` (the force computation, neighbor list and error checks live behind it) —,
``conserved_extra(state)`` (eV, added to U + K for the conserved quantity), ``state_dict()`` /
``load_state_dict()`` (thermostat variables and the RNG state, for exact restarts), and
``generator`` (the torch.Generator drawing all its random numbers; random numbers that must be the
same on all MPI ranks go through ``comm.broadcast``).

* :class:`VelocityVerlet` — NVE.
* :class:`Langevin` — BAOAB splitting (Leimkuhler & Matthews, Appl. Math. Res. Express 2013).
* :class:`NoseHooverChain` — Martyna, Tuckerman & Klein (Mol. Phys. 87, 1117 (1996)) chain with
  Suzuki–Yoshida factorisation; conserved H = U + K + Σ Q_k v_ξk²/2 + N_f kT ξ_1 + kT Σ_{k≥2} ξ_k.
* :class:`CSVR` — Bussi, Donadio & Parrinello (JCP 126, 014101 (2007)): exact resampling of K over
  dt/2 on both sides of a velocity-Verlet step; conserved "effective energy" = U + K − Σ ΔK_thermostat.
* :class:`StochasticCellRescaling` — isotropic NPT barostat of Bernetti & Bussi (JCP 153, 114107
  (2020)), ε = ln V, dε = (β_T/τ_p)(P − P₀) dt + √(2 k_B T β_T /(V τ_p)) dW; positions and cell
  scaled by e^{Δε/3}, velocities by e^{−Δε/3}. Attach it to a :class:`CSVR` or :class:`Langevin`
  thermostat (``barostat=``). The pressure is P = (2K + tr W)/(3V), W the virial (eV).
  ``mode="anisotropic"``: the three Cartesian box lengths fluctuate independently, each driven by
  its diagonal pressure-tensor component P_αα = (2K_αα + W_αα)/V (see the class docstring).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from mlpot.units import AMU_A2_PER_FS2_TO_EV, BAR_TO_EV_PER_A3, EV_PER_A3_TO_BAR, FORCE_TO_ACC, KB_EV_PER_K

from md_engine.state import (
    SERIAL, Comm, State, degrees_of_freedom, global_n_atoms, global_sum, kinetic_energy, remove_com_velocity,
)

ComputeFn = Callable[[State], None]


# ---------------------------------------------------------------------------------------------------
# building blocks


def kick(state: State, dt: float) -> None:
    """v += dt · F/m (Å/fs), owned atoms."""
    n = state.n_local
    state.velocities[:n] += (dt * FORCE_TO_ACC) * state.forces[:n] / state.masses[:n, None]  # type: ignore[index]


def drift(state: State, dt: float) -> None:
    """x += dt · v (Å), owned atoms."""
    n = state.n_local
    state.positions[:n] += dt * state.velocities[:n]


def pressure(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Instantaneous pressure (2K + tr W)/(3V), eV/Å³ (0-d); W = ``state.virial`` (already global)."""
    ke = kinetic_energy(state, comm)
    return (2 * ke + torch.trace(state.virial)) / (3 * state.volume)  # type: ignore[arg-type]


def pressure_bar(state: State, comm: Optional[Comm] = None) -> float:
    return float(pressure(state, comm)) * EV_PER_A3_TO_BAR


def _to_cpu_state(gen: torch.Generator) -> torch.Tensor:
    return gen.get_state().clone()


class Integrator:
    """Base class: time step, RNG, communicator, the conserved-quantity bookkeeping."""

    stochastic = False

    def __init__(self, dt: float, seed: int = 0) -> None:
        if dt <= 0:
            raise ValueError(f"dt must be > 0 fs, got {dt}")
        self.dt = float(dt)
        self.seed = int(seed)
        self.generator: Optional[torch.Generator] = None
        self.comm: Comm = SERIAL
        self.dof = 0

    def setup(self, state: State, comm: Optional[Comm] = None) -> None:
        self.comm = comm or SERIAL
        self.dof = degrees_of_freedom(state, self.comm)
        if self.generator is None or self.generator.device != state.device:
            self.generator = torch.Generator(device=state.device)
            # distinct per-atom noise streams per rank; global draws are broadcast from rank 0
            self.generator.manual_seed(self.seed + 7919 * self.comm.rank)

    def step(self, state: State, compute: ComputeFn) -> None:
        raise NotImplementedError

    def conserved_extra(self, state: State) -> float:
        return 0.0

    def _randn(self, *shape: int, state: State) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator, dtype=state.dtype, device=state.device)

    def _global_randn(self, n: int, state: State) -> torch.Tensor:
        return self.comm.broadcast(self._randn(n, state=state))

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dt": self.dt, "seed": self.seed}
        if self.generator is not None:
            d["rng_state"] = _to_cpu_state(self.generator)
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if "rng_state" in d and self.generator is not None:
            self.generator.set_state(d["rng_state"])


class VelocityVerlet(Integrator):
    """NVE: kick(dt/2) · drift(dt) · forces · kick(dt/2)."""

    def step(self, state: State, compute: ComputeFn) -> None:
        kick(state, 0.5 * self.dt)
        drift(state, self.dt)
        compute(state)
        kick(state, 0.5 * self.dt)


# ---------------------------------------------------------------------------------------------------
# thermostats


class _Thermostatted(Integrator):
    def __init__(self, dt: float, temperature: float, tau: float, seed: int = 0) -> None:
        super().__init__(dt, seed)
        if temperature < 0 or tau <= 0:
            raise ValueError(f"need temperature ≥ 0 K and tau > 0 fs, got {temperature}, {tau}")
        self.temperature = float(temperature)
        self.tau = float(tau)
        self.heat = 0.0  # energy (eV) taken out of the system by the thermostat(s)
        self.barostat: Optional[StochasticCellRescaling] = None

    @property
    def kt(self) -> float:
        return KB_EV_PER_K * self.temperature

    def setup(self, state: State, comm: Optional[Comm] = None) -> None:
        super().setup(state, comm)
        if self.barostat is not None:
            self.barostat.attach(self)

    def _rescale_and_compute(self, state: State, compute: ComputeFn) -> None:
        """The barostat's cell rescaling (if any) after the last position update, then the new forces
        and the barostat's bookkeeping with the new virial."""
        if self.barostat is not None:
            self.barostat.rescale(state)
        compute(state)
        if self.barostat is not None:
            self.barostat.after_forces(state)

    def conserved_extra(self, state: State) -> float:
        extra = self.heat
        if self.barostat is not None:
            extra += self.barostat.conserved_extra(state)
        return extra

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["heat"] = self.heat
        if self.barostat is not None:
            d["barostat"] = self.barostat.state_dict()
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        self.heat = float(d.get("heat", 0.0))
        if self.barostat is not None and "barostat" in d:
            self.barostat.load_state_dict(d["barostat"])


class Langevin(_Thermostatted):
    """Langevin dynamics, BAOAB splitting; friction γ = 1/tau (1/fs).

    O step: v ← c₁ v + √((1 − c₁²) k_B T/m) R, c₁ = e^{−γ dt}. With ``fixed_com`` (default) the
    centre-of-mass velocity is projected out after the O step, so the total momentum stays zero and
    the kinetic energy samples the canonical distribution of 3N − 3 degrees of freedom.

    The noise R of an atom depends only on its global id and the step, not on which rank owns it:
    every rank draws the (N_total, 3) block from one generator seeded alike on all ranks and keeps
    the rows of its atoms. A run on P ranks therefore follows the same trajectory as on 1 rank (up to
    floating-point summation order), and a checkpoint written on P ranks continues identically on Q.
    The price is N_total·3 normal draws per step on every rank: negligible next to an ML potential or
    on a GPU; ``per_rank_noise=True`` draws only the owned atoms' noise (rank-dependent streams) for
    very large CPU runs with cheap potentials.
    """

    stochastic = True

    def __init__(self, dt: float, temperature: float, tau: float = 100.0, seed: int = 0, fixed_com: bool = True,
                 barostat: Optional["StochasticCellRescaling"] = None, per_rank_noise: bool = False) -> None:
        super().__init__(dt, temperature, tau, seed)
        self.fixed_com = fixed_com
        self.barostat = barostat
        self.per_rank_noise = bool(per_rank_noise)
        self.atom_generator: Optional[torch.Generator] = None
        self._pending_atom_state: Optional[torch.Tensor] = None
        self.n_total = 0

    def setup(self, state: State, comm: Optional[Comm] = None) -> None:
        super().setup(state, comm)
        self.dof = degrees_of_freedom(state, self.comm, fixed_com=self.fixed_com)
        self.n_total = global_n_atoms(state, self.comm)
        if self.atom_generator is None or self.atom_generator.device != state.device:
            self.atom_generator = torch.Generator(device=state.device)
            self.atom_generator.manual_seed(self.seed + 104729)  # the same on every rank
        if self._pending_atom_state is not None:
            self.atom_generator.set_state(self._pending_atom_state)
            self._pending_atom_state = None

    def _atom_noise(self, state: State) -> torch.Tensor:
        """Standard normal noise (n_local, 3) for the owned atoms, by global id (see class docstring)."""
        n = state.n_local
        if self.per_rank_noise or state.ids is None:
            return self._randn(n, 3, state=state)
        full = torch.randn(self.n_total, 3, generator=self.atom_generator, dtype=state.dtype, device=state.device)
        return full[state.ids[:n]]

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        if self.atom_generator is not None:
            d["atom_rng_state"] = _to_cpu_state(self.atom_generator)
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        if "atom_rng_state" in d:
            if self.atom_generator is None:
                self._pending_atom_state = d["atom_rng_state"]  # applied in setup, on the state's device
            else:
                self.atom_generator.set_state(d["atom_rng_state"])

    def _o_step(self, state: State) -> None:
        n = state.n_local
        c1 = math.exp(-self.dt / self.tau)
        k0 = kinetic_energy(state, self.comm)
        sigma = torch.sqrt((1 - c1 * c1) * self.kt * FORCE_TO_ACC / state.masses[:n])
        state.velocities[:n] = c1 * state.velocities[:n] + sigma[:, None] * self._atom_noise(state)
        if self.fixed_com:
            remove_com_velocity(state, self.comm)
        self.heat -= float(kinetic_energy(state, self.comm) - k0)

    def step(self, state: State, compute: ComputeFn) -> None:
        if self.barostat is not None:
            self.barostat.measure(state)
        kick(state, 0.5 * self.dt)
        drift(state, 0.5 * self.dt)
        self._o_step(state)
        drift(state, 0.5 * self.dt)
        self._rescale_and_compute(state, compute)
        kick(state, 0.5 * self.dt)


class CSVR(_Thermostatted):
    """Canonical sampling through velocity rescaling (Bussi–Donadio–Parrinello), time constant tau (fs).

    Around a velocity-Verlet step, the kinetic energy is resampled over dt/2 by the exact solution of
    dK = (K̄ − K) dt/τ + 2√(K K̄/N_f) dW/√τ (K̄ = N_f k_B T/2):
    K' = c K + (1−c) K̄/N_f (R₁² + Σ_{i=2}^{N_f} R_i²) + 2 R₁ √(c(1−c) K K̄/N_f), c = e^{−dt/(2τ)}.
    """

    stochastic = True

    def __init__(self, dt: float, temperature: float, tau: float = 100.0, seed: int = 0,
                 barostat: Optional["StochasticCellRescaling"] = None) -> None:
        super().__init__(dt, temperature, tau, seed)
        self.barostat = barostat

    def _resample(self, state: State, t: float) -> None:
        nf = self.dof
        k = float(kinetic_energy(state, self.comm))
        if nf <= 0 or k <= 0:
            return
        kbar = 0.5 * nf * self.kt
        c = math.exp(-t / self.tau)
        r = self._global_randn(nf, state).double()
        r1 = float(r[0])
        sum_sq = float((r[1:] ** 2).sum())
        k_new = c * k + (1 - c) * kbar / nf * (r1 * r1 + sum_sq) + 2 * r1 * math.sqrt(c * (1 - c) * k * kbar / nf)
        alpha = math.sqrt(max(k_new, 0.0) / k)
        if r1 + math.sqrt(c * nf * k / ((1 - c) * kbar)) < 0:
            alpha = -alpha
        n = state.n_local
        state.velocities[:n] *= alpha
        self.heat -= alpha * alpha * k - k

    def step(self, state: State, compute: ComputeFn) -> None:
        if self.barostat is not None:
            self.barostat.measure(state)
        self._resample(state, 0.5 * self.dt)
        kick(state, 0.5 * self.dt)
        drift(state, self.dt)
        self._rescale_and_compute(state, compute)
        kick(state, 0.5 * self.dt)
        self._resample(state, 0.5 * self.dt)


_SUZUKI_YOSHIDA = {
    1: [1.0],
    3: [1 / (2 - 2 ** (1 / 3)), 1 - 2 / (2 - 2 ** (1 / 3)), 1 / (2 - 2 ** (1 / 3))],
    5: [1 / (4 - 4 ** (1 / 3))] * 2 + [1 - 4 / (4 - 4 ** (1 / 3))] + [1 / (4 - 4 ** (1 / 3))] * 2,
}


class NoseHooverChain(_Thermostatted):
    """Nosé–Hoover chain of ``chain`` thermostats (MTK 1996), masses Q₁ = N_f k_B T τ², Q_k = k_B T τ².

    The chain is propagated over dt/2 before and after a velocity-Verlet step with ``n_respa``
    sub-steps and a Suzuki–Yoshida factorisation of order ``n_sy`` (1, 3 or 5). Deterministic; the
    chain state (ξ, v_ξ) is small and kept on the host in float64.
    """

    def __init__(self, dt: float, temperature: float, tau: float = 100.0, chain: int = 3, n_respa: int = 1,
                 n_sy: int = 3, seed: int = 0) -> None:
        super().__init__(dt, temperature, tau, seed)
        if chain < 1 or n_sy not in _SUZUKI_YOSHIDA or n_respa < 1:
            raise ValueError("NoseHooverChain: chain ≥ 1, n_respa ≥ 1, n_sy in {1, 3, 5}")
        self.chain = chain
        self.n_respa = n_respa
        self.n_sy = n_sy
        self.xi = [0.0] * chain
        self.v_xi = [0.0] * chain

    def _masses(self) -> list[float]:
        q = [self.kt * self.tau**2] * self.chain
        q[0] *= self.dof
        return q

    def _half_chain(self, state: State) -> None:
        """Propagate the chain and scale velocities over dt/2."""
        q = self._masses()
        nf, kt, m = self.dof, self.kt, self.chain
        k2 = 2.0 * float(kinetic_energy(state, self.comm))  # 2K
        scale = 1.0
        v, xi = self.v_xi, self.xi

        def g(k: int, k2_now: float) -> float:
            return (k2_now - nf * kt) / q[0] if k == 0 else (q[k - 1] * v[k - 1] ** 2 - kt) / q[k]

        for _ in range(self.n_respa):
            for w in _SUZUKI_YOSHIDA[self.n_sy]:
                h = w * 0.5 * self.dt / self.n_respa
                v[m - 1] += 0.5 * h * g(m - 1, k2)
                for k in range(m - 2, -1, -1):
                    s = math.exp(-0.25 * h * v[k + 1])
                    v[k] = s * (s * v[k] + 0.5 * h * g(k, k2))
                f = math.exp(-h * v[0])
                scale *= f
                k2 *= f * f
                for k in range(m):
                    xi[k] += h * v[k]
                for k in range(m - 1):
                    s = math.exp(-0.25 * h * v[k + 1])
                    v[k] = s * (s * v[k] + 0.5 * h * g(k, k2))
                v[m - 1] += 0.5 * h * g(m - 1, k2)
        state.velocities[: state.n_local] *= scale

    def conserved_extra(self, state: State) -> float:
        q = self._masses()
        e = sum(0.5 * qk * vk * vk for qk, vk in zip(q, self.v_xi))
        return e + self.dof * self.kt * self.xi[0] + self.kt * sum(self.xi[1:])

    def step(self, state: State, compute: ComputeFn) -> None:
        self._half_chain(state)
        kick(state, 0.5 * self.dt)
        drift(state, self.dt)
        compute(state)
        kick(state, 0.5 * self.dt)
        self._half_chain(state)

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["xi"] = torch.tensor(self.xi, dtype=torch.float64)
        d["v_xi"] = torch.tensor(self.v_xi, dtype=torch.float64)
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        if "xi" in d:
            self.xi = [float(x) for x in d["xi"]]
            self.v_xi = [float(x) for x in d["v_xi"]]


# ---------------------------------------------------------------------------------------------------
# barostat


BAROSTAT_MODES = ("isotropic", "anisotropic")


def kinetic_diagonal(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """K_αα = Σ ½ m v_α² over owned atoms of all ranks, eV, shape (3,)."""
    n = state.n_local
    k = 0.5 * (state.masses[:n, None] * state.velocities[:n] ** 2).sum(0) * AMU_A2_PER_FS2_TO_EV
    return global_sum(k, comm)


def pressure_diagonal(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Diagonal of the instantaneous pressure tensor, P_αα = (2K_αα + W_αα)/V, eV/Å³, shape (3,)."""
    return (2 * kinetic_diagonal(state, comm) + torch.diagonal(state.virial)) / state.volume  # type: ignore[arg-type]


class StochasticCellRescaling:
    """Stochastic cell rescaling (Bernetti & Bussi 2020), for fully periodic systems.

    ``pressure`` (bar), ``tau`` (fs, pressure relaxation time), ``compressibility`` β_T (1/bar; only
    sets the relaxation rate, not the volume distribution), ``mode``: ``"isotropic"`` (default) or
    ``"anisotropic"``.

    **Isotropic.** Over one step dt, with P from the state at the start of the step
    (P = (2K + tr W)/(3V)):
    Δε = (β_T/τ)(P − P₀) dt + √(2 k_B T β_T dt/(V τ)) R  (Euler–Maruyama in ε = ln V);
    the rescaling is applied after the last position update of the step, before the new forces, so
    forces are never stale. The barostat's energy bookkeeping (for the effective energy
    U + K + P₀V + heat) uses the trapezoid ΔU ≈ −(tr W_before + tr W_after)/6 · Δε for the scaling
    (dU/dε = −tr W/3), which captures the second-order (Itô) term; what remains is O(dt·Δε), zero mean.

    **Anisotropic** (the three Cartesian box lengths fluctuate independently). Strains
    ε_α = ln(L_α/L_α⁰), α = x, y, z, with independent Wiener processes W_α:

        dε_α = (β_T/(3τ))(P_αα − P₀) dt + √(2 k_B T β_T/(3 V τ)) dW_α,
        P_αα = (2K_αα + W_αα)/V,  K_αα = Σ_i ½ m_i v_iα²  (global sums over all ranks),

    integrated like the isotropic equation (Euler–Maruyama, P_αα from the start of the step, three
    random numbers drawn through the thermostat's ``_global_randn`` so all MPI ranks agree). Each step
    applies the affine deformation F = diag(μ), μ_α = e^{Δε_α}: positions r ← r·diag(μ) (each
    Cartesian component α scaled by μ_α), cell ← cell @ diag(μ) (the same map on the lattice vectors,
    the rows), velocities v ← v·diag(μ)⁻¹; V ← V·Π μ_α. For an orthorhombic cell this scales the box
    length L_α by μ_α. For any other cell it is the same homogeneous deformation along the Cartesian
    axes: fractional coordinates are unchanged, so it is valid for any cell, but the cell angles change
    and off-diagonal cell components scale with their column (the deformation family is the three
    diagonal strains; shear strains are not sampled — there is no full-flexible/triclinic mode).

    Derivation (why there is no explicit k_BT/V term). Write r_iα = s_iα e^{ε_α} and
    p_iα = π_iα e^{−ε_α} (scaled coordinates and momenta, held fixed by the ε move). The Jacobians
    e^{NΣε} and e^{−NΣε} cancel, and with the cell measure dL_x dL_y dL_z = V dε_x dε_y dε_z — whose
    volume marginal is the uniform dV of the isotropic NPT ensemble, the shape part uniform in
    ln(L_x/L_y), ln(L_y/L_z) — the target density at fixed s, π is
    ρ(ε) ∝ V exp[−(U + K + P₀V)/k_BT]. With ∂U/∂ε_α = −W_αα, ∂K/∂ε_α = −2K_αα and ∂V/∂ε_α = V:
    ∂ ln ρ/∂ε_α = 1 + V(P_αα − P₀)/k_BT. The Itô equation dε_α = a_α dt + √(2D) dW_α has ρ as its
    zero-flux stationary density if a_α = D ∂ ln ρ/∂ε_α + ∂D/∂ε_α; for D = k_BTβ_T/(3Vτ) ∝ 1/V,
    ∂D/∂ε_α = −D cancels the Jacobian's +D, leaving a_α = (β_T/(3τ))(P_αα − P₀).
    (The same cancellation removes the k_BT/V term of Bernetti & Bussi's volume equation when it is
    written for ε = ln V, which gives the isotropic equation above.) Summing over α, ln V obeys exactly
    the isotropic equation (three independent noises of variance 2k_BTβ_T dt/(3Vτ) add up to
    2k_BTβ_T dt/(Vτ)), so τ and β_T mean the same in both modes. The traceless part is the diagonal
    restriction of the anisotropic stochastic cell rescaling of Del Tatto, Raiteri, Bernetti & Bussi
    (Appl. Sci. 12, 1139 (2022)): drift (β_T/(3τ)) × deviatoric pressure, noise variance
    2k_BTβ_T/(3Vτ) per unit time (Bernetti & Bussi 2020 formulate the isotropic and semi-isotropic
    variants). As in the isotropic mode, the three momentum degrees of freedom removed with the centre
    of mass are not taken out of the Jacobian: an O(1/N) effect. A liquid has no restoring force on the
    box shape, so there the aspect ratios random-walk (their equilibrium measure is flat): use the
    anisotropic mode for solids and anisotropic materials.

    Bookkeeping, as in the isotropic mode: heat −= ΔK + P₀ΔV − Σ_α (W_αα,before + W_αα,after)/2 · Δε_α
    (dU/dε_α = −W_αα, trapezoid completed in :meth:`after_forces`).
    """

    def __init__(self, pressure: float, tau: float = 1000.0, compressibility: float = 4.5e-5, seed: int = 0,
                 mode: str = "isotropic") -> None:
        if tau <= 0 or compressibility <= 0:
            raise ValueError("StochasticCellRescaling: tau > 0 fs and compressibility > 0 1/bar")
        if mode not in BAROSTAT_MODES:
            raise ValueError(f"StochasticCellRescaling: mode must be one of {BAROSTAT_MODES}, got {mode!r}")
        self.pressure = float(pressure)
        self.tau = float(tau)
        self.compressibility = float(compressibility)
        self.mode = mode
        self.heat = 0.0
        self.thermostat: Optional[_Thermostatted] = None
        self._p = 0.0
        self._tr_w = 0.0
        self._deps = 0.0
        # anisotropic mode: P_αα (eV/Å³), W_αα (eV) at the start of the step, Δε_α of the last rescaling
        self._p_diag = [0.0, 0.0, 0.0]
        self._w_diag = [0.0, 0.0, 0.0]
        self._deps_diag = [0.0, 0.0, 0.0]

    def attach(self, thermostat: _Thermostatted) -> None:
        self.thermostat = thermostat

    def measure(self, state: State) -> None:
        """Record the pressure (eV/Å³) and tr W at the start of the step (anisotropic: P_αα and W_αα)."""
        assert self.thermostat is not None
        if self.mode == "anisotropic":
            self._p_diag = [float(x) for x in pressure_diagonal(state, self.thermostat.comm)]
            self._w_diag = [float(x) for x in torch.diagonal(state.virial)]  # type: ignore[arg-type]
            return
        self._p = float(pressure(state, self.thermostat.comm))
        self._tr_w = float(torch.trace(state.virial))  # type: ignore[arg-type]

    def rescale(self, state: State) -> None:
        th = self.thermostat
        assert th is not None
        if not bool(state.pbc.all()):
            from mlpot.errors import SimulationError

            raise SimulationError("NPT (stochastic cell rescaling) needs a fully periodic cell (pbc = T T T)")
        if self.mode == "anisotropic":
            self._rescale_anisotropic(state, th)
            return
        dt = th.dt
        v = float(state.volume)
        beta = self.compressibility * EV_PER_A3_TO_BAR  # Å³/eV
        p0 = self.pressure * BAR_TO_EV_PER_A3
        r = float(th._global_randn(1, state)[0])
        deps = beta / self.tau * (self._p - p0) * dt + math.sqrt(2 * th.kt * beta * dt / (v * self.tau)) * r
        mu = math.exp(deps / 3)
        k0 = float(kinetic_energy(state, th.comm))
        n = state.n_local
        state.positions[:n] *= mu
        state.velocities[:n] /= mu
        state.cell.mul_(mu)
        k1 = k0 / (mu * mu)
        v1 = v * math.exp(deps)
        # energy the barostat put into the system: kinetic + P0 ΔV now, the potential part
        # ΔU ≈ −(tr W_before + tr W_after)/6 · Δε (trapezoid) completed in after_forces
        self.heat -= (k1 - k0) + p0 * (v1 - v) - self._tr_w / 6 * deps
        self._deps = deps

    def _rescale_anisotropic(self, state: State, th: _Thermostatted) -> None:
        dt = th.dt
        v = float(state.volume)
        beta = self.compressibility * EV_PER_A3_TO_BAR  # Å³/eV
        p0 = self.pressure * BAR_TO_EV_PER_A3
        r = [float(x) for x in th._global_randn(3, state)]
        drift = beta / (3 * self.tau) * dt
        noise = math.sqrt(2 * th.kt * beta * dt / (3 * v * self.tau))
        deps = [drift * (p - p0) + noise * ra for p, ra in zip(self._p_diag, r)]
        mu = [math.exp(d) for d in deps]
        k0 = [float(x) for x in kinetic_diagonal(state, th.comm)]
        mu_t = torch.tensor(mu, dtype=state.dtype, device=state.device)
        n = state.n_local
        state.positions[:n] *= mu_t  # r @ diag(mu)
        state.velocities[:n] /= mu_t
        state.cell.mul_(mu_t)  # cell @ diag(mu): column α of every lattice vector scaled by mu_α
        dk = sum(k / (m * m) - k for k, m in zip(k0, mu))
        v1 = v * math.exp(sum(deps))
        w_work = sum(w * d for w, d in zip(self._w_diag, deps))
        # kinetic + P0 ΔV now; ΔU ≈ −Σ_α (W_αα before + after)/2 · Δε_α completed in after_forces
        self.heat -= dk + p0 * (v1 - v) - 0.5 * w_work
        self._deps_diag = deps

    def after_forces(self, state: State) -> None:
        """Complete the potential-energy bookkeeping of the last rescaling with the new virial."""
        if self.mode == "anisotropic":
            w = [float(x) for x in torch.diagonal(state.virial)]  # type: ignore[arg-type]
            self.heat -= -0.5 * sum(wa * d for wa, d in zip(w, self._deps_diag))
            self._deps_diag = [0.0, 0.0, 0.0]
            return
        self.heat -= -float(torch.trace(state.virial)) / 6 * self._deps  # type: ignore[arg-type]
        self._deps = 0.0

    def conserved_extra(self, state: State) -> float:
        return self.pressure * BAR_TO_EV_PER_A3 * float(state.volume) + self.heat

    def state_dict(self) -> dict[str, Any]:
        return {"heat": self.heat, "pressure": self.pressure, "tau": self.tau, "compressibility": self.compressibility,
                "mode": self.mode}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        mode = d.get("mode", "isotropic")  # checkpoints from before the modes were isotropic
        if mode != self.mode:
            from mlpot.errors import SimulationError

            raise SimulationError(f"checkpoint written with barostat mode {mode!r}, restarting with {self.mode!r} "
                                  "(barostat_mode must match the checkpoint)")
        self.heat = float(d.get("heat", 0.0))
