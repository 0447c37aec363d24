"""md_engine with an mlpot model: the MlpotPotential adapter against ASE's VelocityVerlet driving a tiny
ASE calculator around mlpot.model.evaluate (the model's own neighbor list, no skin), and `mlpot md`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.verlet import VelocityVerlet as AseVV

from md_engine import MlpotPotential, Simulation, State, VelocityVerlet, read_h5md, read_thermo
from mlpot.errors import ConfigError, SimulationError

RCUT = 4.0


#: the hyperparameters of this file's model (sel (30, 60) unless a test says otherwise): the
#: constructor's statistics (zero mean, unit std, no bias), torch.manual_seed(0) first as before
T = dict(rcut=RCUT, neuron=(4, 8), fitting=(8, 8), seed=3, fitting_seed=4, resnet_dt=False, torch_seed=0, stats=None)


class _EvalCalc(Calculator):
    """Minimal ASE calculator: mlpot.model.evaluate with the model's own neighbor search."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, model):
        super().__init__()
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from mlpot.model import evaluate

        super().calculate(atoms, properties, system_changes)
        types = torch.tensor([self.model.type_map.index(s) for s in atoms.get_chemical_symbols()])
        out = evaluate(self.model, torch.tensor(atoms.positions), types, torch.tensor(atoms.cell.array)[None],
                       torch.tensor(atoms.pbc)[None])
        self.results = {"energy": float(out["energy"][0].detach()), "forces": out["forces"].detach().numpy()}


def test_mlpot_nve_matches_ase_velocity_verlet(tiny_model, water_dir):
    model = tiny_model(sel=(30, 60), **T)
    st = State.from_file(water_dir / "water.lmp", type_map=["O", "H"], temperature=300.0, seed=2, device="cpu")
    ref = st.to_atoms()
    ref.calc = _EvalCalc(model)
    dt, n = 0.5, 60
    sim = Simulation(st, MlpotPotential(model, device="cpu"), VelocityVerlet(dt), skin=0.5)
    sim.run(n)
    AseVV(ref, timestep=dt * units.fs).run(n)
    pos = (st.positions + st.image.to(st.dtype) @ st.cell).numpy()
    assert np.abs(pos - ref.positions).max() < 1e-8
    assert np.abs(st.velocities.numpy() - ref.get_velocities() * units.fs).max() < 1e-10
    # the virial through the adapter matches the strain derivative of the model energy
    from mlpot.model import evaluate

    h = 1e-5
    pot = sim.potential
    nl = sim.verlet.nl
    w = pot.compute(st.positions, st.types, st.cell, st.pbc, nl)["virial"]
    d = torch.zeros(3, 3)
    d[0, 1] = h

    def energy(strain):
        m = torch.eye(3) + strain
        return float(evaluate(model, st.positions @ m, st.types, (st.cell @ m)[None], st.pbc[None],
                              outputs=("energy",))["energy"][0].detach())

    assert abs(-(energy(d) - energy(-d)) / (2 * h) - float(w[0, 1])) < 1e-7


def test_sel_overflow_becomes_simulation_error(tiny_model, water_dir, tmp_path):
    from md_engine import CheckpointReporter

    st = State.from_file(water_dir / "water.lmp", type_map=["O", "H"], temperature=300.0, seed=2, device="cpu")
    sim = Simulation(st, MlpotPotential(tiny_model(sel=(2, 2), **T), device="cpu"), VelocityVerlet(0.5),
                     [CheckpointReporter(tmp_path / "ckpt.pt", 10)])
    with pytest.raises(SimulationError, match="model evaluation failed"):
        sim.run(5)
    assert (tmp_path / "ckpt.failed.pt").exists()


