"""MD checkpoints: save and restore in one module, one restore path for any rank count.

A checkpoint is a ``torch.save`` dict of tensors, ints, floats, strs and lists/dicts of those
(loadable with ``weights_only=True``), written atomically by rank 0: the global arrays in global-id
order (positions, velocities, masses, types, image; cell, pbc, bounds, type_map), the step and time,
the integrator's variables (``Integrator.state_dict``: thermostat/barostat variables; no RNG state —
random numbers are keyed by the step, :mod:`md_engine.rng`), the neighbor-list counters and its
reference positions/cell, the rank count that wrote it and the wall time so far.

Restore (:func:`restore_checkpoint`): the global state is distributed by the simulation's domain
(``domain.scatter``; serially the state itself), the integrator is set up and loaded, and the neighbor
list is rebuilt at the reference positions where the domain keeps such a list (serial: the same list
bit for bit, so a restart continues exactly) or from scratch at the first evaluation (ghost atoms:
migration first). A checkpoint of P ranks restarts on any number of ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

from mlpot.atomic_io import atomic_path
from mlpot.errors import SimulationError

from md_engine.observables import global_n_atoms
from md_engine.state import State

if TYPE_CHECKING:
    from md_engine.simulation import Simulation

#: 2: integrator state without RNG state (keyed random numbers), NPT as {"thermostat", "barostat"}
CHECKPOINT_VERSION = 2

_PER_ATOM = ("positions", "velocities", "masses", "types", "image")


def checkpoint_dict(sim: "Simulation") -> Optional[dict[str, Any]]:
    """Collective: the restart state as global arrays in global-id order (any rank count restarts
    it); None on ranks other than 0."""
    g = sim.gather(include_reference=True)
    if g is None:
        return None
    st, ref = g
    v = sim.verlet
    neighbors: dict[str, Any] = {"n_builds": v.n_builds, "n_updates": v.n_updates}
    if ref is not None and v.ref_cell is not None:
        neighbors["ref_positions"] = ref.detach().cpu()
        neighbors["ref_cell"] = v.ref_cell.detach().cpu()
    d: dict[str, Any] = {name: getattr(st, name).detach().cpu() for name in _PER_ATOM}
    d.update({
        "version": CHECKPOINT_VERSION, "step": int(st.step), "time_fs": float(st.time_fs),
        "cell": st.cell.detach().cpu(), "pbc": st.pbc.cpu(), "bounds": st.bounds.detach().cpu(),
        "type_map": list(st.type_map), "integrator_class": type(sim.integrator).__name__,
        "integrator": sim.integrator.state_dict(), "neighbors": neighbors, "n_ranks": int(sim.comm.size),
        "wall_s": float(sim.wall_s),
    })
    return d


def save_checkpoint(sim: "Simulation", path: str | Path) -> Path:
    """Collective: write the checkpoint of ``sim`` to ``path`` (rank 0, atomically)."""
    path = Path(path)
    d = checkpoint_dict(sim)
    if d is not None:  # rank 0
        with atomic_path(path) as tmp:
            torch.save(d, tmp)
    if sim.comm.size > 1:
        sim.comm.barrier()  # the file exists for every rank when this returns
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of ``path`` (on the CPU); :class:`SimulationError` if missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise SimulationError(f"{path}: checkpoint not found")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SimulationError(f"{path}: not a readable md_engine checkpoint ({exc})") from exc
    if not isinstance(d, dict) or d.get("version") != CHECKPOINT_VERSION:
        raise SimulationError(f"{path}: expected an md_engine checkpoint of version {CHECKPOINT_VERSION}")
    return d


def restore_checkpoint(sim: "Simulation", path: str | Path) -> None:
    """Collective: restore state, integrator and neighbor list of ``sim`` from ``path`` (module docstring)."""
    d = load_checkpoint(path)
    st = sim.state
    dev, dt = st.device, st.dtype
    n_global = global_n_atoms(st, sim.comm)
    if list(d["type_map"]) != list(st.type_map) or d["positions"].shape != (n_global, 3):
        raise SimulationError(f"{path}: checkpoint of {d['positions'].shape[0]} atoms / type_map {d['type_map']} "
                              f"does not match the system ({n_global} atoms, {st.type_map})")
    if d["integrator_class"] != type(sim.integrator).__name__:
        raise SimulationError(f"{path}: checkpoint written by integrator {d['integrator_class']}, "
                              f"restarting with {type(sim.integrator).__name__}")

    def f(name: str) -> torch.Tensor:
        return d[name].to(device=dev, dtype=dt)

    g = State(positions=f("positions"), velocities=f("velocities"), masses=f("masses"), types=d["types"].to(dev),
              cell=f("cell"), pbc=d["pbc"].to(dev), type_map=list(d["type_map"]), image=d["image"].to(dev),
              bounds=f("bounds"), step=int(d["step"]), time_fs=float(d["time_fs"]))
    sim.state = st = sim.domain.scatter(g)
    sim.wall_s = float(d.get("wall_s", 0.0))
    sim.integrator.setup(st, sim.comm)
    sim.integrator.load_state_dict(d["integrator"])
    v, nb = sim.verlet, d["neighbors"]
    if sim.domain.keeps_reference_list and "ref_positions" in nb:
        v.load_state_dict(nb, st)  # the list of the uninterrupted run, bit for bit
    else:
        v.nl = None  # rebuilt (with migration and ghosts) by the first evaluation
    v.n_updates = int(nb.get("n_updates", 0))
    v.n_builds = int(nb.get("n_builds", v.n_builds))
    sim.restored(st)


__all__ = ["CHECKPOINT_VERSION", "checkpoint_dict", "save_checkpoint", "load_checkpoint", "restore_checkpoint"]
