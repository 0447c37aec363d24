"""Neighbor search vs the brute-force reference and ASE's neighbor_list (exact (i, j, S) sets), for each
backend of neighbor_list: the torch cell-list kernel and vesin (skipped when vesin is not installed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from mlpot.errors import DataError
from mlpot.neighbors import (
    NeighborList,
    VerletList,
    complete_cell,
    local_pair_list,
    neighbor_list,
    neighbor_list_brute_force,
    neighbor_list_with,
    pair_vectors,
)
from mlpot.neighbors.vesin_backend import vesin_available



@pytest.fixture(params=["cell_list", "vesin"])
def backend(request) -> str:
    """Each single-frame check runs once per backend of neighbor_list."""
    if request.param == "vesin" and not vesin_available():
        pytest.skip("vesin is not installed")
    return request.param


def _rows(nl: NeighborList) -> np.ndarray:
    """(i, j, s0, s1, s2) rows, sorted lexicographically."""
    a = torch.cat([nl.centers[:, None], nl.neighbors[:, None], nl.shifts], dim=1).cpu().numpy()
    return a[np.lexsort(a.T[::-1])] if len(a) else a.reshape(0, 5)


def _ase_rows(pos: np.ndarray, cell: np.ndarray, pbc, cutoff: float) -> np.ndarray:
    atoms = Atoms("H" * len(pos), positions=pos, cell=cell, pbc=pbc)
    i, j, s = ase_neighbor_list("ijS", atoms, cutoff)
    a = np.concatenate([i[:, None], j[:, None], s], axis=1).astype(np.int64)
    return a[np.lexsort(a.T[::-1])] if len(a) else a.reshape(0, 5)


def _check(pos: torch.Tensor, cell: torch.Tensor, pbc, cutoff: float, backend: str, ase: bool = True) -> NeighborList:
    """``backend`` == brute force == ASE for one frame; no duplicates; every pair within the cutoff."""
    pbc_t = torch.as_tensor(pbc, dtype=torch.bool)
    nl = neighbor_list_with(backend, pos, cell[None], pbc_t[None], cutoff)
    assert nl.centers.dtype == nl.neighbors.dtype == nl.shifts.dtype == torch.long
    ours = _rows(nl)
    assert len(np.unique(ours, axis=0)) == len(ours), "duplicate pairs"
    ref = _rows(neighbor_list_brute_force(pos, cell[None], pbc_t[None], cutoff))
    np.testing.assert_array_equal(ours, ref)
    if ase:
        np.testing.assert_array_equal(ours, _ase_rows(pos.double().numpy(), cell.double().numpy(), pbc, cutoff))
    fi = torch.zeros(len(pos), dtype=torch.long)
    if len(ours):
        d = pair_vectors(pos, cell[None], fi, nl).norm(dim=1)
        assert float(d.max()) < cutoff and float(d.min()) > 0
    return nl


def _random_frame(gen: torch.Generator, n: int, cell: torch.Tensor, spread: float = 1.0) -> torch.Tensor:
    return torch.rand(n, 3, generator=gen, dtype=torch.float64) @ cell * spread


@pytest.mark.parametrize("seed", range(4))
def test_random_cubic(seed, backend):
    gen = torch.Generator().manual_seed(seed)
    length = 6.0 + 6.0 * float(torch.rand((), generator=gen))
    cell = torch.eye(3, dtype=torch.float64) * length
    pos = _random_frame(gen, 40, cell)
    nl = _check(pos, cell, [True, True, True], 4.5, backend)
    assert len(nl.centers) > 0


@pytest.mark.parametrize("seed", range(3))
def test_skewed_triclinic(seed, backend):
    gen = torch.Generator().manual_seed(10 + seed)
    cell = torch.tensor([[7.0, 0.0, 0.0], [5.5, 6.0, 0.0], [-4.0, 3.5, 6.5]], dtype=torch.float64)
    cell = cell + 0.5 * torch.randn(3, 3, generator=gen, dtype=torch.float64)
    pos = _random_frame(gen, 25, cell)
    _check(pos, cell, [True, True, True], 5.0, backend)


def test_tiny_cell_one_atom_many_self_images(backend):
    cell = torch.eye(3, dtype=torch.float64) * 2.0
    pos = torch.tensor([[0.3, 0.7, 1.1]], dtype=torch.float64)
    nl = _check(pos, cell, [True, True, True], 5.0, backend)
    # an atom sees its own images: all nonzero integer vectors s with 2|s| < 5
    s = torch.cartesian_prod(*[torch.arange(-3, 4)] * 3)
    expected = int(((2.0 * s.double().norm(dim=1) < 5.0) & (s.abs().sum(1) > 0)).sum())
    assert len(nl.centers) == expected and bool((nl.centers == 0).all())


def test_tiny_skewed_cell_several_atoms(backend):
    cell = torch.tensor([[2.2, 0.0, 0.0], [1.9, 1.8, 0.0], [0.4, -0.9, 2.5]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    _check(_random_frame(gen, 3, cell), cell, [True, True, True], 4.0, backend)


def test_thin_in_one_direction_only(backend):
    # 3.5 Å < rcut along z, 14 Å > 2·rcut along x and y
    cell = torch.diag(torch.tensor([14.0, 14.5, 3.5], dtype=torch.float64))
    gen = torch.Generator().manual_seed(5)
    _check(_random_frame(gen, 30, cell), cell, [True, True, True], 5.0, backend)
    # between rcut and 2·rcut
    cell = torch.diag(torch.tensor([13.0, 7.0, 12.0], dtype=torch.float64))
    _check(_random_frame(gen, 30, cell), cell, [True, True, True], 5.0, backend)


@pytest.mark.parametrize("pbc", [[True, False, True], [False, False, True]])
def test_mixed_pbc_zero_cell_vectors(pbc, backend):
    gen = torch.Generator().manual_seed(7)
    cell = torch.tensor([[6.0, 0.0, 0.0], [1.0, 6.5, 0.0], [0.5, 1.0, 5.5]], dtype=torch.float64)
    box = cell.clone()
    cell = cell * torch.tensor(pbc, dtype=torch.float64)[:, None]  # zero non-periodic vectors
    pos = _random_frame(gen, 30, box, spread=1.5)
    nl = _check(pos, cell, pbc, 4.0, backend)
    for k in range(3):
        if not pbc[k]:
            assert bool((nl.shifts[:, k] == 0).all())


def test_no_pbc_molecule(backend):
    gen = torch.Generator().manual_seed(8)
    pos = torch.randn(25, 3, generator=gen, dtype=torch.float64) * 3.0
    _check(pos, torch.zeros(3, 3, dtype=torch.float64), [False, False, False], 3.5, backend)
    # a non-zero cell with pbc off is ignored too
    _check(pos, torch.eye(3, dtype=torch.float64) * 4.0, [False, False, False], 3.5, backend)


def test_sparse_no_pbc_far_apart_clusters(backend):
    gen = torch.Generator().manual_seed(9)
    pos = torch.cat([torch.randn(10, 3, generator=gen, dtype=torch.float64), torch.randn(10, 3, generator=gen) + 5e4])
    _check(pos, torch.zeros(3, 3, dtype=torch.float64), [False, False, False], 2.5, backend, ase=False)


def test_atoms_far_outside_cell(backend):
    gen = torch.Generator().manual_seed(11)
    cell = torch.tensor([[8.0, 0.0, 0.0], [2.0, 7.0, 0.0], [0.0, -1.0, 9.0]], dtype=torch.float64)
    pos = _random_frame(gen, 30, cell)
    near = pos + torch.randint(-2, 3, (30, 3), generator=gen).double() @ cell + torch.randn(30, 3, generator=gen)
    _check(near, cell, [True, True, True], 4.5, backend)
    _check(near, cell * torch.tensor([[1.0], [1.0], [0.0]], dtype=torch.float64), [True, True, False], 4.5, backend)
    far = pos + torch.randint(-50, 50, (30, 3), generator=gen).double() @ cell  # brute force too costly here
    nl = neighbor_list_with(backend, far, cell[None], torch.ones(1, 3, dtype=torch.bool), 4.5)
    np.testing.assert_array_equal(_rows(nl), _ase_rows(far.numpy(), cell.numpy(), True, 4.5))


def test_complete_cell_mixed_pbc_skewed():
    # periodic vectors not orthogonal to each other: completion must stay orthogonal to their span
    cell = torch.tensor([[[6.0, 0.0, 0.0], [3.0, 6.0, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    full = complete_cell(cell, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(full[0, :2], cell[0, :2])
    torch.testing.assert_close(full[0, 2].abs(), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_water_box_matches_ase(water_dir, backend):
    d = water_dir / "data_0" / "set.000"
    pos = np.load(d / "coord.npy")[0].reshape(-1, 3).astype(np.float64)
    cell = np.load(d / "box.npy")[0].reshape(3, 3).astype(np.float64)
    pos = np.concatenate([pos, pos + cell[0]])  # 2×1×1 supercell, 384 atoms
    cell = cell * np.array([[2.0], [1.0], [1.0]])
    nl = neighbor_list_with(backend, torch.tensor(pos), torch.tensor(cell)[None], torch.ones(1, 3, dtype=torch.bool), 6.0)
    np.testing.assert_array_equal(_rows(nl), _ase_rows(pos, cell, True, 6.0))


def test_batch_of_frames():
    gen = torch.Generator().manual_seed(12)
    specs = [  # (n_atoms, cell, pbc)
        (12, torch.eye(3) * 7.0, [True, True, True]),
        (0, torch.eye(3) * 5.0, [True, True, True]),
        (1, torch.eye(3) * 2.0, [True, True, True]),
        (20, torch.tensor([[6.0, 0, 0], [3.0, 6.0, 0], [0, 0, 0]]), [True, True, False]),
        (15, torch.zeros(3, 3), [False, False, False]),
        (25, torch.tensor([[9.0, 0, 0], [-4.0, 8.0, 0], [2.0, 2.0, 3.0]]), [True, True, True]),
    ]
    cutoff = 4.0
    pos, cells, pbcs, fidx, expected = [], [], [], [], []
    offset = 0
    for f, (n, cell, pbc) in enumerate(specs):
        cell = cell.double()
        box = cell + torch.diag((~torch.tensor(pbc)).double() * 6.0)
        p = _random_frame(gen, n, box) + torch.randn(n, 3, generator=gen, dtype=torch.float64)
        ref = neighbor_list_brute_force(p, cell[None], torch.tensor(pbc)[None], cutoff)
        expected.append(_rows(NeighborList(ref.centers + offset, ref.neighbors + offset, ref.shifts)))
        pos.append(p)
        cells.append(cell)
        pbcs.append(pbc)
        fidx.append(torch.full((n,), f, dtype=torch.long))
        offset += n
    pos_t, cells_t, fi = torch.cat(pos), torch.stack(cells), torch.cat(fidx)
    nl = neighbor_list(pos_t, cells_t, torch.tensor(pbcs), cutoff, fi)
    assert bool((fi[nl.centers] == fi[nl.neighbors]).all()), "pair crosses frames"
    exp = np.concatenate(expected)
    np.testing.assert_array_equal(_rows(nl), exp[np.lexsort(exp.T[::-1])])
    d = pair_vectors(pos_t, cells_t, fi, nl).norm(dim=1)
    assert float(d.max()) < cutoff


def test_empty_and_single_atom(backend):
    cell = torch.eye(3, dtype=torch.float64)[None] * 10.0
    pbc = torch.ones(1, 3, dtype=torch.bool)
    nl = neighbor_list_with(backend, torch.zeros(0, 3, dtype=torch.float64), cell, pbc, 5.0)
    assert nl.centers.shape == (0,) and nl.shifts.shape == (0, 3)
    nl = neighbor_list_with(backend, torch.zeros(1, 3, dtype=torch.float64), cell, pbc, 5.0)  # cell > cutoff: no self image
    assert nl.centers.numel() == 0
    nl = neighbor_list_with(backend, torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 3, 3), ~pbc, 5.0)
    assert nl.centers.numel() == 0


def test_float32_matches_float64():
    gen = torch.Generator().manual_seed(13)
    cell = torch.tensor([[9.0, 0.0, 0.0], [2.5, 8.0, 0.0], [1.0, -2.0, 7.5]], dtype=torch.float64)
    pos = _random_frame(gen, 60, cell) + torch.randn(60, 3, generator=gen, dtype=torch.float64) * 4
    pbc = torch.ones(1, 3, dtype=torch.bool)
    ref = _rows(neighbor_list(pos, cell[None], pbc, 5.0))
    nl32 = neighbor_list(pos.float(), cell.float()[None], pbc, 5.0)
    np.testing.assert_array_equal(_rows(nl32), ref)
    np.testing.assert_array_equal(_rows(nl32), _rows(neighbor_list_brute_force(pos.float(), cell.float()[None], pbc, 5.0)))


def test_singular_periodic_cell_is_an_error(backend):
    with pytest.raises(DataError, match="singular"):
        neighbor_list_with(
            backend, torch.rand(4, 3, dtype=torch.float64), torch.zeros(1, 3, 3), torch.ones(1, 3, dtype=torch.bool), 3.0
        )


def test_pbc_broadcast_and_no_grad(backend):
    pos = (torch.rand(10, 3, dtype=torch.float64) * 5).requires_grad_()
    cell = torch.eye(3, dtype=torch.float64)[None] * 5.0
    a = neighbor_list_with(backend, pos, cell, torch.tensor([True, True, True]), 3.0)
    b = neighbor_list_with(backend, pos, cell, torch.ones(1, 3, dtype=torch.bool), 3.0)
    np.testing.assert_array_equal(_rows(a), _rows(b))
    assert not a.shifts.requires_grad


def test_edge_vectors_gradient():
    gen = torch.Generator().manual_seed(14)
    cell = torch.tensor([[4.0, 0.0, 0.0], [1.0, 4.5, 0.0], [0.5, 0.3, 4.2]], dtype=torch.float64)
    pos = _random_frame(gen, 5, cell)
    fi = torch.zeros(5, dtype=torch.long)
    nl = neighbor_list(pos, cell[None], torch.ones(1, 3, dtype=torch.bool), 5.0)
    assert bool((nl.shifts != 0).any())

    def f(p, c):
        return pair_vectors(p, c, fi, nl)

    assert torch.autograd.gradcheck(f, (pos.clone().requires_grad_(), cell[None].clone().requires_grad_()))
    # and an explicit value: d(Σ|r_ij|²)/d(cell) = 2 Σ s_ij ⊗ r_ij
    c = cell[None].clone().requires_grad_()
    r = pair_vectors(pos, c, fi, nl)
    (r * r).sum().backward()
    expected = 2 * torch.einsum("pk,pl->kl", nl.shifts.double(), r.detach())
    torch.testing.assert_close(c.grad[0], expected)


def test_auto_dispatch_and_backends_agree():
    """neighbor_list sends one float64 CPU frame to vesin (when installed) and everything else to the
    cell-list kernel; every route gives the brute-force set."""
    from mlpot.neighbors import vesin_backend

    gen = torch.Generator().manual_seed(15)
    cell = torch.tensor([[7.5, 0.0, 0.0], [1.5, 7.0, 0.0], [-1.0, 0.5, 6.5]], dtype=torch.float64)
    pos = _random_frame(gen, 50, cell)
    pbc = torch.ones(1, 3, dtype=torch.bool)
    assert vesin_backend.use_vesin(pos, 1) == vesin_available()
    assert not vesin_backend.use_vesin(pos, 2) and not vesin_backend.use_vesin(pos.float(), 1)
    ref = _rows(neighbor_list_brute_force(pos, cell[None], pbc, 4.5))
    for backend in ("auto", "cell_list") + (("vesin",) if vesin_available() else ()):
        np.testing.assert_array_equal(_rows(neighbor_list_with(backend, pos, cell[None], pbc, 4.5)), ref)
    np.testing.assert_array_equal(_rows(neighbor_list(pos, cell[None], pbc, 4.5)), ref)
    with pytest.raises(ValueError, match="backend"):
        neighbor_list_with("nope", pos, cell[None], pbc, 4.5)


def test_pair_vectors_one_frame_and_ghost_cluster():
    """frame_index None with a (3, 3) cell = the batched form; zero shifts give r_j − r_i whatever the cell."""
    gen = torch.Generator().manual_seed(16)
    cell = torch.tensor([[4.0, 0.0, 0.0], [1.0, 4.5, 0.0], [0.5, 0.3, 4.2]], dtype=torch.float64)
    pos = _random_frame(gen, 8, cell)
    nl = neighbor_list(pos, cell[None], torch.ones(1, 3, dtype=torch.bool), 5.0)
    fi = torch.zeros(8, dtype=torch.long)
    torch.testing.assert_close(pair_vectors(pos, cell, None, nl), pair_vectors(pos, cell[None], fi, nl), rtol=0, atol=1e-13)
    torch.testing.assert_close(pair_vectors(pos, cell[None], None, nl), pair_vectors(pos, cell, None, nl), rtol=0, atol=0)
    local = local_pair_list(pos, 5, 3.0)
    assert bool((local.shifts == 0).all()) and bool((local.centers < 5).all())
    plain = pos[local.neighbors] - pos[local.centers]
    for c in (torch.zeros(3, 3, dtype=torch.float64), cell):
        assert torch.equal(pair_vectors(pos, c, None, local), plain)


class _MaxComm:
    """A stand-in for the MD communicator: records the reductions it is asked for."""

    def __init__(self, value: float) -> None:
        self.value, self.calls = value, 0

    def allreduce_max(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.maximum(x, torch.tensor(self.value, dtype=x.dtype))


class _StateLike:
    def __init__(self, positions: torch.Tensor, cell: torch.Tensor) -> None:
        self.positions, self.cell = positions, cell
        self.pbc = torch.ones(3, dtype=torch.bool)
        self.n_local = positions.shape[0]
        self.image = torch.zeros(positions.shape[0], 3, dtype=torch.long)


def test_verlet_needs_rebuild_and_store():
    gen = torch.Generator().manual_seed(17)
    cell = torch.eye(3, dtype=torch.float64) * 9.0
    st = _StateLike(_random_frame(gen, 30, cell), cell.clone())
    vl = VerletList(3.0, skin=1.0)
    assert vl.needs_rebuild(st) and vl.n_updates == 1  # no list yet
    nl = neighbor_list(st.positions, st.cell[None], st.pbc[None], vl.radius)
    vl.store(nl, st.positions, st.cell)
    assert vl.n_builds == 1 and vl.nl is nl and torch.equal(vl.ref_positions, st.positions)
    st.positions = st.positions.clone()
    st.positions[0, 0] += 0.4  # 2·0.4 < skin: the list still holds
    assert not vl.needs_rebuild(st) and vl.n_updates == 2
    comm = _MaxComm(0.6)  # another rank's atom moved 0.6 Å > skin/2: every rank rebuilds
    assert vl.needs_rebuild(st, comm) and comm.calls == 1
    st.positions[1, 1] += 0.6
    assert vl.needs_rebuild(st)
    # NPT: an affine cell change enters through σ_min(M): valid while σ_min·(rc + skin) ≥ rc (σ ≥ 0.75)
    st2 = _StateLike(vl.ref_positions * 0.8, vl.ref_cell * 0.8)
    torch.testing.assert_close(vl.excess_displacement(st2), torch.tensor(-0.2, dtype=torch.float64))  # 0 − (0.8·4 − 3)
    assert not vl.needs_rebuild(st2)
    st2 = _StateLike(vl.ref_positions * 0.7, vl.ref_cell * 0.7)
    assert float(vl.excess_displacement(st2)) > 0 and vl.needs_rebuild(st2)
    periodic = VerletList(3.0, skin=1.0, rebuild_every=2)
    periodic.store(nl, vl.ref_positions, vl.ref_cell)
    st3 = _StateLike(vl.ref_positions.clone(), vl.ref_cell.clone())
    assert [periodic.needs_rebuild(st3) for _ in range(4)] == [False, True, False, True]
    # update() = needs_rebuild + build
    got, rebuilt = vl.update(st)
    assert rebuilt and vl.n_builds == 2 and got is vl.nl
