"""``mlpot md input.yaml``: molecular dynamics with md_engine (see :mod:`md_engine.config`).

    mlpot md input.yaml [--restart] [--steps N] [--device cuda] [-q]
    mlpot md --help-config                     # every input key with its default and unit
    mpirun -n P mlpot md input.yaml            # spatial decomposition over P ranks

Writes to ``output_dir``: ``thermo.csv``, ``traj.h5`` (H5MD) and/or ``traj.xyz``, ``checkpoint.pt``
(every ``checkpoint_every`` steps and at the end; ``checkpoint.failed.pt`` if the run stops on an
error). ``restart: true`` (or ``--restart``) continues from ``output_dir/checkpoint.pt``. Relative
paths in the input are relative to the input file's folder.

MPI: the launch is detected from the environment (mpi4py is imported only then). Each rank uses
``cuda:<local rank>`` when CUDA is available, else the CPU. Rank 0 writes all outputs (one file each,
independent of P); a checkpoint of P ranks restarts on any number.

The only module of :mod:`mlpot` that imports :mod:`md_engine` (inside :func:`run`, so that importing
:mod:`mlpot.cli` never does): md_engine imports mlpot, never the other way round, and defines no
command line of its own. Library calls: :func:`md_engine.config.load_config`,
:func:`md_engine.comm.world_comm`, :func:`md_engine.build.build_simulation`, ``Simulation.run``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlpot.cli.options import add_device_option, add_quiet_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot md``."""
    parser.add_argument("input", nargs="?", help="YAML input file (structure, potential, ensemble, T, P, dt, steps, outputs)")
    parser.add_argument("--help-config", action="store_true",
                        help="list every key of the input file with its default and unit, then exit")
    parser.add_argument("--restart", action="store_true", help="continue from output_dir/checkpoint.pt")
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps")
    add_device_option(parser)
    add_quiet_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot md``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from md_engine.comm import world_comm
    from md_engine.config import keys_table, load_config

    if args.help_config:
        print("Keys of the mlpot md input file (YAML; relative paths are relative to its folder):\n")
        print(keys_table())
        return 0
    if args.input is None:
        from mlpot.errors import ConfigError

        raise ConfigError("the input file is required (mlpot md INPUT.yaml; mlpot md --help-config lists its keys)")
    cfg = load_config(args.input)
    updates: dict[str, Any] = {}
    if args.restart:
        updates["restart"] = True
    if args.steps is not None:
        if args.steps < 0:
            from mlpot.errors import ConfigError

            raise ConfigError(f"--steps: expected a non-negative number of steps, found {args.steps}")
        updates["steps"] = args.steps
    if args.device:
        updates["device"] = args.device
    if args.quiet:
        updates["progress"] = False
    cfg = cfg.model_copy(update=updates)
    comm = world_comm(cfg.parallel.mpi)
    if comm.size == 1:
        return _run(cfg, args.input, comm)
    from mlpot.errors import SimulationError

    try:
        return _run(cfg, args.input, comm)
    except SimulationError:  # agreed on by all ranks (md_engine.simulation): a clean stop everywhere
        raise
    except BaseException as exc:  # one rank only, maybe: never leave the others waiting
        import traceback

        traceback.print_exc()
        print(f"mlpot md: rank {comm.rank}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        comm.abort(2)
        return 2


def _run(cfg: Any, source: str, comm: Any) -> int:
    """Build the simulation, restart it if asked, run the remaining steps, write the final checkpoint."""
    from mlpot.errors import ConfigError

    from md_engine.build import build_simulation

    sim = build_simulation(cfg, comm)
    remaining = cfg.steps
    restart = cfg.restart_path()
    if restart is not None:
        if not restart.exists():
            raise ConfigError(f"{source}: restart: checkpoint {restart} not found")
        sim.load_checkpoint(restart)
        remaining = max(cfg.steps - sim.state.step, 0)
        if comm.rank == 0:
            print(f"mlpot md: restarting from {restart} at step {sim.state.step}; {remaining} steps to go")
    sim.run(remaining)
    sim.save_checkpoint(cfg.checkpoint_path())
    row = sim.thermo()
    from md_engine.observables import global_n_atoms, global_sum

    n_loc = sim.state.n_local
    total_mass = float(global_sum(sim.state.masses[:n_loc].sum(), comm))  # amu, all ranks take part
    n_atoms = global_n_atoms(sim.state, comm)
    if comm.rank:
        return 0
    ranks = f", {comm.size} ranks (grid {list(sim.domain.dims)})" if comm.size > 1 else ""
    print(
        f"mlpot md: {sim.state.step} steps, T = {row['temperature_K']:.1f} K, E_pot = {row['potential_eV']:.6f} eV, "
        f"{sim.n_rebuilds} neighbor-list builds, {sim.wall_s:.1f} s{ranks}; outputs in {cfg.output_dir}/"
    )
    thermo_path = Path(cfg.output_dir) / "thermo.csv"
    if thermo_path.exists():
        from md_engine.io import format_summary, read_thermo, summarize_thermo

        summary = summarize_thermo(read_thermo(thermo_path), total_mass, n_atoms)
        if summary is not None:
            print(f"mlpot md: {format_summary(summary)}")
    return 0
