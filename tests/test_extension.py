"""Extension points, exercised from this file alone (no package file is edited): a toy descriptor
(trained, frozen, loaded and run in md_engine), a toy MD potential, a toy integrator and a toy data
format, each registered in its registry here and unregistered in its fixture's teardown.

Registries: :data:`mlpot.descriptors.DESCRIPTORS`, :data:`md_engine.potentials.POTENTIALS`,
:data:`md_engine.integrators.INTEGRATORS`, :data:`mlpot.data.formats.FORMATS`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import AbstractSet, Literal, Optional

import numpy as np
import pytest
import torch
from pydantic import Field, PositiveInt

import mlpot
from mlpot.config.model import DescriptorConfig, Precision
from mlpot.data.formats import FORMATS, register
from mlpot.descriptors import DESCRIPTORS
from mlpot.descriptors.environment import Environment
from mlpot.errors import ConfigError
from mlpot.neighbors import NeighborList
from mlpot.nn import precision_name, resolve_precision
from mlpot.testing import check_forces_fd, check_virial_fd, model_energy_fn, model_outputs

from md_engine.config import PotentialConfig, parse_config
from md_engine.integrators import INTEGRATORS, Integrator, drift, kick
from md_engine.observables import kinetic_energy, temperature
from md_engine.potentials import FORCE_OUTPUTS, POTENTIALS, pair_vectors

ROOT = Path(__file__).resolve().parent.parent
WATER = ROOT / "data" / "water"


# ================================================================================ (a) a toy descriptor
class ToyRadialConfig(DescriptorConfig):
    """``model.descriptor`` of the toy: ``n_basis`` Gaussians of r per neighbor type, smooth cutoff."""

    type: Literal["toy_radial"] = "toy_radial"
    n_basis: PositiveInt = 4
    precision: Precision = "float64"


class ToyRadial(torch.nn.Module):
    """D_i[t, k] = (1/8) Σ_{j of type t, r_ij < rcut} exp(−((r_ij − μ_k)/w_k)²) · (1 − r_ij²/rcut²)⁵ (the
    switch is C⁴ at rcut, so finite differences across the cutoff stay accurate),
    μ_k evenly spaced in [0.8 Å, rcut), learnable widths w_k (Å); output (n_centers, ntypes · n_basis).
    No normalisation statistics (no ``stat_rows``): mlpot.data.stats then fits the energy bias only."""

    def __init__(self, config: ToyRadialConfig, ntypes: int) -> None:
        super().__init__()
        self.config = config
        self.ntypes = int(ntypes)
        self.rcut = float(config.rcut)
        self.dtype = resolve_precision(config.precision, "model.descriptor.precision")
        self.n_basis = int(config.n_basis)
        self.register_buffer("mu", torch.linspace(0.8, self.rcut, self.n_basis + 1, dtype=self.dtype)[:-1])
        self.log_width = torch.nn.Parameter(torch.zeros(self.n_basis, dtype=self.dtype))

    @property
    def dim_out(self) -> int:
        return self.ntypes * self.n_basis

    def get_config(self) -> dict:
        return {**self.config.model_dump(mode="json", by_alias=True), "precision": precision_name(self.dtype)}

    def forward(self, env: Environment) -> torch.Tensor:
        rij = env.rij.to(self.dtype)
        r = torch.linalg.vector_norm(rij, dim=-1)  # (E,) Å, every edge within rcut
        fc = (1.0 - (r / self.rcut) ** 2) ** 5
        g = torch.exp(-(((r[:, None] - self.mu) / torch.exp(self.log_width)) ** 2)) * fc[:, None]  # (E, K)
        slot = env.center * self.ntypes + env.neighbor_type  # (center, neighbor type) of each edge
        out = torch.zeros(env.n_centers * self.ntypes, self.n_basis, dtype=self.dtype, device=rij.device)
        out = out.index_add(0, slot, g)
        return out.reshape(env.n_centers, self.dim_out) / 8.0


@pytest.fixture
def toy_descriptor():
    DESCRIPTORS.add("toy_radial", ToyRadial, aliases=("toy_r",), config=ToyRadialConfig)
    yield ToyRadial
    DESCRIPTORS.remove("toy_radial")
    assert "toy_r" not in DESCRIPTORS


def training_input(steps: int) -> dict:
    return {
        "model": {"type_map": ["O", "H"], "descriptor": {"type": "toy_r", "rcut": 3.5, "n_basis": 3},
                  "fitting_net": {"neuron": [8], "seed": 1}},
        "learning_rate": {"start_lr": 0.01, "stop_lr": 1e-3, "decay_steps": 2},
        "loss": {"start_pref_e": 1, "limit_pref_e": 1, "start_pref_f": 10, "limit_pref_f": 10},
        "training": {"training_data": {"systems": [str(WATER / "data_0")], "batch_size": 1},
                     "numb_steps": steps, "seed": 3, "disp_freq": 1, "save_freq": 1000, "device": "cpu",
                     "progress_bar": False},
    }


def test_toy_descriptor_trains_freezes_and_runs_md(toy_descriptor, tmp_path):
    from md_engine import build_simulation

    # the model section is validated by the registered config class (unknown keys worded as always)
    with pytest.raises(ConfigError, match=r"model\.descriptor\.n_basiz: unknown key \(did you mean `n_basis`\?\)"):
        mlpot.load_config({**training_input(1), "model": {"type_map": ["O", "H"],
                                                          "descriptor": {"type": "toy_radial", "n_basiz": 3}}})
    trainer = mlpot.Trainer.from_config(training_input(6), output_dir=tmp_path / "train", device="cpu", quiet=True)
    assert isinstance(trainer.model.descriptor, ToyRadial)
    width0 = trainer.model.descriptor.log_width.detach().clone()
    rows = trainer.train()
    assert len(rows) == 6 and all(np.isfinite(r["rmse_e_trn"]) and np.isfinite(r["rmse_f_trn"]) for r in rows)
    assert not torch.equal(width0, trainer.model.descriptor.log_width.detach())  # gradients reach the descriptor

    # freeze, load: the same model (the registry rebuilds the toy from the file's model config)
    path = trainer.freeze(tmp_path / "toy.pt")
    model = mlpot.load_model(path, device="cpu")
    assert isinstance(model.descriptor, ToyRadial) and model.get_config()["descriptor"]["type"] == "toy_radial"
    frame = mlpot.read(WATER / "data_0")[0]
    pos, cell = torch.as_tensor(frame.positions[0]), torch.as_tensor(frame.cells[0])
    types = torch.as_tensor(frame.atom_types)
    out = model_outputs(model, types, [True] * 3)(pos, cell)
    ref = model_outputs(trainer.model, types, [True] * 3)(pos, cell)
    assert torch.equal(out["energy"], ref["energy"]) and torch.equal(out["forces"], ref["forces"])
    # forces and virial are the derivatives of the energy (finite differences, mlpot.testing)
    energy = model_energy_fn(model, types, [True] * 3)
    check_forces_fd(energy, out["forces"], pos, cell, [(0, 0), (5, 1), (100, 2), (191, 0)])
    check_virial_fd(energy, out["virial"], pos, cell)

    # md_engine: NVE from an input naming the frozen model by a path relative to the input's folder
    sim = build_simulation(parse_config({
        "structure": str(WATER / "water.lmp"), "type_map": ["O", "H"], "potential": {"model": "toy.pt"},
        "ensemble": "nve", "init_temperature": 300.0, "dt": 0.25, "steps": 20, "seed": 1,
        "thermo_every": 1000, "traj_every": 1000, "checkpoint_every": 1000, "output_dir": "md",
        "device": "cpu", "progress": False,
    }, "md.yaml", base_dir=tmp_path))
    sim.run(0)  # set up: first force evaluation
    e0 = sim.thermo(["conserved_eV"])["conserved_eV"]
    drift_ = []
    for _ in range(4):
        sim.run(5)
        drift_.append(abs(sim.thermo(["conserved_eV"])["conserved_eV"] - e0))
    # energy conservation: |ΔE| < 1e-4 eV (5e-7 eV/atom) over 20 steps of 0.25 fs (measured: ~2e-6 eV)
    assert max(drift_) < 1e-4, drift_
    assert sim.state.step == 20


# ================================================================================ (b) a toy potential
class SoftSphereConfig(PotentialConfig):
    """``potential: {type: toy_soft, epsilon: eV, cutoff: Å}``."""

    type: Literal["toy_soft"] = "toy_soft"
    epsilon: float = Field(gt=0, description="eV")
    cutoff: float = Field(gt=0, description="Å")


class SoftSphere:
    """Soft-sphere repulsion φ(r) = ε (1 − r/r_c)² for r < r_c (energy and force continuous at r_c).
    Extra named output ``dU_depsilon`` = U/ε (0-d, the local contribution): an observable by its name."""

    def __init__(self, epsilon: float, cutoff: float) -> None:
        self.epsilon = float(epsilon)
        self.cutoff = float(cutoff)

    @classmethod
    def from_config(cls, config: SoftSphereConfig, device: Optional[torch.device] = None) -> "SoftSphere":
        return cls(config.epsilon, config.cutoff)

    def compute(self, positions: torch.Tensor, atom_types: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                nl: NeighborList, n_local: Optional[int] = None,
                outputs: AbstractSet[str] = FORCE_OUTPUTS) -> dict[str, torch.Tensor]:
        d = pair_vectors(positions, cell, None, nl)  # (P, 3) Å, full list: each pair twice
        r = torch.linalg.vector_norm(d, dim=-1)
        x = torch.clamp(1.0 - r / self.cutoff, min=0.0)
        weight = torch.full_like(r, 0.5)
        if n_local is not None:
            weight = torch.where(nl.centers < n_local, weight, torch.zeros_like(weight))
        u = (weight * x * x).sum()
        g = (weight * (-2.0 * self.epsilon / self.cutoff) * x / torch.clamp(r, min=1e-12))[:, None] * d  # ∂E/∂r_ij
        out = {"energy": self.epsilon * u, "dU_depsilon": u}
        if "forces" in outputs:
            forces = torch.zeros_like(positions)
            forces.index_add_(0, nl.centers, g)
            forces.index_add_(0, nl.neighbors, -g)
            out["forces"] = forces
        if "virial" in outputs:
            out["virial"] = -(d.T @ g)
        return out


@pytest.fixture
def toy_potential():
    POTENTIALS.add("toy_soft", SoftSphere, config=SoftSphereConfig)
    yield SoftSphere
    POTENTIALS.remove("toy_soft")


@pytest.fixture
def argon(tmp_path) -> Path:
    """A 4×4×4 fcc argon crystal (256 atoms, a = 5.26 Å) as an extxyz file."""
    from ase.build import bulk
    from ase.io import write

    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.05, seed=3)
    path = tmp_path / "ar.xyz"
    write(path, atoms, format="extxyz")
    return path


def md_input(structure: Path, **changes) -> dict:
    return {"structure": str(structure), "type_map": ["Ar"], "potential": {"type": "toy_soft", "epsilon": 0.05,
            "cutoff": 4.5}, "ensemble": "nve", "init_temperature": 60.0, "dt": 2.0, "steps": 40, "seed": 5,
            "thermo_every": 1000, "traj_every": 1000, "checkpoint_every": 1000, "output_dir": "md",
            "device": "cpu", "progress": False, **changes}


def test_toy_potential_in_md(toy_potential, argon, tmp_path):
    from md_engine import build_simulation

    with pytest.raises(ConfigError, match=r"in\.yaml: potential\.type: unknown potential 'toy_sfot'; "
                                          r"expected one of \[.*'toy_soft'.*\] \(did you mean `toy_soft`\?\)"):
        parse_config(md_input(argon, potential={"type": "toy_sfot"}), "in.yaml")
    with pytest.raises(ConfigError, match=r"potential\.epsilonn: unknown key \(did you mean `epsilon`\?\)"):
        parse_config(md_input(argon, potential={"type": "toy_soft", "epsilonn": 1, "cutoff": 4.5}), "in.yaml")
    # the nested spelling {NAME: {...}} means the same
    cfg = parse_config(md_input(argon), "in.yaml", base_dir=tmp_path)
    assert cfg.potential == parse_config(md_input(argon, potential={"toy_soft": {"epsilon": 0.05, "cutoff": 4.5}})).potential
    sim = build_simulation(cfg)
    assert isinstance(sim.potential, SoftSphere) and cfg.output_dir == str(tmp_path / "md")
    st = sim.state
    sim.evaluate(st)
    # forces and virial against finite differences of the energy (a fixed pair list with a skin)
    pot, nl = sim.potential, sim.verlet.nl

    def energy(p: torch.Tensor, c: torch.Tensor) -> float:
        return float(pot.compute(p, st.types, c, st.pbc, nl, outputs=frozenset({"energy"}))["energy"])

    res = pot.compute(st.positions, st.types, st.cell, st.pbc, nl)
    check_forces_fd(energy, res["forces"], st.positions, st.cell, [(0, 0), (17, 1), (255, 2)])
    check_virial_fd(energy, res["virial"], st.positions, st.cell)
    # the extra named output is an observable by its name
    row = sim.thermo(["conserved_eV", "dU_depsilon"])
    assert row["dU_depsilon"] == pytest.approx(float(st.energy) / 0.05, rel=1e-12)
    e0 = row["conserved_eV"]
    sim.run(40)
    drift_ = abs(sim.thermo(["conserved_eV"])["conserved_eV"] - e0)
    # NVE: |ΔE| < 1e-5 eV over 40 steps of 2 fs (measured: 1.6e-7 eV; kinetic energy ~2 eV)
    assert drift_ < 1e-5, drift_


# ================================================================================ (c) a toy integrator
class Berendsen(Integrator):
    """Velocity Verlet followed by Berendsen velocity rescaling, λ² = 1 + (dt/τ)(T₀/T − 1); the energy
    taken out by the rescaling is accumulated so that U + K + heat is conserved."""

    def __init__(self, dt: float, temperature: float, tau: float, seed: int = 0) -> None:
        super().__init__(dt, seed)
        self.temperature = float(temperature)
        self.tau = float(tau)
        self.heat = 0.0

    def step(self, state, compute) -> None:
        kick(state, 0.5 * self.dt)
        drift(state, self.dt)
        compute(state)
        kick(state, 0.5 * self.dt)
        t = float(temperature(state, self.comm, self.dof))
        k = float(kinetic_energy(state, self.comm))
        lam2 = 1.0 + (self.dt / self.tau) * (self.temperature / max(t, 1e-12) - 1.0)
        state.velocities[: state.n_local] *= math.sqrt(lam2)
        self.heat -= (lam2 - 1.0) * k

    def conserved_extra(self, state) -> float:
        return self.heat

    def state_dict(self) -> dict:
        return {**super().state_dict(), "heat": self.heat}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.heat = float(d.get("heat", 0.0))


@pytest.fixture
def toy_integrator():
    @INTEGRATORS.register("toy-berendsen", requires=("temperature",))
    def build(cfg) -> Berendsen:
        return Berendsen(cfg.dt, cfg.temperature, cfg.tau_t, seed=cfg.seed)

    yield Berendsen
    INTEGRATORS.remove("toy-berendsen")


def test_toy_integrator_selected_by_ensemble(toy_potential, toy_integrator, argon, tmp_path):
    from md_engine import build_simulation

    with pytest.raises(ConfigError, match=r"temperature: required for ensemble toy-berendsen \(K\)"):
        parse_config(md_input(argon, ensemble="toy-berendsen"), "in.yaml")
    with pytest.raises(ConfigError, match=r"ensemble: unknown ensemble 'toy-berendsn'.*\(did you mean `toy-berendsen`\?\)"):
        parse_config(md_input(argon, ensemble="toy-berendsn", temperature=10.0), "in.yaml")
    sim = build_simulation(parse_config(md_input(argon, ensemble="toy-berendsen", temperature=20.0, tau_t=20.0),
                                        "in.yaml", base_dir=tmp_path))
    assert isinstance(sim.integrator, Berendsen)
    sim.run(0)
    e0 = sim.thermo(["conserved_eV"])["conserved_eV"]
    sim.run(40)
    row = sim.thermo(["conserved_eV", "temperature_K"])
    assert row["temperature_K"] < 25.0  # relaxed from 60 K to about 20 K (τ = 20 fs, 80 fs run; measured 20.4 K)
    # U + K + heat removed by the rescaling is conserved: |Δ| < 1e-5 eV (measured 8e-8 eV; K fell by 1.3 eV)
    assert abs(row["conserved_eV"] - e0) < 1e-5


# ================================================================================ (d) a toy data format
def _read_toy(path: Path, type_map) -> list:
    d = json.loads(Path(path).read_text())
    frames = mlpot.LabeledFrames(
        type_map=d["type_map"], atom_types=np.asarray(d["atom_types"]), positions=np.asarray(d["positions"]),
        cells=np.asarray(d["cells"]), pbc=np.asarray(d["pbc"]), energies=np.asarray(d["energies"]),
        forces=np.asarray(d["forces"]), source=str(path))
    return [frames.with_type_map(list(type_map)) if type_map is not None else frames]


def _write_toy(systems: list, path: Path, append: bool = False) -> None:
    (s,) = systems
    Path(path).write_text(json.dumps({
        "type_map": list(s.type_map), "atom_types": s.atom_types.tolist(), "positions": s.positions.tolist(),
        "cells": s.cells.tolist(), "pbc": np.asarray(s.pbc).tolist(), "energies": s.energies.tolist(),
        "forces": s.forces.tolist()}))


@pytest.fixture
def toy_format():
    fmt = register("toy-json", aliases=("tj",), read=_read_toy, write=_write_toy, suffixes=(".tj",),
                   description="toy JSON frames")
    yield fmt
    FORMATS.remove("toy-json")


def test_toy_data_format(toy_format, tmp_path):
    from mlpot.cli import main

    src = mlpot.read(WATER / "data_0")[0]
    assert main(["convert", str(WATER / "data_0"), "-o", str(tmp_path / "w.tj")]) == 0  # chosen by the suffix
    (back,) = mlpot.read(tmp_path / "w.tj")  # guessed from the suffix
    assert back.n_frames == src.n_frames and np.array_equal(back.positions, src.positions)
    assert np.array_equal(back.forces, src.forces) and list(back.type_map) == list(src.type_map)
    # and on to HDF5 through `mlpot convert` with an explicit input format
    assert main(["convert", str(tmp_path / "w.tj"), "--input-format", "tj", "-o", str(tmp_path / "w.h5")]) == 0
    (h5,) = mlpot.read(tmp_path / "w.h5")
    assert np.array_equal(h5.energies, src.energies)
