"""Shared fixtures and helpers: paths to the bundled data, float64 by default, few threads, the one
tiny-model factory (:func:`mlpot.testing.tiny_model`), small water structures, the argon crystals of
the MD tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest
import torch

import mlpot.testing

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
#: the MPI launcher of the `mpi` tests: the one installed next to the interpreter (make's .venv)
MPIRUN = Path(sys.executable).parent / "mpirun"

torch.set_default_dtype(torch.float64)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One torch thread for the whole suite: the tests run many small ops, for which thread start-up and
    contention on a 2-core machine cost more than parallelism gains (measured: up to 10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``mpi`` are skipped when there is no mpirun next to the interpreter."""
    if item.get_closest_marker("mpi") is not None and not MPIRUN.exists():
        pytest.skip(f"no mpirun next to the interpreter ({MPIRUN})")


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def water_dir() -> Path:
    return DATA / "water"


# ------------------------------------------------------------------------------------ tiny models
@pytest.fixture(scope="session")
def tiny_model():
    """The one tiny-model factory of the suite: :func:`mlpot.testing.tiny_model` (keyword arguments:
    descriptor kind and hyperparameters, seeds, statistics recipe). Each test file names the
    hyperparameters it needs (a module-level dict of keyword arguments)."""
    return mlpot.testing.tiny_model


def water_model_kw(type_map: Sequence[str] = ("O", "H"), seed: int = 1, precision: str = "float64",
                   stats_systems: Optional[list] = None) -> dict:
    """Keyword arguments of the ``tiny_model`` fixture for the small se_e2_a water model of the export /
    evaluate / calculator tests: sel 24 per O, 48 per H, 8 per other element; rcut 4 Å, rcut_smth 0.5 Å;
    neuron [4, 8], no type_one_side, no resnet_dt in the descriptor; fitting [16, 16] with seed
    ``seed + 100``; descriptor statistics and energy bias from ``stats_systems`` (default: the first two
    frames of the bundled DFT water). Use: ``tiny_model(**water_model_kw(seed=2))``."""
    systems = stats_systems if stats_systems is not None else [water_frames(2)]
    return dict(type_map=tuple(type_map), sel=[{"O": 24, "H": 48}.get(t, 8) for t in type_map], rcut=4.0,
                rcut_smth=0.5, neuron=(4, 8), fitting=(16, 16), axis_neuron=4, type_one_side=False,
                resnet_dt=False, precision=precision, seed=seed, fitting_seed=seed + 100, torch_seed=seed,
                stats=systems)


def water_model_config(type_map: Sequence[str] = ("O", "H"), seed: int = 1, precision: str = "float64") -> dict:
    """The model section (DeePMD-kit layout) of the :func:`water_model_kw` model."""
    kw = water_model_kw(type_map, seed, precision, stats_systems=[])
    for key in ("torch_seed", "stats"):
        kw.pop(key)
    return mlpot.testing.tiny_model_config(**kw)


# ------------------------------------------------------------------------------------ structures
#: argon Lennard-Jones parameters of the MD tests (eV, Å)
ARGON_EPS, ARGON_SIG = 0.0104, 3.40
argon_atoms = mlpot.testing.argon_atoms  # fcc argon, repeated / stretched / sheared / jittered


def argon_lj(rc: float = 8.0, ro: float = 6.5, smooth: bool = True):
    """md_engine's LennardJones for argon: switched smoothly to zero between ``ro`` and ``rc`` (Å), or
    (``smooth=False``) cut at rc and shifted."""
    from md_engine import LennardJones

    if smooth:
        return LennardJones(ARGON_EPS, ARGON_SIG, rc, smooth=True, ro=ro)
    return LennardJones(ARGON_EPS, ARGON_SIG, rc, shift=True)


def water_frames(n: int = 2, system: str = "data_0"):
    """The first ``n`` frames of the bundled DFT water (192 atoms, 12.4 Å box)."""
    from mlpot.data import io

    return io.read_deepmd(DATA / "water" / system).subset(slice(0, n))


def small_water_atoms(n_side: int = 2, spacing: float = 3.1, seed: int = 0, triclinic: bool = False):
    """``n_side³`` water molecules on a grid with random orientations, periodic cell of edge
    ``n_side·spacing`` Å (≈ 1 g/cm³ for 3.1 Å). ``triclinic``: shear the cell a little."""
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    mol = molecule("H2O")
    mol.positions -= mol.positions[0]
    positions, symbols = [], []
    for ijk in np.ndindex(n_side, n_side, n_side):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        a, b, c, d = q
        rot = np.array([
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ])
        positions.append(mol.positions @ rot.T + (np.array(ijk) + 0.5) * spacing)
        symbols += mol.get_chemical_symbols()
    cell = np.eye(3) * n_side * spacing
    if triclinic:
        cell[1, 0] = 0.4
        cell[2, 0] = -0.3
        cell[2, 1] = 0.5
    atoms = Atoms(symbols=symbols, positions=np.concatenate(positions), cell=cell, pbc=True)
    atoms.wrap()
    return atoms
