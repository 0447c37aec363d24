"""Effective-medium theory (``potential: {type: emt, type_map: [Cu]}``), vectorised in torch: the same
potential as ASE's ``ase.calculators.emt.EMT`` (default ``asap_cutoff=False``), with ASE's parameters,
cutoff and smoothing, so that a model trained on ASE-EMT labels can be compared with EMT itself at
MD speed (ASE's EMT is pure Python: ~18 ms per force call for 108 Cu atoms on one loaded CPU thread,
this one ~1.3 ms; benchmarks/RESULTS.md). tests/test_emt_potential.py: energy, per-atom energies,
forces and stress equal ASE's to ≤ 1e-10.

Physics: K. W. Jacobsen, P. Stoltze & J. K. Nørskov, Surf. Sci. 366, 394 (1996), in ASE's
formulation. Units: energies eV, lengths Å (the parameter table is in bohr, converted with ASE's
value of the bohr, :data:`BOHR`). β = 1.809 (ASE's rounding of (16π/3)^{1/3}/√2).

Per element (table :data:`PARAMETERS`): E0 (eV), s0 (Å), V0 (eV), η2, κ, λ (1/Å), n0 (1/Å³).

Smoothing (one Fermi function for all elements)::

    w(r) = 1 / (1 + exp(a (r − r_c))),   for r < r_list, else 0
    r1 = β · max(s0) (the largest s0 of the WHOLE table, ASE's default: Ag, 3.01 bohr)
    r_c = r1 (√3 + 2)/2   (between the 3rd and 4th fcc shells),  a = ln(1/ε − 1)/(2 r1 − r_c), ε = 1e-4
    r_list = r_c + 0.5 Å  (the hard cutoff of the pair sums; = :attr:`EMT.cutoff`, 5.877 Å for every
                           element set; w(r_list) = 6e-6, the small jump ASE's EMT has too)

(``asap_cutoff: true``: ASE's ``EMT(asap_cutoff=True)``: max(s0) over the elements of ``type_map``
only and r_list = 1.045 r_c.) Reference fcc shells k = 1, 2, 3 (n_k = 12, 6, 24, r_k = β s0 √k),
x_k = n_k w(r_k)/12::

    γ1 = Σ_k x_k exp(−η2 (r_k − β s0)),   γ2 = Σ_k x_k exp(−(κ/β)(r_k − β s0))

Energy of atom i (element of i: subscript i; of neighbour j: j; χ_ij = n0_j / n0_i)::

    σ1_i = Σ_j χ_ij exp(−η2_j (r_ij − β s0_j)) w(r_ij)
    s_i  = −ln(σ1_i / (12 γ1_i)) / (β η2_i)                                 (Å)
    E_i  = E0_i (1 + λ_i s_i) e^{−λ_i s_i} + 6 V0_i e^{−κ_i s_i} − E0_i
           + ½ Σ_j [e_ij + e_ji],    e_ij = −(V0_i / 2γ2_i) χ_ij exp(−κ_j (r_ij/β − s0_j)) w(r_ij)

(an atom without neighbours inside r_list has E_i = −E0_i, as in ASE). E = Σ_i E_i.

Forces and virial are analytic, one term per ordered pair p = (i, j) of the full list::

    ∂E/∂r_p = E'_i(σ1_i) ∂σ1_i/∂r_p + ½ ∂(e_ij + e_ji)/∂r_p,
    E'_i(σ1) = [−E0 λ² s e^{−λs} − 6 κ V0 e^{−κs}] · (−1 / (β η2 σ1)),
    g_p = (∂E/∂r_p / r_p) r_p⃗,  F_i += g_p, F_j −= g_p,  W = −Σ_p r_p⃗ ⊗ g_p (eV, = −stress·V)

and the energy is also differentiable by autograd (the tests compare the analytic forces with finite
differences and with autograd). Serially the pairs are summed on the dense half table of
:mod:`md_engine.potentials.pairs` (each pair once, both orientations' terms from its distance).

Ghost atoms (``n_local``, MPI domains): E_i needs only the pairs (i, j) with centre i, so the local
energy Σ_{i<n_local} E_i and its exact derivatives come from the pairs with local centres (the
ghost-centred pairs, if any, get weight 0); a ghost's density is never needed. The ghost shell must
be ≥ r_list + skin deep, which the domain layer guarantees from :attr:`EMT.cutoff` (tested on 2 MPI ranks).

Supported elements: those of ASE's table (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O are in ASE's table
"not for serious use"). Computed in float64 whatever the positions' dtype; results in that dtype.
"""

