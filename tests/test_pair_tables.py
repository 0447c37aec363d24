"""md_engine.potentials.pairs: the dense half table of the serial pair potentials (LJ, UF) gives the
sums of the flat full-list path (the independent reference: ``n_local`` = N takes that path), keeps
exactly one orientation of every pair, and its caches follow in-place changes of positions and cell."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from mlpot.neighbors import pair_vectors
from mlpot.neighbors.cell_list import neighbor_list
from md_engine.potentials.base import FORCE_OUTPUTS
from md_engine.potentials.lj import LennardJones
from md_engine.potentials.pairs import half_mask, padded_pairs
from md_engine.potentials.uf import UhlenbeckFord

SIG = 3.4


def _system(cubic: bool, repeat: int, seed: int = 0, skew: bool = False):
    a = (4 / 0.9731) ** (1 / 3) * SIG
    at = bulk("Ar", "fcc", a=a, cubic=cubic).repeat(repeat)
    g = torch.Generator().manual_seed(seed)
    cell = torch.tensor(at.cell.array)
    if skew:
        cell = cell + torch.tensor([[0.0, 0.0, 0.0], [1.3, 0.0, 0.0], [0.4, -0.9, 0.0]])
    frac = torch.tensor(at.get_scaled_positions())
    pos = frac @ cell + 0.25 * torch.randn(len(at), 3, generator=g, dtype=torch.float64)
    pbc = torch.tensor([True, True, True])
    nl = neighbor_list(pos, cell.unsqueeze(0), pbc.reshape(1, 3), 2.5 * SIG + 1.0)
    types = torch.randint(0, 2, (len(at),), generator=g)
    return pos, cell, pbc, nl, types


POTENTIALS = [
    LennardJones(0.0104, SIG, 2.5 * SIG),
    LennardJones(0.0104, SIG, 2.5 * SIG, shift=False),
    LennardJones(0.0104, SIG, 2.5 * SIG, smooth=True),
    LennardJones(0.0104, SIG, 2.5 * SIG, tail=True),
    LennardJones([[0.010, 0.015], [0.015, 0.020]], [[3.4, 3.1], [3.1, 2.9]], 2.5 * SIG),
    UhlenbeckFord(50.0, 1.6, 300.0),
]


@pytest.mark.parametrize("cubic,repeat,skew", [(True, 3, False), (False, 2, True), (False, 1, False)])
@pytest.mark.parametrize("pot", POTENTIALS, ids=lambda p: type(p).__name__)
def test_table_matches_flat_list(pot, cubic, repeat, skew):
    pos, cell, pbc, nl, types = _system(cubic, repeat, skew=skew)
    n = pos.shape[0]
    assert padded_pairs(nl, pos, cell) is not None  # the table path is taken
    fast = pot.compute(pos, types, cell, pbc, nl)
    flat = pot.compute(pos, types, cell, pbc, nl, n_local=n)
    for key in FORCE_OUTPUTS:  # round-off only: relative 1e-12, absolute 1e-14 (eV, eV/Å; forces of the
        # one-atom cell vanish by symmetry, |F| ~ 1e-18)
        scale = float(flat[key].abs().max())
        assert float((fast[key] - flat[key]).abs().max()) <= 1e-12 * scale + 1e-14, key
    # forces are −∂E/∂r of the table's own energy (autograd through the table path)
    p = pos.clone().requires_grad_(True)
    e = pot.compute(p, types, cell, pbc, nl, outputs={"energy"})["energy"]
    (g,) = torch.autograd.grad(e, p)
    assert torch.allclose(-g, fast["forces"], rtol=0, atol=1e-12 * float(fast["forces"].abs().max()) + 1e-14)


def test_half_mask_keeps_one_orientation_of_each_pair():
    pos, cell, pbc, nl, _ = _system(False, 1)  # one atom per cell: self-images (i, i, ±s) only
    for p_, c_ in ((pos, cell), _system(True, 2)[:2]):
        lst = neighbor_list(p_, c_.unsqueeze(0), pbc.reshape(1, 3), 2.5 * SIG + 1.0)
        keep = half_mask(lst, p_, c_)
        assert int(keep.sum()) * 2 == lst.centers.numel()
        d = pair_vectors(p_, c_, None, lst)
        # every kept vector's reverse (the same pair seen from j) is dropped
        key = {(int(i), int(j), tuple(s.tolist())) for i, j, s in zip(lst.centers[keep], lst.neighbors[keep], lst.shifts[keep])}
        for i, j, s in zip(lst.centers[keep], lst.neighbors[keep], lst.shifts[keep]):
            assert (int(j), int(i), tuple((-s).tolist())) not in key
        assert bool((d[keep] @ torch.tensor([0.5773502691896258, 0.5345224838248488, 0.6172133998483676],
                                             dtype=d.dtype) > 0).all())


def test_caches_follow_in_place_changes():
    pos, cell, pbc, nl, types = _system(True, 3, seed=3)
    lj = LennardJones(0.0104, SIG, 2.5 * SIG)
    lj.compute(pos, types, cell, pbc, nl)
    pos += 0.05  # in place (as the integrator's drift): the cached geometry must not be reused
    cell *= 1.01  # in place (as the barostat's rescaling): nor the cached shift vectors
    fast = lj.compute(pos, types, cell, pbc, nl)
    flat = lj.compute(pos, types, cell, pbc, nl, n_local=pos.shape[0])
    for key in FORCE_OUTPUTS:
        assert torch.allclose(fast[key], flat[key], rtol=1e-12, atol=1e-15), key


def test_two_pair_potentials_share_one_geometry():
    """A coupled LJ ↔ UF Hamiltonian computes the pair geometry once per configuration."""
    from md_engine.potentials.coupled import CoupledPotential

    pos, cell, pbc, nl, types = _system(True, 2, seed=5)
    table = padded_pairs(nl, pos, cell)
    calls = []
    geometry = table.geometry

    def counting(p, c):
        out = geometry(p, c)
        calls.append(out[0])
        return out

    table.geometry = counting  # type: ignore[method-assign]
    cp = CoupledPotential(LennardJones(0.0104, SIG, 2.5 * SIG), UhlenbeckFord(50.0, 1.6, 300.0), lam=0.3)
    cp.compute(pos, types, cell, pbc, nl)
    assert len(calls) == 2 and calls[0] is calls[1]  # the second potential got the cached tensors
    d_before = calls[1].clone()
    pos[0] += 0.05  # one atom moves in place: the geometry is recomputed
    new = cp.compute(pos, types, cell, pbc, nl)
    assert calls[2] is not calls[1] and calls[3] is calls[2] and not torch.equal(calls[2], d_before)
    ref = cp.compute(pos, types, cell, pbc, nl, n_local=pos.shape[0])  # the flat path
    for key in FORCE_OUTPUTS:
        assert torch.allclose(new[key], ref[key], rtol=1e-12, atol=1e-14), key
