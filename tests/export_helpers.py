"""Small random-init models and structures shared by the export / evaluate / calculator tests."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "data"


def model_config(type_map=("O", "H"), seed: int = 1, precision: str = "float64", rcut: float = 4.0) -> dict:
    """A tiny se_e2_a model section (DeePMD-kit layout)."""
    return {
        "type_map": list(type_map),
        "descriptor": {
            "type": "se_e2_a",
            "rcut": rcut,
            "rcut_smth": 0.5,
            "sel": [{"O": 24, "H": 48}.get(t, 8) for t in type_map],
            "neuron": [4, 8],
            "axis_neuron": 4,
            "type_one_side": False,
            "resnet_dt": False,
            "activation_function": "tanh",
            "precision": precision,
            "seed": seed,
        },
        "fitting_net": {
            "neuron": [16, 16],
            "resnet_dt": True,
            "activation_function": "tanh",
            "precision": precision,
            "seed": seed + 100,
        },
    }


def water_frames(n: int = 2, system: str = "data_0"):
    """The first ``n`` frames of the bundled DFT water (192 atoms, 12.4 Å box)."""
    from mlpot.data import io

    return io.read_deepmd(DATA / "water" / system).subset(slice(0, n))


def small_model(type_map=("O", "H"), seed: int = 1, precision: str = "float64", stats_systems: Optional[list] = None):
    """A random-init model with descriptor statistics and energy bias from two water frames."""
    import torch

    from mlpot.model import EnergyModel

    torch.manual_seed(seed)
    model = EnergyModel.from_config(model_config(type_map, seed, precision), device="cpu")
    systems = stats_systems if stats_systems is not None else [water_frames(2)]
    model.compute_stats(systems)
    model.eval()
    return model


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
