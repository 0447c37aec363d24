"""The MD input → :class:`md_engine.Simulation` factory (used by ``mlpot md``; a library function).

The potential comes from ``potential`` (its registered class in
:data:`md_engine.potentials.POTENTIALS`: a frozen mlpot model, Lennard-Jones, ...), the integrator from the ``ensemble`` registry (:data:`md_engine.integrators.INTEGRATORS`), the reporters
from the output settings (``thermo.csv``, ``traj.h5``/``traj.xyz``, ``checkpoint.pt`` in
``output_dir``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, TextIO

import torch

from md_engine.comm import Comm, rank_device, world_comm
from md_engine.integrators import INTEGRATORS
from md_engine.io import CheckpointReporter, ExtxyzReporter, H5MDReporter, Reporter, ThermoReporter
from md_engine.potentials import POTENTIALS, Potential
from md_engine.simulation import Simulation
from md_engine.state import State

if TYPE_CHECKING:
    from md_engine.config import MDConfig


def build_potential(cfg: "MDConfig", device: torch.device) -> Potential:
    """The potential of the input's ``potential`` section, on ``device``: ``Cls.from_config(section,
    device)`` of the class registered under its ``type`` in :data:`md_engine.potentials.POTENTIALS`."""
    return POTENTIALS.get(cfg.potential.type, "potential.type").obj.from_config(cfg.potential, device)


def build_simulation(cfg: "MDConfig", comm: Optional[Comm] = None) -> Simulation:
    """A ready :class:`Simulation` from a validated :class:`md_engine.config.MDConfig`; ``comm``: a
    communicator (default: MPI when launched under MPI or ``parallel.mpi``, else serial)."""
    comm = comm if comm is not None else world_comm(cfg.parallel.mpi)
    device = rank_device(comm, cfg.device)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    potential = build_potential(cfg, device)
    type_map = cfg.type_map or getattr(potential, "type_map", None)
    t_init = cfg.init_temperature if cfg.init_temperature is not None else cfg.temperature
    state = State.from_file(
        cfg.structure, format=cfg.format, type_map=type_map, lammps_symbols=cfg.lammps_symbols,
        device=device, dtype=dtype, temperature=t_init, seed=cfg.seed,
    )
    integrator = INTEGRATORS[cfg.ensemble](cfg)
    out = Path(cfg.output_dir)
    reporters: list[Reporter] = [ThermoReporter(out / "thermo.csv", cfg.thermo_every, columns=cfg.thermo_columns,
                                                stream=_thermo_stream(cfg.progress, comm.rank))]
    if "h5md" in cfg.traj_formats:
        reporters.append(H5MDReporter(out / "traj.h5", cfg.traj_every))
    if "extxyz" in cfg.traj_formats:
        reporters.append(ExtxyzReporter(out / "traj.xyz", cfg.traj_every))
    reporters.append(CheckpointReporter(cfg.checkpoint_path(), cfg.checkpoint_every))
    return Simulation(state, potential, integrator, reporters, skin=cfg.skin, min_distance=cfg.min_distance,
                      check_every=cfg.check_every, lost_margin=cfg.lost_margin, progress=cfg.progress, comm=comm,
                      grid=cfg.parallel.grid)


def _thermo_stream(progress: bool, rank: int) -> Optional[TextIO]:
    """Thermo lines go to stdout on rank 0 unless a progress bar shows the run (only on a terminal)."""
    if rank != 0:
        return None
    return None if progress and sys.stderr.isatty() else sys.stdout


__all__ = ["build_simulation", "build_potential"]
