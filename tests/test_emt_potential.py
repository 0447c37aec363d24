"""md_engine's ``emt`` potential against ASE's ``ase.calculators.emt.EMT`` (energy, per-atom energies,
forces, stress) on periodic, triclinic, alloy, tiny-cell and cluster systems; forces and virial
against finite differences of its own energy; the ghost-atom path against the serial one; NVE
energy conservation; 2 MPI ranks; bad input and mlpot phase input checks. CPU, float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT

from mlpot.errors import ConfigError
from mlpot.neighbors import neighbor_list
from md_engine import Simulation, State, ThermoReporter, VelocityVerlet
from md_engine.config import parse_config
from md_engine.potentials.emt import EMT, SUPPORTED, cutoff_parameters
import md_engine.potentials.pairs as pairs

ALL = frozenset({"energy", "forces", "virial", "energies"})


def cu_fcc(repeat=(3, 3, 3), a=3.61, rattle=0.1, seed=1) -> Atoms:
    at = bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat)
    if rattle:
        at.rattle(rattle, seed=seed)
    return at


def alloy(a_el: str, b_el: str, a: float, seed: int) -> Atoms:
    at = cu_fcc((2, 2, 3), a=a, rattle=0.12, seed=seed)
    rng = np.random.default_rng(seed)
    at.set_chemical_symbols(np.where(rng.random(len(at)) < 0.4, b_el, a_el))
    return at


def triclinic() -> Atoms:
    at = cu_fcc((3, 3, 3), rattle=0.08, seed=2)
    strain = np.array([[1.02, 0.04, -0.03], [0.0, 0.97, 0.05], [0.0, 0.0, 1.01]])
    at.set_cell(at.cell.array @ strain, scale_atoms=True)
    return at


def tiny() -> Atoms:
    """4 atoms in a 3.7 Å box: the 5.9 Å cutoff reaches through several periodic images."""
    at = cu_fcc((1, 1, 1), a=3.7, rattle=0.1, seed=3)
    at.set_cell(at.cell.array @ np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.05, 0.0, 1.0]]), scale_atoms=True)
    return at


def cluster() -> Atoms:
    at = cu_fcc((3, 3, 3), rattle=0.1, seed=4)
    at = at[np.linalg.norm(at.positions - at.positions.mean(0), axis=1) < 4.5]
    at.set_cell(np.diag([30.0, 31.0, 32.0]))
    at.pbc = False
    at.positions += 12.0
    return at


SYSTEMS = {"cu108": lambda: cu_fcc(), "triclinic": triclinic, "cu_au": lambda: alloy("Cu", "Au", 3.8, 5),
           "ni_al": lambda: alloy("Ni", "Al", 3.7, 6), "tiny_cell": tiny, "cluster": cluster,
           "one_atom": lambda: bulk("Cu", "fcc", a=3.58)}


def ours(at: Atoms, pot: EMT, skin: float = 1.0, n_local=None) -> dict:
    st = State.from_atoms(at, type_map=pot.type_map, device="cpu")
    nl = neighbor_list(st.positions, st.cell[None], st.pbc[None], pot.cutoff + skin)  # with skin pairs
    return {k: v.numpy() for k, v in pot.compute(st.positions, st.types, st.cell, st.pbc, nl, outputs=ALL).items()}


def reference(at: Atoms, **kw) -> dict:
    at = at.copy()
    at.calc = AseEMT(**kw)
    return {"energy": at.get_potential_energy(), "forces": at.get_forces(), "energies": at.get_potential_energies(),
            "virial": -at.get_stress(voigt=False) * at.get_volume()}


def assert_equal_to_ase(out: dict, ref: dict) -> None:
    assert abs(float(out["energy"]) - ref["energy"]) <= 1e-10 * max(abs(ref["energy"]), 1.0)
    assert np.abs(out["energies"] - ref["energies"]).max() <= 1e-10
    assert np.abs(out["forces"] - ref["forces"]).max() <= 1e-10
    assert np.abs(out["virial"] - ref["virial"]).max() <= 1e-9


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_equals_ase_emt(name):
    at = SYSTEMS[name]()
    pot = EMT(sorted(set(at.get_chemical_symbols())))
    out, ref = ours(at, pot), reference(at)
    assert np.abs(ref["forces"]).max() > 0.05 or name == "one_atom"  # not a trivial configuration
    assert_equal_to_ase(out, ref)


def test_flat_pair_path_and_asap_cutoff_equal_ase(monkeypatch):
    """The per-pair (unhalved) path, used with ghost atoms or sparse lists, on an alloy; ASE's
    ``asap_cutoff=True`` variant (cutoff from the type_map's elements)."""
    at = alloy("Cu", "Au", 3.8, 7)
    pot = EMT(["Au", "Cu"])
    monkeypatch.setattr(pairs, "MAX_PADDING", 0.0)  # no table: the flat path
    pairs._TABLES.clear()
    assert_equal_to_ase(ours(at, pot), reference(at))
    monkeypatch.undo()
    pot_a = EMT(["Cu", "Au"], asap_cutoff=True)
    assert pot_a.cutoff == pytest.approx(1.045 * cutoff_parameters(["Au", "Cu"], True)[0])
    assert pot_a.cutoff < pot.cutoff  # Au's s0 < Ag's: a smaller cutoff than the default
    assert_equal_to_ase(ours(at, pot_a), reference(at, asap_cutoff=True))


def test_cutoff_is_ases():
    rc, r_list, acut = cutoff_parameters()
    assert EMT(["Cu"]).cutoff == r_list == pytest.approx(5.876798, abs=1e-6)  # ASE: rc + 0.5 Å from Ag's s0
    w4 = 1.0 / (1.0 + np.exp(acut * (2 * 1.809 * 3.01 * 0.5291772105638411 - rc)))
    assert w4 == pytest.approx(1e-4, rel=1e-12)  # the Fermi function is 1e-4 at the 4th fcc shell


def test_forces_and_virial_equal_finite_differences():
    at = alloy("Ni", "Al", 3.7, 8)
    pot = EMT(["Al", "Ni"])
    st = State.from_atoms(at, type_map=pot.type_map, device="cpu")

    def energy(pos, cell):
        nl = neighbor_list(pos, cell[None], st.pbc[None], pot.cutoff + 0.5)
        return float(pot.compute(pos, st.types, cell, st.pbc, nl, outputs={"energy"})["energy"])

    nl = neighbor_list(st.positions, st.cell[None], st.pbc[None], pot.cutoff + 0.5)
    out = pot.compute(st.positions, st.types, st.cell, st.pbc, nl)
    h = 1e-5
    for i, k in [(0, 0), (7, 1), (30, 2), (41, 0)]:
        p1, p2 = st.positions.clone(), st.positions.clone()
        p1[i, k] += h
        p2[i, k] -= h
        fd = -(energy(p1, st.cell) - energy(p2, st.cell)) / (2 * h)
        assert abs(fd - float(out["forces"][i, k])) < 1e-7
    eye = torch.eye(3, dtype=torch.float64)
    for a, b in [(0, 0), (1, 2), (2, 0)]:  # W = −∂E/∂ε, positions and cell strained by (1 + ε)
        d = torch.zeros(3, 3, dtype=torch.float64)
        d[a, b] = h
        ep = energy(st.positions @ (eye + d), st.cell @ (eye + d))
        em = energy(st.positions @ (eye - d), st.cell @ (eye - d))
        assert abs(-(ep - em) / (2 * h) - float(out["virial"][a, b])) < 1e-7
    # the energy is differentiable by autograd too, with the same forces
    pos = st.positions.clone().requires_grad_(True)
    e = pot.compute(pos, st.types, st.cell, st.pbc, nl, outputs={"energy"})["energy"]
    (g,) = torch.autograd.grad(e, pos)
    assert float((-g - out["forces"]).abs().max()) < 1e-10


def test_ghost_atom_path_equals_serial_and_ase():
    """The ghost-atom (MPI domain) path on one rank (explicit periodic images, n_local < N)."""
    at = alloy("Cu", "Au", 3.8, 9)
    ref = reference(at)
    res = {}
    for ghosts in (False, True):
        st = State.from_atoms(at, type_map=["Au", "Cu"], device="cpu")
        sim = Simulation(st, EMT(["Au", "Cu"]), VelocityVerlet(1.0), skin=0.5, ghosts=ghosts)
        sim.setup()
        g = sim.gathered_state()
        res[ghosts] = (float(g.energy), g.forces.numpy(), g.virial.numpy(), sim.domain.n_ghosts)
    assert res[True][3] > 0
    for e, f, w, _ in res.values():
        assert abs(e - ref["energy"]) <= 1e-10 * abs(ref["energy"])
        assert np.abs(f - ref["forces"]).max() <= 1e-10
        assert np.abs(w - ref["virial"]).max() <= 1e-9


def test_nve_conserves_energy():
    """32 Cu atoms at 600 K, dt = 2 fs, 300 steps (0.6 ps)."""
    st = State.from_atoms(cu_fcc((2, 2, 2), rattle=0.05, seed=10), temperature=600.0, seed=3, device="cpu")
    thermo = ThermoReporter(None, interval=10, stream=None)
    sim = Simulation(st, EMT(["Cu"]), VelocityVerlet(2.0), [thermo], skin=1.0)
    sim.run(300)
    e = np.array([r["conserved_eV"] for r in thermo.rows]) / st.n_atoms
    pot = np.array([r["potential_eV"] for r in thermo.rows]) / st.n_atoms
    assert np.ptp(pot) > 0.01  # the atoms move (potential energy swings by > 10 meV/atom)
    assert np.ptp(e) < 1e-4, np.ptp(e)  # total energy per atom (eV) within 0.1 meV (measured 0.035 meV)
    t = np.arange(len(e))
    assert abs(np.polyfit(t, e, 1)[0] * len(e)) < 2e-5  # drift over the run < 0.02 meV/atom (measured 0.003)


def test_unsupported_element_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"no EMT parameters for 'Fe'.*supports Al, Cu, Ag, Au, Ni, Pd, Pt"):
        EMT(["Cu", "Fe"])
    with pytest.raises(ConfigError) as e:
        parse_config({"structure": "cu.xyz", "type_map": ["Fe"], "potential": {"type": "emt", "type_map": ["Fe"]},
                      "ensemble": "nve", "steps": 4})
    msg = str(e.value)
    assert "potential" in msg and "type_map" in msg and "'Fe'" in msg and all(s in msg for s in SUPPORTED)
    assert msg.count("\n") == 0


