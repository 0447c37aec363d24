"""MPI domain decomposition (md_engine.domain): 1, 2, 4 ranks against the serial shift-based engine.

The parallel runs go through ``mpirun`` (next to sys.executable) on tests/mpi_scripts/md_worker.py,
which writes its results to an .npz; the references are serial runs of the same builders in this
process. Systems: 72 Ar atoms (LJ) and the 192-atom water box (a small se_e2_a model), both in
sheared (triclinic) cells small enough that the ghost shell wraps through the periodic boundary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MPIRUN

HERE = Path(__file__).resolve().parent
WORKER = HERE / "mpi_scripts" / "md_worker.py"
sys.path.insert(0, str(WORKER.parent))
import md_worker as w  # noqa: E402

from md_engine import CSVR, H5MDReporter, Simulation, VelocityVerlet, read_h5md  # noqa: E402
from md_engine.domain import choose_grid  # noqa: E402


def mpirun(n: int, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run([str(MPIRUN), "-n", str(n), sys.executable, str(WORKER), *args],
                       capture_output=True, text=True, timeout=120, env=env)
    if expect_ok:
        assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def serial_forces(name: str):
    mk, pot, skin = (w.lj_state, w.lj_potential(), w.LJ_SKIN) if name == "lj" else \
        (w.model_state, w.model_potential(), w.MODEL_SKIN)
    out = {}
    for ghosts in (False, True):
        sim = Simulation(mk(), pot, VelocityVerlet(1.0), skin=skin, ghosts=ghosts)
        sim.setup()
        g = sim.gathered_state()
        out[ghosts] = (float(g.energy), g.forces.numpy(), g.virial.numpy(), sim.domain.n_ghosts)
    return out


@pytest.fixture(scope="module")
def serial_ref():
    return {name: serial_forces(name) for name in ("lj", "model")}


def test_one_rank_ghost_path_equals_shift_path(serial_ref):
    """The ghost code on one rank (periodic self-images) reproduces the shift-based pair list."""
    for name, ref in serial_ref.items():
        e0, f0, v0, _ = ref[False]
        e1, f1, v1, n_ghosts = ref[True]
        assert n_ghosts > 0  # the shell wraps: images of the box itself
        assert abs(e1 - e0) <= 1e-10 * abs(e0) and rel(f1, f0) < 1e-10 and rel(v1, v0) < 1e-10, name


@pytest.mark.mpi
@pytest.mark.parametrize("n_ranks", [2, 4])
def test_forces_energy_virial_agree_across_rank_counts(n_ranks, serial_ref, tmp_path):
    out = tmp_path / "f.npz"
    mpirun(n_ranks, "forces", str(out))
    d = np.load(out)
    assert int(d["size"]) == n_ranks
    for name in ("lj", "model"):
        e0, f0, v0, _ = serial_ref[name][False]
        assert int(np.prod(d[f"{name}_grid"])) == n_ranks
        assert abs(float(d[f"{name}_energy"]) - e0) <= 1e-10 * abs(e0), name
        assert rel(d[f"{name}_forces"], f0) < 1e-10, name
        assert rel(d[f"{name}_virial"], v0) < 1e-10, name


@pytest.mark.mpi
def test_nve_two_ranks_matches_serial_trajectory_with_migration(tmp_path):
    out, traj = tmp_path / "n.npz", tmp_path / "traj2.h5"
    mpirun(2, "nve", str(out), str(traj))
    d = np.load(out)
    ref_traj = tmp_path / "traj1.h5"
    sim = Simulation(w.lj_state(), w.lj_potential(), VelocityVerlet(2.0), [H5MDReporter(ref_traj, 50)], skin=w.LJ_SKIN)
    sim.run(200)
    assert np.abs(d["positions"] - w.unwrapped(sim.state)).max() < 1e-8
    assert np.abs(d["velocities"] - sim.state.velocities.numpy()).max() < 1e-10
    assert int(d["migrated"]) > 0 and int(d["builds"]) > 1  # atoms changed owner at rebuilds
    # one trajectory file, global order, same frames as the serial run
    t2, t1 = read_h5md(traj), read_h5md(ref_traj)
    assert t2["positions"].shape == t1["positions"].shape == (5, 72, 3)
    assert np.array_equal(t2["steps"], t1["steps"]) and np.array_equal(t2["species"], t1["species"])
    assert np.abs(t2["positions"] - t1["positions"]).max() < 1e-8
    assert np.allclose(t2["observables"]["potential_energy"], t1["observables"]["potential_energy"], rtol=1e-10, atol=0)


@pytest.mark.mpi
@pytest.mark.slow
def test_nve_thin_subdomains_multi_hop_with_migration(tmp_path):
    """200 NVE steps on 4 ranks stacked along one lattice vector (subdomains ~4 Å, shell 5.5 Å: two
    hops) equal the serial trajectory; atoms migrate between the thin subdomains."""
    out = tmp_path / "n4.npz"
    mpirun(4, "nve", str(out), str(tmp_path / "traj4.h5"), "4,1,1")
    d = np.load(out)
    sim = Simulation(w.lj_state(), w.lj_potential(), VelocityVerlet(2.0), skin=w.LJ_SKIN)
    sim.run(200)
    assert np.abs(d["positions"] - w.unwrapped(sim.state)).max() < 1e-8
    assert np.abs(d["velocities"] - sim.state.velocities.numpy()).max() < 1e-10
    assert int(d["migrated"]) > 0


@pytest.fixture(scope="module")
def csvr_reference(tmp_path_factory):
    """Serial CSVR run: 200 uninterrupted steps, and a checkpoint at step 100."""
    d = tmp_path_factory.mktemp("ck")
    sim = Simulation(w.lj_state(), w.lj_potential(), CSVR(2.0, 300.0, tau=50.0, seed=11), skin=w.LJ_SKIN)
    sim.run(100)
    sim.save_checkpoint(d / "serial100.pt")
    sim.run(100)
    return d, w.unwrapped(sim.state), sim.state.velocities.numpy().copy()


def _restart_serial(ckpt: Path):
    sim = Simulation(w.lj_state(), w.lj_potential(), CSVR(2.0, 300.0, tau=50.0, seed=11), skin=w.LJ_SKIN)
    sim.load_checkpoint(ckpt)
    sim.run(200 - sim.state.step)
    return w.unwrapped(sim.state), sim.state.velocities.numpy()


@pytest.mark.mpi
def test_checkpoint_two_ranks_restarts_on_one(csvr_reference, tmp_path):
    d, pos_ref, vel_ref = csvr_reference
    ck = tmp_path / "ck2.pt"
    mpirun(2, "write", str(tmp_path / "w.npz"), str(ck), "100")
    assert torch.load(ck, weights_only=True)["n_ranks"] == 2
    pos, vel = _restart_serial(ck)
    assert np.abs(pos - pos_ref).max() < 1e-8 and np.abs(vel - vel_ref).max() < 1e-10


@pytest.mark.mpi
def test_checkpoint_one_rank_restarts_on_two(csvr_reference, tmp_path):
    d, pos_ref, vel_ref = csvr_reference
    out = tmp_path / "r.npz"
    mpirun(2, "restart", str(out), str(d / "serial100.pt"), "200")
    r = np.load(out)
    assert int(r["step"]) == 200
    assert np.abs(r["positions"] - pos_ref).max() < 1e-8 and np.abs(r["velocities"] - vel_ref).max() < 1e-10


@pytest.fixture(scope="module")
def langevin_reference(tmp_path_factory):
    """Serial Langevin run: 200 uninterrupted steps, and a checkpoint at step 100."""
    d = tmp_path_factory.mktemp("lv")
    sim = Simulation(w.lj_state(), w.lj_potential(), w.thermostat_for("langevin"), skin=w.LJ_SKIN)
    sim.run(100)
    sim.save_checkpoint(d / "serial100.pt")
    sim.run(100)
    return d, w.unwrapped(sim.state), sim.state.velocities.numpy().copy()


@pytest.mark.mpi
def test_langevin_noise_is_decomposition_independent(langevin_reference, tmp_path):
    """Per-atom Langevin noise is drawn by global id: 100 steps on 2 ranks + 100 restarted on 1, and
    100 on 1 + 100 restarted on 2, both equal 200 uninterrupted serial steps."""
    d, pos_ref, vel_ref = langevin_reference
    ck = tmp_path / "lv2.pt"
    mpirun(2, "write", str(tmp_path / "w.npz"), str(ck), "100", "langevin")
    sim = Simulation(w.lj_state(), w.lj_potential(), w.thermostat_for("langevin"), skin=w.LJ_SKIN)
    sim.load_checkpoint(ck)
    sim.run(100)
    assert np.abs(w.unwrapped(sim.state) - pos_ref).max() < 1e-8
    assert np.abs(sim.state.velocities.numpy() - vel_ref).max() < 1e-10
    out = tmp_path / "r.npz"
    mpirun(2, "restart", str(out), str(d / "serial100.pt"), "200", "langevin")
    r = np.load(out)
    assert np.abs(r["positions"] - pos_ref).max() < 1e-8 and np.abs(r["velocities"] - vel_ref).max() < 1e-10


@pytest.mark.mpi
def test_failure_on_one_rank_stops_all_ranks_with_its_message(tmp_path):
    out, ck = tmp_path / "fail.npz", tmp_path / "run.pt"
    mpirun(2, "fail", str(out), str(ck))  # returns (no hang: subprocess timeout otherwise)
    msgs = [str(np.load(f"{out}.rank{r}.npz")["error"]) for r in (0, 1)]
    assert msgs[0] == msgs[1] and "rank 1:" in msgs[0] and "neighbor overflow" in msgs[0], msgs
    failed = tmp_path / "run.failed.pt"
    assert failed.exists()
    assert torch.load(failed, weights_only=True)["positions"].shape == (72, 3)  # the global state


def test_grid_choice_and_shell_thicker_than_the_box():
    st = w.lj_state()
    # 4 ranks: split the two longer directions, each subdomain at least one shell wide
    assert choose_grid(4, st.cell, st.pbc, w.LJ_RC + w.LJ_SKIN) == (2, 2, 1)
    assert choose_grid(2, st.cell, st.pbc, 0.0)[2] == 1
    # an 11.5 Å shell in a box ~10 Å thick along z: the one-rank ghost path needs two hops along z
    # (several images of an atom) and must still equal the shift-based pair list
    from md_engine import LennardJones

    pot = LennardJones(w.LJ_EPS, w.LJ_SIG, 11.0, smooth=True, ro=9.0)
    out = {}
    for ghosts in (False, True):
        sim = Simulation(w.lj_state(), pot, VelocityVerlet(1.0), skin=0.5, ghosts=ghosts)
        sim.setup()
        g = sim.gathered_state()
        out[ghosts] = (float(g.energy), g.forces.numpy(), g.virial.numpy())
        if ghosts:
            assert sim.domain.hops[2] == 2 and sim.domain.n_ghosts > 3 * 72
    (e0, f0, v0), (e1, f1, v1) = out[False], out[True]
    assert abs(e1 - e0) <= 1e-10 * abs(e0) and rel(f1, f0) < 1e-10 and rel(v1, v0) < 1e-10


@pytest.mark.mpi
@pytest.mark.slow
def test_thin_subdomains_multi_hop_exchange(serial_ref, tmp_path):
    """4 ranks along one lattice vector: subdomains ~3-4 Å wide, thinner than the ghost shell
    (LJ 5.5 Å, model 4.5 Å), so ghosts travel two hops; results equal the serial ones."""
    out = tmp_path / "thin.npz"
    mpirun(4, "forces", str(out), "4,1,1")
    d = np.load(out)
    for name in ("lj", "model"):
        e0, f0, v0, _ = serial_ref[name][False]
        assert d[f"{name}_grid"].tolist() == [4, 1, 1] and int(d[f"{name}_hops"][0]) >= 2, name
        assert abs(float(d[f"{name}_energy"]) - e0) <= 1e-10 * abs(e0), name
        assert rel(d[f"{name}_forces"], f0) < 1e-10, name
        assert rel(d[f"{name}_virial"], v0) < 1e-10, name
