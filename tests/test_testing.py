"""mlpot.testing: each check passes on right outputs and FAILS on wrong ones (forces or virial scaled
by 1.01, forces that do not rotate, a batch that leaks between frames), the finite-difference
derivatives have their stated order, the ASE adapter leaves the atoms alone, the tiny-model options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlpot import testing
from mlpot.model import evaluate
from mlpot.neighbors import neighbor_list

PBC = [True, True, True]


@pytest.fixture(scope="module")
def system(tiny_model):
    """A 3-atom triclinic cell (each atom sees several of its images), a tiny model, its outputs with a
    fixed skin pair list (valid through the finite-difference steps) and the energy function."""
    cell = torch.tensor([[3.0, 0.0, 0.0], [1.3, 2.9, 0.0], [0.8, -0.9, 2.8]])
    pos = torch.tensor([[0.1, 0.2, 0.3], [0.6, 0.5, 0.4], [0.35, 0.85, 0.75]]) @ cell
    types = torch.tensor([0, 1, 1])
    model = tiny_model(sel=(60, 120))
    nl = neighbor_list(pos, cell[None], torch.tensor([PBC]), model.rcut + 0.5)
    out = evaluate(model, pos, types, cell, PBC, nl=nl)
    return model, pos, types, cell, out, testing.model_energy_fn(model, types, PBC, nl)


ALL_FORCES = [(a, k) for a in range(3) for k in range(3)]


def test_check_forces_fd_passes_and_fails(system):
    _, pos, _, cell, out, efn = system
    f = out["forces"].detach()
    assert f.abs().max() > 1e-4  # a non-trivial force field
    testing.check_forces_fd(efn, f, pos, cell, ALL_FORCES)
    with pytest.raises(AssertionError, match=r"force\[0, 0\]"):
        testing.check_forces_fd(efn, 1.01 * f, pos, cell, ALL_FORCES)
    wrong = f.clone()
    wrong[2, 1] += 1e-3 * f.abs().max()  # one component off by 0.1 % of the scale
    with pytest.raises(AssertionError, match=r"force\[2, 1\]"):
        testing.check_forces_fd(efn, wrong, pos, cell, [(2, 1)])


def test_check_virial_fd_passes_and_fails(system):
    _, pos, _, cell, out, efn = system
    w = out["virial"][0].detach()
    assert w.abs().max() > 1e-4
    testing.check_virial_fd(efn, w, pos, cell)
    with pytest.raises(AssertionError, match="virial"):
        testing.check_virial_fd(efn, 1.01 * w, pos, cell)
    one = torch.zeros(3, 3)
    one[0, 1] = 1e-3 * w.abs().max()  # one component off by 0.1 % of the scale
    with pytest.raises(AssertionError, match=r"virial\[0, 1\]"):
        testing.check_virial_fd(efn, w + one, pos, cell, components=[(0, 1)])


def test_check_rotation_passes_and_fails(system):
    model, pos, types, cell, _, _ = system
    fn = testing.model_outputs(model, types, PBC)
    testing.check_rotation(fn, pos, cell)
    rot = testing.random_rotation(4)
    testing.check_rotation(fn, pos, cell, rotation=rot)

    def forces_not_rotated(p, c):  # right energy, forces of the unrotated frame
        out = fn(p, c)
        out["forces"] = fn(pos, cell)["forces"]
        return out

    with pytest.raises(AssertionError, match="rotation: forces"):
        testing.check_rotation(forces_not_rotated, pos, cell)

    def energy_not_invariant(p, c):
        out = fn(p, c)
        out["energy"] = out["energy"] + 1e-6 * p[0, 0]
        return out

    with pytest.raises(AssertionError, match="rotation: energy"):
        testing.check_rotation(energy_not_invariant, pos, cell)


def test_check_batch_independence_passes_and_fails(system):
    model, pos, types, cell, _, _ = system
    frames = [(pos.numpy(), types.numpy(), cell.numpy(), PBC),
              (pos.numpy()[:2] + 0.1, types.numpy()[:2], 1.1 * cell.numpy(), PBC)]
    testing.check_batch_independence(model, frames)
    testing.check_batch_independence(model, frames, tolerances={"energy": (1e-13, 1e-12), "forces": (1e-12, 1e-13)})

    def leaky(m, *args, frame_index=None, **kw):  # batched evaluation scales the forces by 1.01
        out = evaluate(m, *args, frame_index=frame_index, **kw)
        if frame_index is not None:
            out["forces"] = 1.01 * out["forces"]
        return out

    with pytest.raises(AssertionError, match="frame 0 forces"):
        testing.check_batch_independence(model, frames, evaluate_fn=leaky)

    def energy_shift(m, *args, frame_index=None, **kw):
        out = evaluate(m, *args, frame_index=frame_index, **kw)
        if frame_index is not None:
            out["energy"] = out["energy"] + torch.tensor([0.0, 1e-9])
        return out

    with pytest.raises(AssertionError, match="frame 1 energy"):
        testing.check_batch_independence(model, frames, evaluate_fn=energy_shift)


def test_fd_derivative_orders():
    """Error of the central difference of sin at 0 (exact derivative 1): −h²/6 for order 2, −h⁴/30 for
    order 4 (leading terms of the Taylor series)."""
    for h in (1e-1, 5e-2):
        e2 = testing.fd_derivative(math.sin, h, order=2) - 1.0
        e4 = testing.fd_derivative(math.sin, h, order=4) - 1.0
        assert e2 == pytest.approx(-h * h / 6, rel=1e-2)
        assert e4 == pytest.approx(-(h**4) / 30, rel=2e-2)
    with pytest.raises(ValueError, match="order"):
        testing.fd_derivative(math.sin, 1e-3, order=3)


def test_fd_of_an_ase_calculator_leaves_the_atoms_alone():
    """fd_forces / fd_virial through atoms_energy_fn reproduce ASE's own LJ forces and stress, and the
    atoms keep their positions and cell."""
    from ase.calculators.lj import LennardJones

    atoms = testing.argon_atoms(2, a=5.4, jitter=0.1, seed=2, shear=True)
    atoms.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=7.0, ro=6.0, smooth=True)
    pos0, cell0 = atoms.get_positions().copy(), atoms.get_cell()[:].copy()
    efn = testing.atoms_energy_fn(atoms)
    comps = [(0, 0), (5, 1), (17, 2)]
    f = testing.fd_forces(efn, pos0, cell0, comps, h=1e-4)
    ref = atoms.get_forces()
    np.testing.assert_allclose(f, [ref[a, k] for a, k in comps], rtol=1e-7, atol=1e-9)
    stress = -testing.fd_virial(efn, pos0, cell0, testing.VOIGT, h=1e-4, symmetric=True) / atoms.get_volume()
    np.testing.assert_allclose(stress, atoms.get_stress(), rtol=1e-6, atol=1e-10)
    assert np.array_equal(atoms.get_positions(), pos0) and np.array_equal(atoms.get_cell()[:], cell0)


def test_tiny_model_options(tiny_model):
    plain = tiny_model(stats=None)
    assert torch.all(plain.descriptor.davg == 0) and torch.all(plain.descriptor.dstd == 1)
    assert torch.all(plain.fitting.energy_bias == 0)
    deepmd = tiny_model()
    assert torch.all(deepmd.descriptor.davg[:, 1:] == 0) and torch.all(deepmd.descriptor.davg[:, 0] > 0)
    assert torch.equal(deepmd.fitting.energy_bias, torch.tensor([-3.0, -1.0]))
    biased = tiny_model(stats="gaussian", stats_seed=5, energy_bias=(-3.0, -1.5))
    assert torch.equal(biased.fitting.energy_bias, torch.tensor([-3.0, -1.5]))
    assert not torch.equal(biased.descriptor.davg, tiny_model(stats="gaussian", stats_seed=6).descriptor.davg)
    assert not biased.training
    with pytest.raises(ValueError, match="unknown stats 'nope'"):
        tiny_model(stats="nope")
