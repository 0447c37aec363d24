"""md_engine core: LJ against ASE, NVE against ASE's VelocityVerlet, energy drift, Verlet skin, restart,
outputs, failure handling. CPU, float64, small argon systems."""

from __future__ import annotations

import math
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.lj import LennardJones as AseLJ
from ase.md.verlet import VelocityVerlet as AseVV

from conftest import ARGON_EPS, ARGON_SIG, argon_atoms, argon_lj
from mlpot.errors import DataError, ModelError, SimulationError
from md_engine import (
    CSVR,
    CheckpointReporter,
    ExtxyzReporter,
    H5MDReporter,
    Langevin,
    NPT,
    LennardJones,
    NoseHooverChain,
    Simulation,
    State,
    StochasticCellRescaling,
    ThermoReporter,
    VelocityVerlet,
    read_h5md,
    read_thermo,
)
from mlpot.neighbors import VerletList, neighbor_list_brute_force

EPS, SIG, RC, RO = ARGON_EPS, ARGON_SIG, 8.0, 6.5  # argon (eV, Å); smooth switch between RO and RC
JITTER = 0.15  # Å, the default displacement of this file's argon crystals


def unwrapped(st: State) -> np.ndarray:
    return (st.positions + st.image.to(st.dtype) @ st.cell).numpy()


# ------------------------------------------------------------------------------- potential vs ASE
@pytest.mark.parametrize("smooth", [False, True])
def test_lj_energy_forces_stress_match_ase(smooth):
    atoms = argon_atoms(2, jitter=0.3, seed=3)
    atoms.set_cell(atoms.cell.array + np.array([[0, 0, 0], [0.7, 0, 0], [0.3, -0.4, 0]]), scale_atoms=False)  # triclinic
    atoms.calc = AseLJ(sigma=SIG, epsilon=EPS, rc=RC, ro=RO, smooth=smooth)
    st = State.from_atoms(atoms, device="cpu")
    nl = neighbor_list_brute_force(st.positions, st.cell[None], st.pbc[None], RC + 1.0)  # with skin pairs
    out = argon_lj(RC, RO, smooth=smooth).compute(st.positions, st.types, st.cell, st.pbc, nl)
    e, f, w = out["energy"], out["forces"], out["virial"]
    assert abs(float(e) - atoms.get_potential_energy()) < 1e-10
    assert np.abs(f.numpy() - atoms.get_forces()).max() < 1e-10
    stress = atoms.get_stress(voigt=False)  # eV/Å³
    assert np.abs(w.numpy() - (-stress * atoms.get_volume())).max() < 1e-9  # virial = −stress·V


