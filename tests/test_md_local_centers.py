"""Local-center evaluation for the MPI ghost path: ``EnergyModel``/``evaluate(n_centers=...)`` and
``mlpot.neighbors.local_pair_list``.

References: the full model evaluation (every atom a center) differentiated by autograd with respect
to the local atomic energies only; the periodic (shift-based) serial evaluation of the same box; the
brute-force pair search of mlpot.neighbors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlpot.model import evaluate
from mlpot.neighbors import NeighborList, local_pair_list, neighbor_list_brute_force, pair_vectors
from md_engine.comm import SERIAL
from md_engine.domain import GhostDomain
from md_engine.state import State

RC, SKIN = 3.5, 0.5


#: the hyperparameters of this file's model: non-trivial statistics (``gaussian_global``: drawn from
#: torch's global generator after torch.manual_seed(0)) and bias, so that padding terms matter
L = dict(rcut=RC, sel=(20, 40), neuron=(4, 8), fitting=(8, 8), seed=1, fitting_seed=2, resnet_dt=False, torch_seed=0,
         stats="gaussian_global", energy_bias=(-3.0, -1.5))


def _water_box() -> State:
    """96 atoms of water-like O/H in a sheared periodic box ~9.3 Å (random, min distance > 0.8 Å)."""
    rng = np.random.default_rng(3)
    cell = np.array([[9.3, 0.0, 0.0], [1.2, 9.1, 0.0], [0.5, -0.7, 9.4]])
    frac = rng.random((96, 3))
    pos = frac @ cell
    types = np.array([0] * 32 + [1] * 64)
    st = State(positions=torch.tensor(pos), velocities=torch.zeros(96, 3, dtype=torch.float64),
               masses=torch.ones(96, dtype=torch.float64), types=torch.tensor(types), cell=torch.tensor(cell),
               pbc=torch.ones(3, dtype=torch.bool), type_map=["O", "H"])
    return st


@pytest.fixture(scope="module")
def ghost_setup():
    """Local + ghost atoms (explicit periodic images) of the box, local-center pair list."""
    st = _water_box()
    dom = GhostDomain(SERIAL, st.cell, st.pbc, RC + SKIN)
    dom.migrate(st)
    pos_all, nl = dom.build(st)
    return st, dom, pos_all, nl


def test_restricted_evaluation_equals_full_local_part(tiny_model, ghost_setup):
    st, dom, pos_all, nl_local = ghost_setup
    model = tiny_model(**L)
    n, n_all = dom.n_local, dom.n_all
    assert n_all > n  # there are ghosts
    types = dom.all_types
    zero = torch.zeros(1, 3, 3, dtype=torch.float64)
    nopbc = torch.zeros(1, 3, dtype=torch.bool)
    fidx = torch.zeros(n_all, dtype=torch.long)

    # reference: every atom a center (full list of the cluster); E_local = Σ_{i<n} E_i by autograd
    full = neighbor_list_brute_force(pos_all, zero, nopbc, RC + SKIN)
    p = pos_all.clone().requires_grad_(True)
    rij = pair_vectors(p, zero, fidx, full)
    out = model.energy_from_edges(rij, types, fidx, full.centers, full.neighbors, 1)
    assert out["atom_energy"].shape == (n_all,)
    e_loc = out["atom_energy"][:n].sum()
    g_pos, g_rij = torch.autograd.grad(e_loc, (p, rij))
    f_ref = -g_pos
    w_ref = -(rij.detach().T @ g_rij)
    e_loc = e_loc.detach()

    # restricted: local centers only (descriptor + fitting on the n local atoms)
    r = {k: v.detach() for k, v in evaluate(model, pos_all, types, zero, nopbc, nl=nl_local, n_centers=n).items()}
    assert r["atom_energy"].shape == (n,)
    tol = 1e-12
    assert abs(float(r["energy"][0] - e_loc)) <= tol * abs(float(e_loc))
    assert torch.allclose(r["atom_energy"], out["atom_energy"][:n].detach(), rtol=tol, atol=0)
    scale = float(f_ref.abs().max())
    assert float((r["forces"] - f_ref).abs().max()) <= tol * scale
    assert float(f_ref[n:].abs().max()) > 1e-3 * scale  # ghost forces are there and were compared
    assert float((r["virial"][0] - w_ref).abs().max()) <= tol * float(w_ref.abs().max())

    # the same restricted result from the full cluster list: pairs centered on ghosts are ignored
    r2 = {k: v.detach() for k, v in evaluate(model, pos_all, types, zero, nopbc, nl=full, n_centers=n).items()}
    assert abs(float(r2["energy"][0] - r["energy"][0])) <= tol * abs(float(e_loc))
    assert float((r2["forces"] - r["forces"]).abs().max()) <= tol * scale

    # default (n_centers=None) is unchanged: all atoms are centers
    r3 = evaluate(model, pos_all, types, zero, nopbc, nl=full)
    assert r3["atom_energy"].shape == (n_all,)
    assert torch.allclose(r3["atom_energy"], out["atom_energy"].detach(), rtol=tol, atol=0)


def test_restricted_evaluation_with_reverse_forces_equals_periodic(tiny_model, ghost_setup):
    """Σ local energies, ghost forces folded onto their owners, and the virial equal the periodic
    (lattice shift) evaluation of the box."""
    st, dom, pos_all, nl_local = ghost_setup
    model = tiny_model(**L)
    n = dom.n_local
    with torch.no_grad():  # evaluate() then returns detached results
        r = evaluate(model, pos_all, dom.all_types, torch.zeros(3, 3, dtype=torch.float64),
                     torch.zeros(3, dtype=torch.bool), nl=nl_local, n_centers=n)
        ref = evaluate(model, st.positions, st.types, st.cell, st.pbc)
    assert abs(float(r["energy"][0] - ref["energy"][0])) <= 1e-12 * abs(float(ref["energy"][0]))
    f = dom.reverse(r["forces"])
    assert float((f - ref["forces"]).abs().max()) <= 1e-11 * float(ref["forces"].abs().max())
    assert float((r["virial"] - ref["virial"]).abs().max()) <= 1e-11 * float(ref["virial"].abs().max())


def test_n_centers_out_of_range_is_a_model_error(tiny_model, ghost_setup):
    from mlpot.errors import ModelError

    st, dom, pos_all, nl_local = ghost_setup
    with pytest.raises(ModelError, match="n_centers"):
        evaluate(tiny_model(**L), pos_all, dom.all_types, torch.zeros(3, 3, dtype=torch.float64),
                 torch.zeros(3, dtype=torch.bool), nl=nl_local, n_centers=dom.n_all + 1)


def _pairs(c: torch.Tensor, j: torch.Tensor) -> list:
    return sorted(zip(c.tolist(), j.tolist()))


@pytest.mark.parametrize("seed", range(6))
def test_local_pair_list_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n_all = int(torch.randint(2, 300, (1,), generator=g))
    n_local = [0, 1, n_all // 3, n_all - 1, n_all, int(torch.randint(0, n_all + 1, (1,), generator=g))][seed]
    size = torch.tensor([12.0, 3.0, 20.0]) * (0.3 + float(torch.rand(1, generator=g)))
    pos = torch.rand(n_all, 3, generator=g, dtype=torch.float64) * size - 5.0
    rc = 1.0 + 2.5 * float(torch.rand(1, generator=g))
    ref = neighbor_list_brute_force(pos, torch.zeros(1, 3, 3, dtype=torch.float64),
                                    torch.zeros(1, 3, dtype=torch.bool), rc)
    keep = ref.centers < n_local
    nl = local_pair_list(pos, n_local, rc)
    assert isinstance(nl, NeighborList) and bool((nl.shifts == 0).all())
    assert _pairs(nl.centers, nl.neighbors) == _pairs(ref.centers[keep], ref.neighbors[keep])
    assert nl.centers.numel() == int(keep.sum())  # no duplicates
