"""Analytic free energies of the reference systems, exact for finite N (classical nuclei).

Units: T K, masses amu, spring constants eV/Å², volumes Å³, free energies eV (totals unless the name
says ``per_atom``); β = 1/k_BT. ħ = 0.6582119569 eV·fs (CODATA 2018), h = 2πħ. Frequencies ω = √(k/m)
in 1/fs with k/m converted by :data:`mlpot.units.FORCE_TO_ACC`.

**Einstein crystal** (N distinguishable atoms on springs k_i to fixed sites):
F_E = Σ_i 3 k_BT ln(ħω_i/k_BT).

**Fixed centre of mass.** Switching runs keep the mass-weighted centre of mass R = Σ μ_i r_i
(μ_i = m_i/Σm) fixed. For a potential U invariant under translations, the configurational integral of
N identical atoms in a periodic box V is ∫dⁿr e^{−βU}/N! = (V/N) ∫dⁿr δ(R − R₀) e^{−βU} for one
labelling (the COM runs over V; the N lattice translations of a crystal that map it onto itself,
each a permutation of the labels, leave N!/N distinct labellings). For the Einstein crystal, R is a
Gaussian variable of variance Σ_i μ_i² k_BT/k_i per direction, so
∫ δ(R − R₀) e^{−βU_E} = Z_E^conf (2π k_BT Σ μ_i²/k_i)^{−3/2}. With W the reversible work of the
switching U_E → U at fixed COM (momenta cancel), F = F_E + W + F_CM with

    F_CM = −k_BT ln[V (β/(2π Σ_i μ_i²/k_i))^{3/2}] + k_BT ln N

(Khanna, Anwar, Frenkel, Doherty & Peters, JCP 154, 164509 (2021); for equal masses and springs it is
k_BT ln[(N/V)(2π k_BT/(N k))^{3/2}], Freitas, Asta & de Koning, Comput. Mater. Sci. 112, 333 (2016),
Eq. 24; Polson et al., JCP 112, 5339 (2000)). The k_BT ln N term is the translation ≡ permutation
degeneracy: :func:`harmonic_lattice_free_energy` (exact normal modes) pins it in the tests.

**Harmonic lattice** (translation-invariant U = ½ uᵀ H u): βF = −ln(V/N) − (3/2) ln(2π M k_BT/h²)
+ Σ_{ω_j ≠ 0} ln(βħω_j), M = Σm (derivation: as above, the 3 zero modes are the COM).

**Ideal gas** (exact, no Stirling): βF = −Σ_s [N_s ln(V/Λ_s³) − ln N_s!], Λ_s = h/√(2π m_s k_BT).
Per atom this is k_BT[ln(ρΛ³) − 1] + k_BT ln(2πN)/(2N) + O(1/N²) for one species.

**Uhlenbeck–Ford excess free energy** F_UF^ex/(N k_BT) = f(x; p), x = bρ, b = ½(πσ²)^{3/2}, from the
table of Paula Leite, Freitas, Azevedo & de Koning, JCP 145, 194101 (2016) (values as tabulated at
x ∈ {0.5, 1, 2, 3, 3.9} for p ∈ {1, 25, 50, 75, 100}); between the tabulated x a cubic spline of f/x
through those points and the exact low-density limit f/x → B₂(p)/b (second virial coefficient,
computed here by quadrature). The phase workflow sets σ so that x is exactly a tabulated value.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mlpot.units import FORCE_TO_ACC, KB_EV_PER_K

#: ħ in eV·fs (CODATA 2018)
HBAR_EV_FS = 0.6582119569
#: h in eV·fs
H_EV_FS = 2 * math.pi * HBAR_EV_FS

#: Uhlenbeck–Ford f(x; p) = F_ex/(N k_BT) at the tabulated points (Paula Leite et al. 2016)
UF_X = (0.5, 1.0, 2.0, 3.0, 3.9)
UF_TABLE = {
    1: (0.52685, 1.09276, 2.28720, 3.52583, 4.66140),
    25: (6.03102, 17.28921, 45.14534, 75.34398, 103.35969),
    50: (10.15757, 32.20278, 87.78969, 148.15273, 204.16635),
    75: (13.91246, 46.69817, 130.02919, 220.55756, 304.56857),
    100: (17.48082, 60.98916, 172.07235, 292.76608, 404.77413),
}


def _arr(x: float | Sequence[float] | np.ndarray) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float64))


def thermal_wavelength(mass: float | np.ndarray, temperature: float) -> np.ndarray:
    """Λ = h/√(2π m k_BT) in Å (m amu, T K)."""
    kt = KB_EV_PER_K * temperature
    return np.sqrt(H_EV_FS**2 * FORCE_TO_ACC / (2 * math.pi * _arr(mass) * kt))


def einstein_frequency(k: float | np.ndarray, mass: float | np.ndarray) -> np.ndarray:
    """ω = √(k/m) in 1/fs (k eV/Å², m amu)."""
    return np.sqrt(_arr(k) * FORCE_TO_ACC / _arr(mass))


def einstein_free_energy(k: Sequence[float] | np.ndarray, masses: Sequence[float] | np.ndarray, temperature: float) -> float:
    """F_E = Σ_i 3 k_BT ln(ħω_i/k_BT), eV (k_i and m_i per atom, or broadcastable)."""
    kt = KB_EV_PER_K * temperature
    k, m = np.broadcast_arrays(_arr(k), _arr(masses))
    return float(np.sum(3 * kt * np.log(HBAR_EV_FS * einstein_frequency(k, m) / kt)))


def com_correction(k: Sequence[float] | np.ndarray, masses: Sequence[float] | np.ndarray, temperature: float,
                   volume: float) -> float:
    """F_CM of the module docstring (eV, total), k_i and m_i per atom."""
    kt = KB_EV_PER_K * temperature
    k, m = np.broadcast_arrays(_arr(k), _arr(masses))
    n = k.shape[0]
    mu = m / m.sum()
    s = float(np.sum(mu**2 / k))  # Å²/eV
    return float(-kt * math.log(volume * (1.0 / (kt * 2 * math.pi * s)) ** 1.5) + kt * math.log(n))


def harmonic_lattice_free_energy(omegas: Sequence[float] | np.ndarray, total_mass: float, n_atoms: int,
                                 temperature: float, volume: float) -> float:
    """Exact classical F (eV) of a translation-invariant harmonic lattice from its 3N − 3 non-zero
    normal-mode frequencies ``omegas`` (1/fs): module docstring."""
    kt = KB_EV_PER_K * temperature
    w = _arr(omegas)
    lam_m = H_EV_FS**2 * FORCE_TO_ACC / (2 * math.pi * total_mass * kt)  # Å² (Λ² of the total mass)
    beta_f = -math.log(volume / n_atoms) + 1.5 * math.log(lam_m) + float(np.sum(np.log(HBAR_EV_FS * w / kt)))
    return kt * beta_f


def normal_mode_frequencies(hessian: np.ndarray, masses: np.ndarray, n_zero: int = 3) -> np.ndarray:
    """√ of the eigenvalues of M^{-1/2} H M^{-1/2} (1/fs) without the ``n_zero`` smallest (the
    translations); H (3N, 3N) eV/Å², masses (N,) amu."""
    m = np.repeat(np.asarray(masses, dtype=np.float64), 3)
    d = hessian / np.sqrt(m[:, None] * m[None, :]) * FORCE_TO_ACC
    ev = np.sort(np.linalg.eigvalsh(0.5 * (d + d.T)))
    return np.sqrt(ev[n_zero:])


def ideal_gas_free_energy(counts: Sequence[int], masses: Sequence[float], temperature: float,
                                  volume: float) -> float:
    """Exact ideal-gas F (eV, total) with ``counts[s]`` atoms of mass ``masses[s]`` (amu) per species."""
    kt = KB_EV_PER_K * temperature
    ln_z = 0.0
    for c, m in zip(counts, masses):
        if c:
            ln_z += c * math.log(volume / float(thermal_wavelength(m, temperature)[0]) ** 3) - math.lgamma(c + 1.0)
    return -kt * ln_z


def uf_b(sigma: float) -> float:
    """b = ½(πσ²)^{3/2} (Å³): the second virial coefficient of the p = 1 UF model."""
    return 0.5 * (math.pi * sigma**2) ** 1.5


def uf_second_virial(p: float, sigma: float = 1.0) -> float:
    """B₂(p) = 2π ∫ (1 − (1 − e^{−r²/σ²})^p) r² dr (Å³), by quadrature."""
    r = np.linspace(0.0, 12.0 * sigma, 200001)
    g = 1.0 - (-np.expm1(-(r / sigma) ** 2)) ** p
    return float(2 * math.pi * np.trapezoid(g * r**2, r))


def uf_excess_free_energy(p: float, x: float) -> float:
    """f(x; p) = F_UF^ex/(N k_BT) (dimensionless): the table value at a tabulated (p, x), else the
    cubic-spline interpolation of f/x of the module docstring; ValueError outside the table."""
    pk = int(round(p))
    if abs(p - pk) > 1e-9 or pk not in UF_TABLE:
        raise ValueError(f"Uhlenbeck–Ford p = {p}: tabulated only for p in {sorted(UF_TABLE)}")
    if not 0 < x <= 3.9 + 1e-12:
        raise ValueError(f"Uhlenbeck–Ford x = bρ = {x}: tabulated for 0 < x ≤ 3.9")
    for xi, fi in zip(UF_X, UF_TABLE[pk]):
        if abs(x - xi) < 1e-9:
            return fi
    from scipy.interpolate import CubicSpline

    xs = np.array((0.0,) + UF_X)
    ys = np.array((uf_second_virial(pk) / uf_b(1.0),) + tuple(f / xi for f, xi in zip(UF_TABLE[pk], UF_X)))
    return float(CubicSpline(xs, ys)(x) * x)


def uf_sigma_for(x: float, density: float) -> float:
    """The σ (Å) that puts a liquid of number density ``density`` (Å⁻³) at scaled density x."""
    return (2 * x / density) ** (1.0 / 3.0) / math.sqrt(math.pi)


__all__ = ["HBAR_EV_FS", "H_EV_FS", "UF_X", "UF_TABLE", "thermal_wavelength", "einstein_frequency",
           "einstein_free_energy", "com_correction", "harmonic_lattice_free_energy", "normal_mode_frequencies",
           "ideal_gas_free_energy", "uf_b", "uf_second_virial",
           "uf_excess_free_energy", "uf_sigma_for"]