def test_lj_per_type_table_and_finite_differences():
    atoms = argon_atoms(2, jitter=0.3, seed=4)
    syms = ["Ar", "Kr"] * (len(atoms) // 2)
    atoms.set_chemical_symbols(syms)
    eps = torch.tensor([[0.0104, 0.0140], [0.0140, 0.0170]])
    sig = torch.tensor([[3.40, 3.50], [3.50, 3.65]])
    pot = LennardJones(eps, sig, RC, smooth=True, ro=RO)
    st = State.from_atoms(atoms, device="cpu")

    def energy(pos, cell):
        nl = neighbor_list_brute_force(pos, cell[None], st.pbc[None], RC)
        return pot.compute(pos, st.types, cell, st.pbc, nl)["energy"]

    nl = neighbor_list_brute_force(st.positions, st.cell[None], st.pbc[None], RC)
    out = pot.compute(st.positions, st.types, st.cell, st.pbc, nl)
    e, f, w = out["energy"], out["forces"], out["virial"]
    h = 1e-5
    for i, k in [(0, 0), (5, 1), (17, 2)]:
        p1, p2 = st.positions.clone(), st.positions.clone()
        p1[i, k] += h
        p2[i, k] -= h
        fd = -(energy(p1, st.cell) - energy(p2, st.cell)) / (2 * h)
        assert abs(float(fd) - float(f[i, k])) < 1e-7
    # virial: W = −∂E/∂ε under a homogeneous strain (positions and cell scaled by 1+ε)
    for a, b in [(0, 0), (0, 1), (2, 1)]:
        d = torch.zeros(3, 3)
        d[a, b] = h
        ep = energy(st.positions @ (torch.eye(3) + d), st.cell @ (torch.eye(3) + d))
        em = energy(st.positions @ (torch.eye(3) - d), st.cell @ (torch.eye(3) - d))
        assert abs(-(ep - em) / (2 * h) - float(w[a, b])) < 1e-7


# ------------------------------------------------------------------------------- NVE vs ASE
def test_nve_trajectory_matches_ase_velocity_verlet():
    atoms = argon_atoms(2, seed=1, jitter=JITTER)
    st = State.from_atoms(atoms, temperature=300.0, seed=5, device="cpu")
    ref = st.to_atoms()
    ref.calc = AseLJ(sigma=SIG, epsilon=EPS, rc=RC, ro=RO, smooth=True)
    dt = 2.0
    sim = Simulation(st, argon_lj(RC, RO), VelocityVerlet(dt), skin=0.5)
    sim.run(100)
    AseVV(ref, timestep=dt * units.fs).run(100)
    assert np.abs(unwrapped(st) - ref.positions).max() < 1e-8
    assert np.abs(st.velocities.numpy() - ref.get_velocities() * units.fs).max() < 1e-10
    assert 1 < sim.n_rebuilds < 100  # the skin did its job and atoms moved enough to need rebuilds


def test_nve_energy_drift_bound():
    """108 argon atoms near the triple point, dt = 5 fs (≈ 0.0023 LJ time units), 2 ps."""
    st = State.from_atoms(argon_atoms(3, a=5.6, seed=2, jitter=JITTER), temperature=80.0, seed=2, device="cpu")
    thermo = ThermoReporter(None, interval=10, stream=None)
    sim = Simulation(st, argon_lj(RC, RO), VelocityVerlet(5.0), [thermo], skin=1.0)
    sim.run(400)
    t = np.array([r["time_ps"] for r in thermo.rows])
    e = np.array([r["conserved_eV"] for r in thermo.rows]) / st.n_atoms
    slope = np.polyfit(t, e, 1)[0]  # eV / atom / ps
    assert abs(slope) < 2e-6, slope  # stated bound: 2e-6 eV/atom/ps at dt = 5 fs
    assert np.ptp(e) < 1e-4  # fluctuation of the total energy per atom (eV)
    # momentum stays zero
    p = (st.masses[:, None] * st.velocities).sum(0)
    assert float(p.abs().max()) < 1e-10


# ------------------------------------------------------------------------------- Verlet skin
@pytest.mark.parametrize("ensemble", ["nve", "npt"])
def test_verlet_skin_identical_to_rebuild_every_step(ensemble):
    def make(skin, every):
        st = State.from_atoms(argon_atoms(2, seed=7, jitter=JITTER), temperature=400.0, seed=3, device="cpu")
        if ensemble == "nve":
            integ = VelocityVerlet(4.0)
        else:
            baro = StochasticCellRescaling(pressure=2000.0, tau=200.0, compressibility=1e-3)
            integ = NPT(CSVR(4.0, temperature=400.0, tau=50.0, seed=11), baro)
        return Simulation(st, argon_lj(RC, RO), integ, skin=skin, rebuild_every=every)

    a, b = make(0.6, None), make(0.0, 1)
    a.run(150)
    b.run(150)
    assert np.abs(unwrapped(a.state) - unwrapped(b.state)).max() < 1e-10
    assert np.abs(a.state.velocities.numpy() - b.state.velocities.numpy()).max() < 1e-10
    assert 1 < a.n_rebuilds < 150 and b.n_rebuilds == 151
    if ensemble == "npt":
        assert not torch.allclose(a.state.cell, State.from_atoms(argon_atoms(2, seed=7, jitter=JITTER), device="cpu").cell)


def test_verlet_list_holds_all_pairs_after_cell_change():
    """The rebuild criterion is exact: whenever the list is kept, it contains every pair within the cutoff."""
    st = State.from_atoms(argon_atoms(2, seed=9, jitter=JITTER), device="cpu")
    vl = VerletList(RC, skin=0.8)
    vl.build(st)
    gen = torch.Generator().manual_seed(0)
    kept = 0
    for _ in range(40):
        st.positions += 0.05 * torch.randn(st.positions.shape, generator=gen)
        mu = 1.0 + 0.004 * float(torch.randn(1, generator=gen))
        st.positions *= mu
        st.cell *= mu
        nl, rebuilt = vl.update(st)
        kept += not rebuilt
        ref = neighbor_list_brute_force(st.positions, st.cell[None], st.pbc[None], RC)
        have = {(i, j, *s) for i, j, s in zip(nl.centers.tolist(), nl.neighbors.tolist(), nl.shifts.tolist())}
        need = {(i, j, *s) for i, j, s in zip(ref.centers.tolist(), ref.neighbors.tolist(), ref.shifts.tolist())}
        assert need <= have
    assert kept > 5 and vl.n_builds > 2


# ------------------------------------------------------------------------------- restart
def _ensemble(name: str, seed: int = 3):
    if name == "langevin":
        return Langevin(4.0, 120.0, tau=100.0, seed=seed)
    if name == "nhc":
        return NoseHooverChain(4.0, 120.0, tau=100.0)
    return NPT(CSVR(4.0, 120.0, tau=100.0, seed=seed),
               StochasticCellRescaling(pressure=500.0, tau=500.0, compressibility=1e-3))


@pytest.mark.parametrize("name", ["langevin", "nhc", "csvr-npt"])
def test_restart_continues_exactly(tmp_path, name):
    def make(out: Path):
        st = State.from_atoms(argon_atoms(2, seed=4, jitter=JITTER), temperature=120.0, seed=8, device="cpu")
        reps = [ThermoReporter(out / "thermo.csv", 5, stream=None), H5MDReporter(out / "traj.h5", 10),
                ExtxyzReporter(out / "traj.xyz", 10), CheckpointReporter(out / "ckpt.pt", 20)]
        return Simulation(st, argon_lj(RC, RO), _ensemble(name), reps, skin=0.7)

    full = make(tmp_path / "full")
    full.run(60)
    part = make(tmp_path / "part")
    part.run(40)
    part.run(5)  # steps 41..45 are lost in a "crash" (never checkpointed): they must be dropped on restart
    again = make(tmp_path / "part")
    again.load_checkpoint(tmp_path / "part" / "ckpt.pt")
    assert again.state.step == 40
    again.run(20)
    for attr in ("positions", "velocities", "cell", "image"):
        assert torch.equal(getattr(full.state, attr), getattr(again.state, attr)), attr
    assert full.thermo()["conserved_eV"] == again.thermo()["conserved_eV"]
    # outputs continue exactly: same steps, same values
    a, b = read_thermo(tmp_path / "full/thermo.csv"), read_thermo(tmp_path / "part/thermo.csv")
    assert a["step"] == b["step"] == list(range(0, 61, 5))
    assert np.allclose(a["conserved_eV"], b["conserved_eV"], rtol=0, atol=1e-9)
    ha, hb = read_h5md(tmp_path / "full/traj.h5"), read_h5md(tmp_path / "part/traj.h5")
    assert list(hb["steps"]) == list(range(0, 61, 10))
    assert np.array_equal(ha["positions"], hb["positions"]) and np.array_equal(ha["cells"], hb["cells"])
    xyz = ase.io.read(tmp_path / "part/traj.xyz", index=":")
    assert [x.info["step"] for x in xyz] == list(range(0, 61, 10))
    assert torch.load(tmp_path / "part/ckpt.pt", weights_only=True)["step"] == 60


# ------------------------------------------------------------------------------- outputs
def test_h5md_layout_and_thermo(tmp_path):
    import h5py

    st = State.from_atoms(argon_atoms(2, seed=5, jitter=JITTER), temperature=100.0, seed=1, device="cpu")
    sim = Simulation(st, argon_lj(RC, RO), NoseHooverChain(5.0, 100.0, tau=200.0),
                     [ThermoReporter(tmp_path / "t.csv", 10, stream=None), H5MDReporter(tmp_path / "t.h5", 20, forces=True)])
    sim.run(40)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        for key in ("h5md", "particles/all/position/value", "particles/all/position/step", "particles/all/position/time",
                    "particles/all/box/edges/value", "particles/all/species", "observables/temperature/value",
                    "observables/pressure/value"):
            assert key in f, key
        assert f["particles/all/position/value"].shape == (3, 32, 3)
        assert list(f["particles/all/box"].attrs["boundary"]) == ["periodic"] * 3
        assert np.allclose(f["particles/all/position/time"][()], [0.0, 0.1, 0.2])
    rows = read_thermo(tmp_path / "t.csv")
    t = np.array(rows["temperature_K"])
    ke = np.array(rows["kinetic_eV"])
    assert np.allclose(t, 2 * ke / (93 * units.kB))  # 3N − 3 degrees of freedom
    # pressure column = (2K + tr W)/(3V) (bar) against ASE's stress + kinetic term at the last step
    atoms = st.to_atoms()
    atoms.calc = AseLJ(sigma=SIG, epsilon=EPS, rc=RC, ro=RO, smooth=True)
    p_ase = (-np.trace(atoms.get_stress(voigt=False)) / 3 + 2 * ke[-1] / (3 * atoms.get_volume())) / units.bar
    assert abs(rows["pressure_bar"][-1] - p_ase) < 1e-8 * abs(p_ase)  # CSV keeps 10 digits


# ------------------------------------------------------------------------------- failures
class _Faulty:
    """LJ that misbehaves from step ``at`` on: 'nan' energies/forces or a ModelError (sel overflow)."""

    def __init__(self, kind: str, at: int):
        self.inner, self.kind, self.at, self.calls = argon_lj(RC, RO), kind, at, 0
        self.cutoff = self.inner.cutoff

    def compute(self, *args, **kwargs):
        self.calls += 1
        out = self.inner.compute(*args, **kwargs)
        if self.calls > self.at:
            if self.kind == "nan":
                out["forces"] = out["forces"].clone()
                out["forces"][3, 1] = float("nan")
            else:
                raise ModelError("frame 0, atom 3: 47 neighbors of type O, sel = 46")
        return out


def _failing_run(tmp_path, st, pot, **kw):
    reps = [ThermoReporter(tmp_path / "thermo.csv", 2, stream=None), H5MDReporter(tmp_path / "traj.h5", 5),
            ExtxyzReporter(tmp_path / "traj.xyz", 5), CheckpointReporter(tmp_path / "ckpt.pt", 10)]
    sim = Simulation(st, pot, VelocityVerlet(kw.pop("dt", 2.0)), reps, **kw)
    with pytest.raises(SimulationError) as info:
        sim.run(200)
    assert (tmp_path / "ckpt.failed.pt").exists()
    fail = torch.load(tmp_path / "ckpt.failed.pt", weights_only=True)
    assert fail["step"] == sim.state.step
    h5 = read_h5md(tmp_path / "traj.h5")  # still readable
    xyz = ase.io.read(tmp_path / "traj.xyz", index=":")
    assert len(xyz) == len(h5["steps"]) >= 1
    thermo = read_thermo(tmp_path / "thermo.csv")
    # nothing written is lost (the last row is the last thermo step before the failure was caught),
    # and nothing non-finite was ever written (the checks run before every output)
    assert 0 <= sim.state.step - thermo["step"][-1] <= 2
    for col in ("potential_eV", "kinetic_eV", "total_eV", "temperature_K"):  # (no volume without PBC)
        assert np.all(np.isfinite(thermo[col]))
    return str(info.value), sim


@pytest.mark.parametrize("kind", ["nan", "overflow"])
def test_failure_nan_and_neighbor_overflow(tmp_path, kind):
    st = State.from_atoms(argon_atoms(2, jitter=JITTER), temperature=100.0, seed=1, device="cpu")
    msg, sim = _failing_run(tmp_path, st, _Faulty(kind, at=23))
    # the model error is raised inside step 23; NaN forces of step 23 are caught by the check before
    # the next output (thermo every 2 steps: step 24), so no NaN frame is written
    assert sim.state.step == (24 if kind == "nan" else 22)
    assert ("non-finite" in msg) if kind == "nan" else ("sel" in msg and "step 22" in msg)
    assert (tmp_path / "ckpt.pt").exists() and torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 20


def test_failure_atoms_too_close(tmp_path):
    atoms = argon_atoms(2, jitter=JITTER)
    st = State.from_atoms(atoms, temperature=50.0, seed=1, device="cpu")
    # two atoms flying at each other fast enough to get within 2.5 Å (min_distance raised to 2.5 Å)
    d = st.positions[1] - st.positions[0]
    st.velocities[0] = 0.2 * d / d.norm()
    st.velocities[1] = -0.2 * d / d.norm()
    msg, sim = _failing_run(tmp_path, st, argon_lj(RC, RO), min_distance=2.5, dt=1.0)
    assert "closer than min_distance" in msg and sim.state.step > 1


def test_failure_lost_atom(tmp_path):
    from ase.cluster import Icosahedron

    atoms = Icosahedron("Ar", 2, latticeconstant=5.3)  # 13-atom cluster, no PBC
    st = State.from_atoms(atoms, device="cpu")
    out = st.positions[1] - st.positions[0]
    st.velocities[1] = 1.0 * out / out.norm()  # 1 Å/fs outwards: leaves the cluster for good
    msg, sim = _failing_run(tmp_path, st, argon_lj(RC, RO), dt=1.0, lost_margin=12.0)
    assert "lost atom" in msg
    assert 8 <= sim.state.step <= 20


def test_state_from_lammps_data_and_mb_velocities(water_dir):
    st = State.from_file(water_dir / "water.lmp", type_map=["O", "H"], temperature=300.0, seed=3, device="cpu")
    assert st.n_atoms == 192 and st.symbols.count("O") == 64 and st.symbols.count("H") == 128
    assert abs(float(st.masses[st.types == 0][0]) - 15.999) < 1e-2
    assert torch.allclose(st.cell, torch.eye(3) * 12.4447)
    p = (st.masses[:, None] * st.velocities).sum(0)
    assert float(p.abs().max()) < 1e-12
    from md_engine import temperature

    assert abs(float(temperature(st)) - 300.0) < 1e-9
    st2 = State.from_file(water_dir / "water.lmp", type_map=["O", "H"], temperature=300.0, seed=3, device="cpu")
    assert torch.equal(st.velocities, st2.velocities)
    with pytest.raises(DataError, match="type_map"):
        State.from_file(water_dir / "water.lmp", type_map=["O"], device="cpu")
    # round trip through ase.Atoms
    atoms = st.to_atoms()
    back = State.from_atoms(atoms, type_map=["O", "H"], device="cpu")
    assert torch.allclose(back.velocities, st.velocities) and torch.equal(back.types, st.types)
    assert math.isfinite(float(st.volume))


@pytest.mark.parametrize("fmt", ["vasp", "extxyz", "cif"])
def test_state_from_ase_formats(tmp_path, fmt):
    atoms = argon_atoms(2, seed=6, jitter=JITTER)
    path = tmp_path / {"vasp": "POSCAR", "extxyz": "a.extxyz", "cif": "a.cif"}[fmt]
    ase.io.write(path, atoms, format=fmt)
    st = State.from_file(path, format=fmt, device="cpu", temperature=50.0, seed=0)
    assert st.type_map == ["Ar"] and st.n_atoms == 32
    assert np.allclose(st.cell.numpy(), atoms.cell.array, atol=1e-6)
    # same positions up to lattice translations (CIF wraps into the cell and rounds)
    frac = np.linalg.solve(atoms.cell.array.T, (st.positions.numpy() - atoms.positions).T).T
    assert np.abs(frac - np.round(frac)).max() < 1e-4


# ------------------------------------------------------------------------------- named outputs, observables, RNG
class _Alchemical:
    """LJ scaled by λ: U(λ) = λ U_LJ, with the extra named output ∂U/∂λ = U_LJ (a 0-d local term)."""

    def __init__(self, lam: float):
        self.inner, self.lam = argon_lj(RC, RO), lam
        self.cutoff = self.inner.cutoff

    def compute(self, *args, **kwargs):
        out = self.inner.compute(*args, **kwargs)
        res = {k: self.lam * v for k, v in out.items()}
        res["dU_dlambda"] = out["energy"]
        return res


def test_extra_potential_output_is_a_thermo_observable(tmp_path):
    st = State.from_atoms(argon_atoms(2, seed=5, jitter=JITTER), temperature=100.0, seed=1, device="cpu")
    thermo = ThermoReporter(tmp_path / "t.csv", 5, stream=None, columns=["time_ps", "potential_eV", "dU_dlambda"])
    sim = Simulation(st, _Alchemical(0.5), VelocityVerlet(2.0), [thermo])
    sim.run(10)
    rows = read_thermo(tmp_path / "t.csv")
    assert list(rows) == ["step", "time_ps", "potential_eV", "dU_dlambda"] and rows["step"] == [0.0, 5.0, 10.0]
    assert np.allclose(rows["potential_eV"], 0.5 * np.array(rows["dU_dlambda"]), rtol=1e-9, atol=0)
    assert float(st.outputs["dU_dlambda"]) == pytest.approx(2 * float(st.energy), rel=1e-12)
    from mlpot.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown observable 'temperatur_K'.*did you mean `temperature_K`"):
        Simulation(st.clone(), argon_lj(RC, RO), VelocityVerlet(2.0), [ThermoReporter(None, 5, stream=None, columns=["temperatur_K"])]).run(1)


def test_keyed_rng_philox_and_decomposition_independence():
    from md_engine import rng

    # Philox-4x32-10 known-answer vectors (Random123 kat_vectors)
    z = lambda v: np.array([v], dtype=np.uint64)  # noqa: E731
    out = rng.philox4x32([z(0x243F6A88), z(0x85A308D3), z(0x13198A2E), z(0x03707344)], (0xA4093822, 0x299F31D0))
    assert [int(w[0]) for w in out] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]
    t = torch.tensor([0xFFFFFFFF])
    out = rng.philox4x32([t, t, t, t], (0xFFFFFFFF, 0xFFFFFFFF))  # the torch (device) path
    assert [int(w[0]) for w in out] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    # per-atom noise depends on (seed, stream, step, id) only: any subset, any order
    ids = torch.arange(5000)
    full = rng.atom_normals(3, "langevin", 17, ids)
    part = torch.tensor([4999, 7, 1234, 0])
    assert torch.equal(rng.atom_normals(3, "langevin", 17, part), full[part])
    assert not torch.equal(rng.atom_normals(3, "langevin", 18, ids), full)
    assert abs(float(full.mean())) < 0.03 and abs(float(full.std()) - 1) < 0.02
    # global draws: the same numbers for the same key, on every rank
    a, b = rng.generator(5, "csvr", 0, 10, 1).standard_normal(3), rng.generator(5, "csvr", 0, 10, 1).standard_normal(3)
    assert np.array_equal(a, b) and not np.array_equal(a, rng.generator(5, "csvr", 0, 10, 0).standard_normal(3))


def test_ensemble_registry_and_config():
    from mlpot.errors import ConfigError

    from md_engine import INTEGRATORS
    from md_engine.config import parse_config

    assert INTEGRATORS.names() == ["npt-scr", "nve", "nvt-csvr", "nvt-langevin", "nvt-nh"]
    base = {"structure": "x.xyz", "potential": {"lj": {"epsilon": EPS, "sigma": SIG, "cutoff": RC}}, "steps": 1}
    with pytest.raises(ConfigError, match="ensemble.*did you mean `nvt-csvr`"):
        parse_config({**base, "ensemble": "nvt-cvsr", "temperature": 10.0})
    with pytest.raises(ConfigError, match="pressure: required for ensemble npt-scr"):
        parse_config({**base, "ensemble": "npt-scr", "temperature": 10.0})
    cfg = parse_config({**base, "ensemble": "npt-scr", "temperature": 10.0, "pressure": 1.0, "npt_thermostat": "nh"})
    integ = INTEGRATORS[cfg.ensemble](cfg)
    assert isinstance(integ, NPT) and isinstance(integ.thermostat, NoseHooverChain)