def test_mlpot_md_cli_run_and_restart(tiny_model, water_dir, tmp_path, monkeypatch, capsys):
    import yaml

    from mlpot.cli import main
    from mlpot.export import save_model

    save_model(tiny_model(sel=(30, 60), **T), tmp_path / "model.pt")
    cfg = {
        "structure": str(water_dir / "water.lmp"), "type_map": ["O", "H"],
        "potential": {"model": str(tmp_path / "model.pt")}, "ensemble": "nvt-csvr", "temperature": 300.0,
        "dt": 0.5, "steps": 20, "thermo_every": 5, "traj_every": 10, "traj_formats": ["h5md", "extxyz"],
        "checkpoint_every": 10, "output_dir": str(tmp_path / "md"), "device": "cpu", "seed": 1, "progress": False,
    }
    (tmp_path / "in.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["md", str(tmp_path / "in.yaml")]) == 0
    th = read_thermo(tmp_path / "md/thermo.csv")
    assert th["step"] == [0, 5, 10, 15, 20]
    # the run averages line: the last 80 % of the log (t >= 0.002 ps: steps 5..20), density of the box
    import re

    import numpy as np
    from ase.io import read

    printed = capsys.readouterr().out
    m = re.search(r"averages over .*?T = ([\d.]+) ± ([\d.]+) K.*?density ([\d.]+) g/cm³", printed)
    assert m, printed
    t = np.array(th["temperature_K"][1:])
    assert float(m.group(1)) == pytest.approx(t.mean(), abs=0.06) and float(m.group(2)) == pytest.approx(t.std(), abs=0.06)
    box = read(water_dir / "water.lmp", format="lammps-data", atom_style="atomic")
    rho = 64 * (15.999 + 2 * 1.008) * 1.66053906660 / box.get_volume()  # 64 H2O, g/cm³
    assert float(m.group(3)) == pytest.approx(rho, abs=2e-3)
    h5 = read_h5md(tmp_path / "md/traj.h5")
    assert list(h5["steps"]) == [0, 10, 20] and h5["positions"].shape == (3, 192, 3)
    # restart to 30 steps: continues the same files
    assert main(["md", str(tmp_path / "in.yaml"), "--restart", "--steps", "30"]) == 0
    assert read_thermo(tmp_path / "md/thermo.csv")["step"] == [0, 5, 10, 15, 20, 25, 30]
    assert list(read_h5md(tmp_path / "md/traj.h5")["steps"]) == [0, 10, 20, 30]
    # config errors name the key
    bad = dict(cfg, ensemble="npt-scr")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert main(["md", str(tmp_path / "bad.yaml")]) == 2
    from md_engine.config import parse_config

    with pytest.raises(ConfigError, match="pressure"):
        parse_config(bad)
    with pytest.raises(ConfigError, match="dt"):
        parse_config(dict(cfg, dt=-1))
    with pytest.raises(ConfigError, match="tau_x"):
        parse_config(dict(cfg, tau_x=1))


def test_example_config_is_valid():
    from pathlib import Path

    from md_engine.config import load_config

    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "examples" / "md_water_nvt.yaml")
    # relative paths are relative to the input file's folder (examples/); the shipped model
    assert cfg.ensemble == "nvt-csvr" and cfg.dt == 0.5
    assert cfg.potential.file == str(root / "data" / "models" / "water_se_e2_a.pt") and Path(cfg.potential.file).is_file()
    assert cfg.structure == str(root / "data" / "water" / "water.lmp") and Path(cfg.structure).is_file()
    check = load_config(root / "examples" / "md_water_10ps.yaml")
    assert check.steps * check.dt == 10_000.0 and check.temperature == 300.0 and check.ensemble == "nvt-csvr"
    # the demo's MD: the shipped model compressed by the demo's step 8
    assert check.potential.file == str(root / "demo_out" / "water_se_e2_a_compressed.pt")
    demo = (root / "examples" / "demo.sh").read_text()
    assert "mlpot compress data/models/water_se_e2_a.pt -o demo_out/water_se_e2_a_compressed.pt" in demo
    # the integrator the input builds
    from md_engine import CSVR, INTEGRATORS

    integ = INTEGRATORS[cfg.ensemble](cfg)
    assert type(integ) is CSVR and integ.dt == 0.5 and integ.temperature == cfg.temperature and integ.seed == cfg.seed


def test_shipped_water_model_loads():
    """data/models/water_se_e2_a.pt (the demo's MD model) is a loadable O/H model with the recorded size."""
    from pathlib import Path

    from mlpot.export import load_model

    path = Path(__file__).resolve().parent.parent / "data" / "models" / "water_se_e2_a.pt"
    assert path.stat().st_size < 5_000_000
    model = load_model(path, device="cpu")
    assert [str(t) for t in model.type_map] == ["O", "H"] and abs(model.rcut - 6.0) < 1e-12