from __future__ import annotations

import math
from typing import AbstractSet, Literal, Optional

import torch
from pydantic import Field, field_validator

from mlpot.errors import ConfigError
from mlpot.neighbors import NeighborList

from md_engine.config import PotentialConfig
from md_engine.potentials.base import FORCE_OUTPUTS, POTENTIALS, pair_vectors
from md_engine.potentials.pairs import PaddedPairs, padded_pairs, reduce_pairs

#: Å per bohr, ASE's value (ase.units.Bohr, CODATA 2014), so that the numbers equal ASE's
BOHR = 0.5291772105638411
#: ASE's β (historical rounding of (16π/3)^{1/3}/√2)
BETA = 1.809

#: element → (E0 eV, s0 bohr, V0 eV, η2 1/bohr, κ 1/bohr, λ 1/bohr, n0 1/bohr³), ASE's EMT table
PARAMETERS: dict[str, tuple[float, float, float, float, float, float, float]] = {
    "Al": (-3.28, 3.00, 1.493, 1.240, 2.000, 1.169, 0.00700),
    "Cu": (-3.51, 2.67, 2.476, 1.652, 2.740, 1.906, 0.00910),
    "Ag": (-2.96, 3.01, 2.132, 1.652, 2.790, 1.892, 0.00547),
    "Au": (-3.80, 3.00, 2.321, 1.674, 2.873, 2.182, 0.00703),
    "Ni": (-4.44, 2.60, 3.673, 1.669, 2.757, 1.948, 0.01030),
    "Pd": (-3.90, 2.87, 2.773, 1.818, 3.107, 2.155, 0.00688),
    "Pt": (-5.85, 2.90, 4.067, 1.812, 3.145, 2.192, 0.00802),
    # ASE: "not well described by EMT, not for any serious use"
    "H": (-3.21, 1.31, 0.132, 2.652, 2.790, 3.892, 0.00547),
    "C": (-3.50, 1.81, 0.332, 1.652, 2.790, 1.892, 0.01322),
    "N": (-5.10, 1.88, 0.132, 1.652, 2.790, 1.892, 0.01222),
    "O": (-4.60, 1.95, 0.332, 1.652, 2.790, 1.892, 0.00850),
}
SUPPORTED = tuple(PARAMETERS)


def _check_elements(type_map: list[str]) -> None:
    bad = [e for e in type_map if e not in PARAMETERS]
    if bad:
        raise ConfigError(f"potential.type_map: no EMT parameters for {', '.join(map(repr, bad))}; "
                          f"EMT (ASE's table) supports {', '.join(SUPPORTED)}")
    if not type_map:
        raise ConfigError("potential.type_map: expected at least one element")


class EMTConfig(PotentialConfig):
    """``potential: {type: emt, type_map: [Cu, ...], asap_cutoff: false}``."""

    type: Literal["emt"] = "emt"
    type_map: list[str] = Field(description=f"element of each type index; one of {', '.join(SUPPORTED)}")
    asap_cutoff: bool = Field(default=False, description="ASE's EMT(asap_cutoff=True): cutoff from the type_map's "
                                                         "elements, r_list = 1.045 r_c (default: ASE's default)")

    @field_validator("type_map")
    @classmethod
    def _elements(cls, v: list[str]) -> list[str]:
        try:
            _check_elements(v)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("potential.type_map: ")) from None
        return v


def cutoff_parameters(elements: Optional[list[str]] = None, asap_cutoff: bool = False) -> tuple[float, float, float]:
    """(r_c Å, r_list Å, a 1/Å) of the module docstring; ``elements`` matter only with ``asap_cutoff``."""
    table = [PARAMETERS[e] for e in elements] if asap_cutoff and elements else list(PARAMETERS.values())
    r1 = BETA * max(p[1] for p in table) * BOHR
    rc = r1 * 0.5 * (math.sqrt(3.0) + 2.0)
    acut = math.log(1.0 / 1e-4 - 1.0) / (2.0 * r1 - rc)
    return rc, (rc * 1.045 if asap_cutoff else rc + 0.5), acut