def test_phase_input_with_emt_validates(tmp_path, capsys):
    """examples/phase_cu/emt.yaml (``potential: {type: emt, type_map: [Cu]}``) passes mlpot phase's
    input checks; an unsupported element there is one line, exit 2, before any task."""
    from pathlib import Path

    from mlpot import cli
    from mlpot.workflows.phase.config import load_phase_config
    from mlpot.workflows.phase.driver import check_inputs
    from mlpot.workflows.phase.tasks import build_potential

    example = Path(__file__).resolve().parents[1] / "examples" / "phase_cu" / "emt.yaml"
    cfg = load_phase_config(example)
    assert cfg.potential == {"type": "emt", "type_map": ["Cu"], "asap_cutoff": False}
    check_inputs(cfg)
    assert isinstance(build_potential(cfg.potential), EMT)
    bad = tmp_path / "bad.yaml"
    bad.write_text(example.read_text().replace("type_map: [Cu]", "type_map: [Fe]"))
    assert cli.main(["phase", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "potential" in err and "'Fe'" in err and err.count("\n") == 1


@pytest.mark.mpi
def test_two_mpi_ranks_equal_ase_and_serial(tmp_path):
    """2 ranks (ghost atoms, domain decomposition): forces, energy, virial equal ASE's EMT; 50 NVE
    steps equal the serial trajectory."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from conftest import MPIRUN

    worker = Path(__file__).resolve().parent / "mpi_scripts" / "md_worker.py"
    sys.path.insert(0, str(worker.parent))
    import md_worker as w

    out = tmp_path / "emt.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run([str(MPIRUN), "-n", "2", sys.executable, str(worker), "emt", str(out)],
                       capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr
    res = np.load(out)
    assert int(res["size"]) == 2
    ref = reference(w.emt_atoms())
    assert abs(float(res["energy"]) - ref["energy"]) <= 1e-10 * abs(ref["energy"])
    assert np.abs(res["forces"] - ref["forces"]).max() <= 1e-10
    assert np.abs(res["virial"] - ref["virial"]).max() <= 1e-9
    sim = Simulation(w.emt_state(), EMT(["Au", "Cu"]), VelocityVerlet(2.0), skin=0.5)
    sim.run(50)
    assert np.abs(res["positions"] - w.unwrapped(sim.state)).max() < 1e-9
    assert np.abs(res["velocities"] - sim.state.velocities.numpy()).max() < 1e-10
