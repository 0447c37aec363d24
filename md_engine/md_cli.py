"""``mlpot md input.yaml``: molecular dynamics with md_engine (see :mod:`md_engine.config`).

Writes to ``output_dir``: ``thermo.csv``, ``traj.h5`` (H5MD) and/or ``traj.xyz``, ``checkpoint.pt``
(every ``checkpoint_every`` steps and at the end; ``checkpoint.failed.pt`` if the run stops on an
error). ``restart: true`` (or ``--restart``) continues from ``output_dir/checkpoint.pt``.

MPI: ``mpirun -n P mlpot md input.yaml`` (or ``srun``) runs the same input on P ranks (spatial
decomposition, :mod:`md_engine.domain`); the launch is detected from the environment, mpi4py is
imported only then. Each rank uses ``cuda:<local rank>`` when CUDA is available, else the CPU. Rank 0
writes all outputs (one file each, independent of P); a checkpoint of P ranks restarts on any number.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="YAML input file (structure, potential, ensemble, T, P, dt, steps, outputs)")
    parser.add_argument("--restart", action="store_true", help="continue from output_dir/checkpoint.pt")
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps")
    parser.add_argument("--device", default=None, help="override the device (cpu, cuda, cuda:1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build(cfg: Any, comm: Any = None) -> Any:
    """A ready :class:`md_engine.Simulation` from an :class:`md_engine.config.MDConfig`; ``comm``:
    a communicator (default: MPI when launched under MPI or ``parallel.mpi``, else serial)."""
    import torch

    from md_engine.comm import rank_device, world_comm

    from md_engine import (
        CSVR, CheckpointReporter, ExtxyzReporter, H5MDReporter, Langevin, LennardJones, MlpotPotential,
        NoseHooverChain, Simulation, State, StochasticCellRescaling, ThermoReporter, VelocityVerlet,
    )
    from md_engine.state import default_device

    comm = comm if comm is not None else world_comm(cfg.parallel.mpi)
    device = rank_device(comm, None if cfg.device == "auto" else cfg.device) if comm.size > 1 else \
        (default_device() if cfg.device == "auto" else cfg.device)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    if cfg.potential.model is not None:
        potential = MlpotPotential(cfg.potential.model, device=device)
        type_map = cfg.type_map or potential.type_map
    else:
        lj = cfg.potential.lj
        potential = LennardJones(lj.epsilon, lj.sigma, lj.cutoff, shift=lj.shift, smooth=lj.smooth, ro=lj.ro)
        type_map = cfg.type_map
    t_init = cfg.init_temperature if cfg.init_temperature is not None else cfg.temperature
    state = State.from_file(
        cfg.structure, format=cfg.format, type_map=type_map, lammps_symbols=cfg.lammps_symbols,
        device=device, dtype=dtype, temperature=t_init, seed=cfg.seed,
    )
    T = cfg.temperature
    if cfg.ensemble == "nve":
        integ: Any = VelocityVerlet(cfg.dt, seed=cfg.seed)
    elif cfg.ensemble == "nvt-langevin":
        integ = Langevin(cfg.dt, T, tau=cfg.tau_t, seed=cfg.seed)
    elif cfg.ensemble == "nvt-nh":
        integ = NoseHooverChain(cfg.dt, T, tau=cfg.tau_t, chain=cfg.nh_chain)
    elif cfg.ensemble == "nvt-csvr":
        integ = CSVR(cfg.dt, T, tau=cfg.tau_t, seed=cfg.seed)
    else:
        baro = StochasticCellRescaling(cfg.pressure, tau=cfg.tau_p, compressibility=cfg.compressibility,
                                       mode=cfg.barostat_mode)
        cls = CSVR if cfg.npt_thermostat == "csvr" else Langevin
        integ = cls(cfg.dt, T, tau=cfg.tau_t, seed=cfg.seed, barostat=baro)
    out = Path(cfg.output_dir)
    reporters: list[Any] = [ThermoReporter(out / "thermo.csv", cfg.thermo_every,
                                           stream=_thermo_stream(cfg.progress, comm.rank))]
    if "h5md" in cfg.traj_formats:
        reporters.append(H5MDReporter(out / "traj.h5", cfg.traj_every))
    if "extxyz" in cfg.traj_formats:
        reporters.append(ExtxyzReporter(out / "traj.xyz", cfg.traj_every))
    reporters.append(CheckpointReporter(cfg.checkpoint_path(), cfg.checkpoint_every))
    return Simulation(state, potential, integ, reporters, skin=cfg.skin, min_distance=cfg.min_distance, check_every=cfg.check_every,
                      lost_margin=cfg.lost_margin, progress=cfg.progress, comm=comm, grid=cfg.parallel.grid)


def run(args: argparse.Namespace) -> int:
    from mlpot.errors import ConfigError
    from md_engine.config import load_config

    cfg = load_config(args.input)
    updates: dict[str, Any] = {}
    if args.restart:
        updates["restart"] = True
    if args.steps is not None:
        updates["steps"] = args.steps
    if args.device:
        updates["device"] = args.device
    if args.no_progress:
        updates["progress"] = False
    cfg = cfg.model_copy(update=updates)
    from md_engine.comm import world_comm

    comm = world_comm(cfg.parallel.mpi)
    if comm.size == 1:
        return _run(cfg, args, comm)
    from mlpot.errors import SimulationError

    try:
        return _run(cfg, args, comm)
    except SimulationError:  # agreed on by all ranks (md_engine.simulation): a clean stop everywhere
        raise
    except BaseException as exc:  # one rank only, maybe: never leave the others waiting
        import traceback

        traceback.print_exc()
        print(f"mlpot md: rank {comm.rank}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        comm.abort(2)  # type: ignore[attr-defined]
        return 2


def _run(cfg: Any, args: argparse.Namespace, comm: Any) -> int:
    from mlpot.errors import ConfigError

    sim = build(cfg, comm)
    remaining = cfg.steps
    restart = cfg.restart_path()
    if restart is not None:
        if not restart.exists():
            raise ConfigError(f"{args.input}: restart: checkpoint {restart} not found")
        sim.load_checkpoint(restart)
        remaining = max(cfg.steps - sim.state.step, 0)
        if comm.rank == 0:
            print(f"mlpot md: restarting from {restart} at step {sim.state.step}; {remaining} steps to go")
    sim.run(remaining)
    sim.save_checkpoint(cfg.checkpoint_path())
    row = sim.thermo()
    if comm.rank:
        return 0
    ranks = f", {comm.size} ranks (grid {list(sim.domain.dims)})" if comm.size > 1 else ""
    print(
        f"mlpot md: {sim.state.step} steps, T = {row['temperature_K']:.1f} K, E_pot = {row['potential_eV']:.6f} eV, "
        f"{sim.n_rebuilds} neighbor-list builds, {sim.wall_s:.1f} s{ranks}; outputs in {cfg.output_dir}/"
    )
    return 0


def _thermo_stream(progress: bool, rank: int):
    """Thermo lines go to stdout on rank 0 unless a progress bar shows the run (only on a terminal)."""
    if rank != 0:
        return None
    return None if progress and sys.stderr.isatty() else sys.stdout
