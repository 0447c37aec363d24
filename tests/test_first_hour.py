"""Issue 16's first-hour rough edges: the H5MD trajectory `mlpot md` writes is readable by `mlpot convert`
and `mlpot model-devi` (which takes each frame's MD step), model-file loading messages, the real maximum
in a neighbor overflow, refusing to train over a previous run, progress bars, the parity plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from mlpot import cli


def _argon_h5md(path: Path, steps: int = 12, interval: int = 4) -> Path:
    """A short Lennard-Jones argon run written by md_engine's H5MD reporter (32 atoms, 0..steps)."""
    from md_engine import H5MDReporter, LennardJones, NoseHooverChain, Simulation, State

    atoms = bulk("Ar", "fcc", a=5.8, cubic=True).repeat((2, 2, 2))
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.1, atoms.positions.shape)
    st = State.from_atoms(atoms, temperature=100.0, seed=1, device="cpu")
    sim = Simulation(st, LennardJones(0.0104, 3.40, 8.0, smooth=True, ro=6.5), NoseHooverChain(5.0, 100.0, tau=200.0),
                     [H5MDReporter(path, interval)])
    sim.run(steps)
    return path


@pytest.fixture(scope="module")
def traj(tmp_path_factory) -> Path:
    return _argon_h5md(tmp_path_factory.mktemp("md") / "traj.h5")


# ------------------------------------------------------------------------------------------------ H5MD
def test_h5md_is_read_as_a_data_format(traj):
    from md_engine import read_h5md
    from mlpot.data import io

    assert io.guess_format(traj) == "h5md"
    (system,) = io.read(traj)
    ref = read_h5md(traj)
    assert system.n_frames == 4 and system.n_atoms == 32 and system.type_map == ["Ar"]
    np.testing.assert_array_equal(system.positions, ref["positions"])
    np.testing.assert_array_equal(system.cells, ref["cells"])
    assert system.pbc.tolist() == [True] * 3 and system.energies is None
    assert [a.tolist() for a in io.frame_steps(traj)] == [[0, 4, 8, 12]]


def test_convert_h5md_to_extxyz(traj, tmp_path, capsys):
    import ase.io

    out = tmp_path / "out.xyz"
    assert cli.main(["convert", str(traj), "-o", str(out)]) == 0
    frames = ase.io.read(out, index=":")
    assert len(frames) == 4 and frames[0].get_chemical_symbols() == ["Ar"] * 32
    from md_engine import read_h5md

    np.testing.assert_allclose(frames[-1].positions, read_h5md(traj)["positions"][-1], atol=1e-10)


def test_model_devi_reads_h5md_with_md_steps(traj, tmp_path):
    from mlpot.export import save_model
    from mlpot.testing import tiny_model

    paths = []
    for seed in (1, 2):
        p = tmp_path / f"m{seed}.pt"
        save_model(tiny_model(type_map=("Ar",), sel=(48,), seed=seed), p)
        paths.append(str(p))
    out = tmp_path / "model_devi.out"
    assert cli.main(["model-devi", "-m", *paths, "-s", str(traj), "-o", str(out), "-f", "100"]) == 0
    rows = np.loadtxt(out)
    assert rows[:, 0].astype(int).tolist() == [0, 4, 8, 12]  # the file's steps, not index x frequency
    assert np.all(rows[:, 4] > 0)