@POTENTIALS.register("emt", config=EMTConfig)
class EMT:
    """ASE's EMT in torch (module docstring); ``type_map`` maps type indices to elements."""

    def __init__(self, type_map: list[str], asap_cutoff: bool = False) -> None:
        _check_elements(list(type_map))
        self.type_map = list(type_map)
        self.asap_cutoff = bool(asap_cutoff)
        self.rc, self.cutoff, self.acut = cutoff_parameters(self.type_map, self.asap_cutoff)
        f64 = dict(dtype=torch.float64)
        p = torch.tensor([PARAMETERS[e] for e in self.type_map], **f64)  # (T, 7)
        e0, s0, v0 = p[:, 0], p[:, 1] * BOHR, p[:, 2]
        eta2, kappa, lam, n0 = p[:, 3] / BOHR, p[:, 4] / BOHR, p[:, 5] / BOHR, p[:, 6] / BOHR**3
        # reference fcc shells → γ1, γ2 per element
        nk = torch.tensor([12.0, 6.0, 24.0], **f64)
        rk = BETA * s0[:, None] * torch.sqrt(torch.tensor([1.0, 2.0, 3.0], **f64))  # (T, 3)
        xk = nk * (1.0 / (1.0 + torch.exp(self.acut * (rk - self.rc)))) / 12.0
        gamma1 = (xk * torch.exp(-eta2[:, None] * (rk - BETA * s0[:, None]))).sum(1)
        gamma2 = (xk * torch.exp(-kappa[:, None] / BETA * (rk - BETA * s0[:, None]))).sum(1)
        self.e0, self.v0, self.lam, self.kappa, self.eta2 = e0, v0, lam, kappa, eta2
        self.log12g1 = torch.log(12.0 * gamma1)
        # pair tables [t_i, t_j]: σ1 term = w exp(B1 − A1 r); e_ij = −w exp(B2 − A2 r); e_ji = −w exp(B3 − A3 r)
        lnchi = torch.log(n0[None, :] / n0[:, None])
        lnv = torch.log(v0 / (2.0 * gamma2))
        nt = len(self.type_map)
        ones = torch.ones(nt, nt, **f64)
        self._tables = torch.stack([
            ones * eta2[None, :], eta2[None, :] * BETA * s0[None, :] + lnchi,
            ones * (kappa[None, :] / BETA), lnv[:, None] + lnchi + kappa[None, :] * s0[None, :],
            ones * (kappa[:, None] / BETA), lnv[None, :] - lnchi + kappa[:, None] * s0[:, None],
        ])  # (6, T, T)
        self._tables_2d = torch.cat([self._tables, self._tables[:2].transpose(1, 2)])  # + A1, B1 of (j, i)
        self._tables = self._tables.reshape(6, nt * nt)
        self._scalars = tuple(float(t) for t in self._tables_2d.reshape(-1)) if nt == 1 else None
        self._atom_params = torch.stack([e0, v0, lam, kappa, eta2, self.log12g1])  # (6, T)
        self._cache_key: Optional[tuple] = None
        self._cache: Optional[torch.Tensor] = None
        self._atom_key: Optional[tuple] = None
        self._atom_cache: Optional[torch.Tensor] = None

    @classmethod
    def from_config(cls, config: EMTConfig, device: Optional[torch.device] = None) -> "EMT":
        """From the validated ``potential`` section (parameters on the CPU, moved per call)."""
        return cls(config.type_map, asap_cutoff=config.asap_cutoff)

    def _pair_params(self, nl: NeighborList, types: torch.Tensor) -> torch.Tensor:
        """(6, P) A1, B1, A2, B2, A3, B3 of each pair (cached while the list and types are unchanged)."""
        key = (nl.centers, nl.neighbors, types, types._version)
        ck = self._cache_key
        if ck is not None and ck[0] is key[0] and ck[1] is key[1] and ck[2] is key[2] and ck[3] == key[3] \
                and self._cache is not None and self._cache.device == types.device:
            return self._cache
        nt = len(self.type_map)
        tp = types[nl.centers] * nt + types[nl.neighbors]
        params = self._tables.to(types.device)[:, tp]
        self._cache_key, self._cache = key, params
        return params

    def compute(
        self,
        positions: torch.Tensor,
        atom_types: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        nl: NeighborList,
        n_local: Optional[int] = None,
        outputs: AbstractSet[str] = FORCE_OUTPUTS,
    ) -> dict[str, torch.Tensor]:
        """``energy`` 0-d eV (of atoms [:n_local]), ``forces`` (N, 3) eV/Å, ``virial`` (3, 3) eV (those
        requested), and ``energies`` (N,) eV (per-atom E_i, ghosts 0) when asked for, from the full
        pair list ``nl`` (pairs beyond r_list contribute nothing). Serially (``n_local`` None) on the
        dense half table of :mod:`md_engine.potentials.pairs` (each pair once: the same sums, faster)."""
        out_dtype = positions.dtype
        pos = positions.to(torch.float64)
        table = padded_pairs(nl, pos, cell) if n_local is None or n_local == pos.shape[0] else None
        if table is not None:
            out = self._compute_table(table, pos, atom_types.to(pos.device), cell, outputs)
            return {k: v.to(out_dtype) for k, v in out.items()}
        dev = pos.device
        n = pos.shape[0]
        types = atom_types.to(device=dev)
        c, j = nl.centers, nl.neighbors
        d = pair_vectors(pos, cell.to(device=dev), None, nl)  # (P, 3) Å
        r = torch.sqrt(torch.einsum("pk,pk->p", d, d))
        a1, b1, a2, b2, a3, b3 = self._pair_params(nl, types).to(dev)
        inside = r < self.cutoff
        r = torch.where(inside, r, torch.full_like(r, self.cutoff))  # finite terms (and gradients) outside
        w = torch.where(inside, 1.0 / (1.0 + torch.exp(self.acut * (r - self.rc))), torch.zeros_like(r))
        dlnw = self.acut * (w - 1.0)  # (1/w) dw/dr
        if n_local is not None and n_local < n:
            loc = (c < n_local).to(r.dtype)
            w = w * loc  # only local centres' energies count
        sig_term = w * torch.exp(b1 - a1 * r)  # contributions to σ1 of the centre
        e_ij = -w * torch.exp(b2 - a2 * r)
        e_ji = -w * torch.exp(b3 - a3 * r)
        sigma1 = torch.zeros(n, dtype=r.dtype, device=dev).index_add_(0, c, sig_term)
        e_atom, de_dsig = self._atom_terms(sigma1, types)
        zero = torch.zeros_like(sigma1)
        if n_local is not None and n_local < n:
            e_atom = torch.where(torch.arange(n, device=dev) < n_local, e_atom, zero)
        h = 0.5 * (e_ij + e_ji)
        out: dict[str, torch.Tensor] = {"energy": (e_atom.sum() + h.sum()).to(out_dtype)}
        if "energies" in outputs:
            out["energies"] = e_atom.index_add(0, c, h).to(out_dtype)
        if "forces" in outputs or "virial" in outputs:
            de_dr = de_dsig[c] * sig_term * (dlnw - a1) + dlnw * h - 0.5 * (a2 * e_ij + a3 * e_ji)
            g = (de_dr / r)[:, None] * d  # ∂E/∂r⃗_p (P, 3)
            if "forces" in outputs:
                f = torch.zeros_like(pos).index_add_(0, c, g).index_add_(0, j, g, alpha=-1.0)
                out["forces"] = f.to(out_dtype)
            if "virial" in outputs:
                out["virial"] = (-(d.T @ g)).to(out_dtype)
        return out

    def _atom_terms(self, sigma1: torch.Tensor, types: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_i without the pair terms (N,) eV, dE_i/dσ1_i (N,) eV) from the densities σ1 (N,)."""
        key = (types, types._version)
        ak = self._atom_key
        if ak is None or ak[0] is not key[0] or ak[1] != key[1] or self._atom_cache is None \
                or self._atom_cache.device != types.device:
            self._atom_key, self._atom_cache = key, self._atom_params.to(types.device)[:, types]  # (6, N)
        e0, v0, lam, kap, eta2, log12g1 = self._atom_cache  # type: ignore[misc]
        has = sigma1 > 0
        sig_safe = torch.where(has, sigma1, torch.ones_like(sigma1))
        s = (log12g1 - torch.log(sig_safe)) / (BETA * eta2)  # Å
        exl, exk = torch.exp(-lam * s), 6.0 * v0 * torch.exp(-kap * s)
        zero = torch.zeros_like(sigma1)
        e_atom = torch.where(has, e0 * (1.0 + lam * s) * exl + exk, zero) - e0
        de_dsig = torch.where(has, (-e0 * lam * lam * s * exl - kap * exk) / (-BETA * eta2 * sig_safe), zero)
        return e_atom, de_dsig

    def _compute_table(self, table: PaddedPairs, pos: torch.Tensor, types: torch.Tensor, cell: torch.Tensor,
                       outputs: AbstractSet[str]) -> dict[str, torch.Tensor]:
        """The serial path: each pair (i, j) once, both orientations' terms from its one distance."""
        d, r2 = table.geometry(pos, cell)  # (3, N, K), (N, K)
        if self._scalars is not None:
            a1, b1, a2, b2, a3, b3, a1t, b1t = self._scalars
        else:
            a1, b1, a2, b2, a3, b3, a1t, b1t = (table.pair_params(f"emt{id(self)}_{k}", t, types)
                                                for k, t in enumerate(self._tables_2d))
        r = torch.sqrt(r2)
        inside = r < self.cutoff
        r = torch.where(inside, r, torch.full_like(r, self.cutoff))  # finite terms (and gradients) outside
        w = torch.where(inside, 1.0 / (1.0 + torch.exp(self.acut * (r - self.rc))), torch.zeros_like(r))
        dlnw = self.acut * (w - 1.0)
        nbr = table.neighbors.reshape(-1)
        out: dict[str, torch.Tensor] = {}
        if self._scalars is not None:  # one element: both orientations' terms are equal
            t = w * torch.exp(b1 - a1 * r)  # to σ1 of both atoms of the pair
            sigma1 = t.sum(1).index_add(0, nbr, t.reshape(-1))
            e_ij = (-2.0 * w) * torch.exp(b2 - a2 * r)
            pe = e_ij  # both orientations' pair energy
            e_atom, de_dsig = self._atom_terms(sigma1, types)
            if "forces" in outputs or "virial" in outputs:
                de_dr = (de_dsig.unsqueeze(1) + de_dsig[table.neighbors]) * t * (dlnw - a1) + (dlnw - a2) * pe
                out = reduce_pairs(table, pe, de_dr / r, d, outputs)
        else:
            t_ij = w * torch.exp(b1 - a1 * r)  # to σ1 of the centre i
            t_ji = w * torch.exp(b1t - a1t * r)  # to σ1 of the neighbour j
            sigma1 = t_ij.sum(1).index_add(0, nbr, t_ji.reshape(-1))
            e_ij = -w * torch.exp(b2 - a2 * r)
            e_ji = -w * torch.exp(b3 - a3 * r)
            pe = e_ij + e_ji  # both orientations' pair energy
            e_atom, de_dsig = self._atom_terms(sigma1, types)
            if "forces" in outputs or "virial" in outputs:
                de_dr = (de_dsig.unsqueeze(1) * t_ij * (dlnw - a1) + de_dsig[table.neighbors] * t_ji * (dlnw - a1t)
                         + dlnw * pe - (a2 * e_ij + a3 * e_ji))
                out = reduce_pairs(table, pe, de_dr / r, d, outputs)
        out["energy"] = e_atom.sum() + pe.sum()
        if "energies" in outputs:
            out["energies"] = e_atom + 0.5 * pe.sum(1).index_add(0, nbr, pe.reshape(-1))
        return out


__all__ = ["EMT", "EMTConfig", "PARAMETERS", "SUPPORTED", "BOHR", "BETA", "cutoff_parameters"]
