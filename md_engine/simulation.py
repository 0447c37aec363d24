"""The MD loop: ``Simulation(state, potential, integrator, reporters, ...).run(nsteps)``.

The force evaluation is one method, :meth:`Simulation.compute_forces` (neighbor-list update +
potential), which the domain-decomposition layer wraps (ghost exchange before, reverse force
communication and reductions after). :meth:`Simulation.evaluate` adds the safety checks and stores the
results in the state; integrators call it once per step.

Safety checks (after every force evaluation, in one device synchronisation):

* non-finite energy or forces;
* two atoms closer than ``min_distance`` (Å, default 0.3);
* a *lost atom*: along a non-periodic direction, an atom more than ``lost_margin`` Å (default
  3 × cutoff) beyond the reference extent of the system — the box when the cell vector is non-zero,
  and always the extent of the initial positions (``State.bounds``); measured as fractional coordinate
  × vector length in the completed cell;
* neighbor overflow and other model failures (``ModelError`` from the model) .

Each stops the run with :class:`SimulationError`; before raising, the failing state is written to
``failure_checkpoint`` (default: ``<checkpoint>.failed.pt`` beside the periodic checkpoint, if any),
and all reporters are flushed and closed, so nothing written before is lost. Restart from the last
periodic checkpoint.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from mlpot.errors import ModelError, SimulationError
from mlpot.neighbors import VerletList, pair_vectors
from mlpot.units import EV_PER_A3_TO_BAR

from md_engine.comm import p2p
from md_engine.domain import Domain
from md_engine.integrators import Integrator, pressure
from md_engine.io import CheckpointReporter, Reporter, load_checkpoint, save_checkpoint
from md_engine.potentials import Potential
from md_engine.state import Comm, SERIAL, State, global_n_atoms, kinetic_energy, lost_atom_excess, temperature


def _match_type_map(state: State, potential: Potential) -> None:
    """Re-index ``state.types`` to the potential's ``type_map`` (if it has one), in place."""
    tm = getattr(potential, "type_map", None)
    if tm is None or list(tm) == list(state.type_map):
        return
    tm = list(tm)
    missing = [s for s in state.type_map if s not in tm and bool((state.types == state.type_map.index(s)).any())]
    if missing:
        raise SimulationError(f"elements {missing} of the structure are not in the model's type_map {tm}")
    lut = torch.tensor([tm.index(s) if s in tm else -1 for s in state.type_map], dtype=torch.long,
                       device=state.device)
    state.types = lut[state.types]
    state.type_map = tm


class Simulation:
    """An MD run of ``state`` under ``potential`` with ``integrator``.

    ``skin`` (Å): Verlet skin; ``rebuild_every``: force neighbor rebuilds every that many steps
    (None: only when needed). ``min_distance`` (Å), ``lost_margin`` (Å): see module docstring;
    ``check_every``: steps between those safety checks (also done before every output).
    ``progress``: show a tqdm bar (ns/day, ETA). ``comm``: communicator (serial by default).
    """

    def __init__(
        self,
        state: State,
        potential: Potential,
        integrator: Integrator,
        reporters: Sequence[Reporter] = (),
        skin: float = 1.0,
        rebuild_every: Optional[int] = None,
        min_distance: float = 0.3,
        lost_margin: Optional[float] = None,
        failure_checkpoint: Optional[str | Path] = None,
        progress: bool = False,
        comm: Optional[Comm] = None,
        grid: Optional[Sequence[int]] = None,
        ghosts: Optional[bool] = None,
        check_every: int = 10,
    ) -> None:
        if check_every < 1:
            raise SimulationError(f"check_every: expected a positive number of steps, got {check_every}")
        self.potential = potential
        _match_type_map(state, potential)
        self.comm: Comm = comm or SERIAL
        # the decomposition; one rank without ghosts = the shift-based serial path (md_engine.domain)
        self.domain = Domain(self.comm, state.cell, state.pbc, potential.cutoff + skin, grid=grid, ghosts=ghosts)
        self.state = self.domain.scatter(state)
        self._pair_positions: Optional[torch.Tensor] = None
        self.integrator = integrator
        self.reporters = list(reporters)
        self.verlet = VerletList(potential.cutoff, skin, rebuild_every=rebuild_every)
        self.min_distance = float(min_distance)
        self.check_every = int(check_every)
        self.lost_margin = float(lost_margin) if lost_margin is not None else 3.0 * potential.cutoff
        if failure_checkpoint is None:
            ck = [r for r in self.reporters if isinstance(r, CheckpointReporter)]
            if ck:
                failure_checkpoint = ck[0].path.with_name(ck[0].path.stem + ".failed.pt")
        self.failure_checkpoint = Path(failure_checkpoint) if failure_checkpoint else None
        self.progress = progress
        self.wall_s = 0.0
        self._ready = False
        self._restart_step: Optional[int] = None
        self._opened = False
        self._t0 = time.perf_counter()
        self._steps_timed = 0
        self.n_rebuilds_at_start = 0

    # --- forces -----------------------------------------------------------------------------------
    def compute_forces(self, state: State, update_neighbors: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Neighbor-list update (if ``update_neighbors``) and potential: (energy eV, forces eV/Å, virial eV).

        With ghost atoms (MPI): migration + ghost build at list rebuilds, else the ghost position
        exchange; the potential on local + ghost atoms; reverse forces; global energy and virial."""
        if not self.domain.serial:
            return self._compute_forces_domain(state, update_neighbors)
        if update_neighbors or self.verlet.nl is None:
            nl, _ = self.verlet.update(state, comm=self.comm)
        else:
            nl = self.verlet.nl
        try:
            return self.potential.compute(state.positions, state.types, state.cell, state.pbc, nl, virial=True)
        except ModelError as exc:
            raise SimulationError(f"step {state.step}: model evaluation failed: {exc}") from exc

    def _compute_forces_domain(self, state: State, update_neighbors: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dom, v = self.domain, self.verlet
        need = v.nl is None
        if update_neighbors and not need:
            v.n_updates += 1
            need = (v.rebuild_every is not None and v.n_updates % v.rebuild_every == 0) or \
                float(v.excess_displacement(state, self.comm)) > 0
        if need:
            dom.migrate(state)
            pos_all, nl = dom.build(state)
            v.nl, v.ref_positions, v.ref_cell = nl, state.positions.detach().clone(), state.cell.detach().clone()
            v.n_builds += 1
        else:
            pos_all = dom.forward(state)
        self._pair_positions = pos_all
        dt, dev = state.dtype, state.device
        err = ""
        try:
            energy, forces, virial = self.potential.compute(
                pos_all, dom.all_types, torch.zeros(3, 3, dtype=dt, device=dev),
                torch.zeros(3, dtype=torch.bool, device=dev), v.nl, virial=True, n_local=state.n_local,
            )
        except Exception as exc:  # any failure on one rank must not leave the others waiting
            err = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ModelError, SimulationError)) else str(exc)
            energy = torch.zeros((), dtype=dt, device=dev)
            forces = torch.zeros(dom.n_all, 3, dtype=dt, device=dev)
            virial = torch.zeros(3, 3, dtype=dt, device=dev)
        flag = torch.tensor([1.0 if err else 0.0], dtype=torch.float64, device=dev)
        red = self.comm.allreduce_sum(torch.cat([energy.reshape(1).double(), virial.reshape(9).double(), flag]))
        if float(red[10]) > 0:
            raise SimulationError(f"step {state.step}: model evaluation failed: {self._failed_rank_message(err)}")
        return red[0].to(dt), dom.reverse(forces).to(dt), red[1:10].reshape(3, 3).to(dt)

    def _failed_rank_message(self, err: str) -> str:
        """Collective: the message of the lowest-numbered rank that failed, prefixed with its rank."""
        size = self.comm.size
        score = torch.tensor([float(size - self.comm.rank) if err else 0.0], dtype=torch.float64)
        root = size - int(self.comm.allreduce_max(score)[0])
        msg = p2p(self.comm).bcast_obj(err, root=root)
        return f"rank {root}: {msg}" if size > 1 else msg

    def gathered_state(self) -> Optional[State]:
        """Collective: the global state in global-id order on rank 0 (None on other ranks); with one
        rank without ghosts, ``self.state`` itself. Includes forces, energy and virial."""
        st = self.state
        if self.domain.serial:
            return st
        arrays = {name: getattr(st, name) for name in ("positions", "velocities", "masses", "types", "image")}
        if st.forces is not None:
            arrays["forces"] = st.forces
        if self.verlet.ref_positions is not None:
            arrays["ref_positions"] = self.verlet.ref_positions
        g = self.domain.gather(arrays, st.ids)  # type: ignore[arg-type]
        if g is None:
            return None
        out = State(positions=g["positions"], velocities=g["velocities"], masses=g["masses"], types=g["types"],
                    cell=st.cell.detach().cpu(), pbc=st.pbc.cpu(), type_map=list(st.type_map), image=g["image"],
                    bounds=st.bounds.detach().cpu(), step=st.step, time_fs=st.time_fs)  # type: ignore[union-attr]
        out.energy, out.virial, out.forces = st.energy, st.virial, g.get("forces")
        if "ref_positions" in g:
            out.extra["ref_positions"] = g["ref_positions"]
        return out

    def evaluate(self, state: State, update_neighbors: bool = True) -> None:
        """Forces at the current positions, stored in ``state``; the safety checks for the first one
        (later ones are checked by :meth:`run` every ``check_every`` steps and before every output)."""
        energy, forces, virial = self.compute_forces(state, update_neighbors)
        state.energy, state.forces, state.virial = energy, forces, virial
        if not self._ready:
            self.check(state)

    def check(self, state: State) -> None:
        nl = self.verlet.nl
        assert nl is not None
        finite = torch.isfinite(state.energy).all() & torch.isfinite(state.forces).all()  # type: ignore[arg-type]
        if nl.centers.numel():
            if self.domain.serial:
                d = pair_vectors(state.positions, state.cell, None, nl)
            else:  # local + ghost positions, no shifts
                d = self._pair_positions[nl.neighbors] - self._pair_positions[nl.centers]  # type: ignore[index]
            dmin = torch.einsum("pk,pk->p", d, d).min().sqrt()
        else:
            dmin = torch.tensor(float("inf"), dtype=state.dtype, device=state.device)
        lost = lost_atom_excess(state)
        # one reduction for all ranks' verdicts (identity serially): max of (not ok, −dmin, lost)
        flags = torch.stack([(~finite).to(torch.float64), -dmin.to(torch.float64), lost.to(torch.float64)])
        bad, neg_dmin, lost_v = self.comm.allreduce_max(flags).tolist()
        ok, dmin_v = bad == 0, -neg_dmin
        if not ok:
            raise SimulationError(f"step {state.step}: non-finite energy or forces (energy = {float(state.energy)})"
                                  + (" on at least one rank" if self.comm.size > 1 else ""))
        if dmin_v < self.min_distance:
            raise SimulationError(
                f"step {state.step}: two atoms are {dmin_v:.4f} Å apart, closer than min_distance = {self.min_distance} Å"
            )
        if lost_v > self.lost_margin:
            raise SimulationError(
                f"step {state.step}: lost atom: an atom is {lost_v:.2f} Å beyond the system's extent along a "
                f"non-periodic direction (lost_margin = {self.lost_margin} Å)"
            )

    # --- setup, checkpoint, restart ----------------------------------------------------------------
    def setup(self) -> None:
        """Integrator setup and the first force evaluation (idempotent)."""
        if self._ready:
            return
        self.integrator.setup(self.state, self.comm)
        self.evaluate(self.state, update_neighbors=self.verlet.nl is None)
        self._ready = True

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore state, integrator (thermostat variables, RNG) and neighbor list from ``path``."""
        d = load_checkpoint(path)
        st = self.state
        dev, dt = st.device, st.dtype
        n_global = global_n_atoms(st, self.comm)
        if list(d["type_map"]) != list(st.type_map) or d["positions"].shape != (n_global, 3):
            raise SimulationError(f"{path}: checkpoint of {d['positions'].shape[0]} atoms / type_map {d['type_map']} "
                                  f"does not match the system ({n_global} atoms, {st.type_map})")
        if not self.domain.serial:  # global arrays in the file: distribute them (any rank count wrote it)
            g = State(positions=d["positions"].to(device=dev, dtype=dt), velocities=d["velocities"].to(device=dev, dtype=dt),
                      masses=d["masses"].to(device=dev, dtype=dt), types=d["types"].to(dev), cell=d["cell"].to(device=dev, dtype=dt),
                      pbc=d["pbc"].to(dev), type_map=list(d["type_map"]), image=d["image"].to(dev),
                      bounds=d["bounds"].to(device=dev, dtype=dt), step=int(d["step"]), time_fs=float(d["time_fs"]))
            self.state = st = self.domain.scatter(g)
            self.wall_s = float(d.get("wall_s", 0.0))
            self.integrator.setup(st, self.comm)
            self.integrator.load_state_dict(d["integrator"])
            gen = self.integrator.generator
            if gen is not None and self.comm.rank > 0:  # per-rank noise streams: fresh, reproducible seeds
                gen.manual_seed(self.integrator.seed + 7919 * self.comm.rank + 1000003 * st.step)
            self.verlet.nl = None  # rebuilt (with migration and ghosts) by the first evaluation
            self.verlet.n_updates = int(d["neighbors"].get("n_updates", 0))
            self.evaluate(st, update_neighbors=False)
            self._ready = True
            self._restart_step = st.step
            return
        if d["integrator_class"] != type(self.integrator).__name__:
            raise SimulationError(f"{path}: checkpoint written by integrator {d['integrator_class']}, "
                                  f"restarting with {type(self.integrator).__name__}")
        for name in ("positions", "velocities", "masses", "cell", "bounds"):
            setattr(st, name, d[name].to(device=dev, dtype=dt))
        st.types = d["types"].to(dev)
        st.pbc = d["pbc"].to(dev)
        st.image = d["image"].to(dev)
        st.step = int(d["step"])
        st.time_fs = float(d["time_fs"])
        self.wall_s = float(d.get("wall_s", 0.0))
        self.integrator.setup(st, self.comm)
        self.integrator.load_state_dict(d["integrator"])
        self.verlet.load_state_dict(d["neighbors"], st)
        self.evaluate(st, update_neighbors=False)
        self._ready = True
        self._restart_step = st.step

    def save_checkpoint(self, path: str | Path) -> Path:
        return save_checkpoint(self, path)

    # --- observables -------------------------------------------------------------------------------
    def thermo(self) -> dict[str, Any]:
        st = self.state
        ke = float(kinetic_energy(st, self.comm))
        pe = float(st.energy)  # type: ignore[arg-type]
        periodic = bool(st.pbc.all())
        vol = float(st.volume) if periodic else float("nan")
        p = float(pressure(st, self.comm)) * EV_PER_A3_TO_BAR if periodic else float("nan")
        elapsed = time.perf_counter() - self._t0
        ns_day = (self._steps_timed * self.integrator.dt * 1e-6) / (elapsed / 86400.0) if self._steps_timed and elapsed > 0 else 0.0
        return {
            "step": int(st.step), "time_ps": st.time_fs / 1000.0, "potential_eV": pe, "kinetic_eV": ke,
            "total_eV": pe + ke, "conserved_eV": pe + ke + self.integrator.conserved_extra(st),
            "temperature_K": float(temperature(st, self.comm, self.integrator.dof)), "pressure_bar": p,
            "volume_A3": vol, "ns_per_day": ns_day,
        }

    @property
    def n_rebuilds(self) -> int:
        return self.verlet.n_builds

    # --- the loop ----------------------------------------------------------------------------------
    def _open_reporters(self) -> None:
        if self._opened:
            return
        restart = self._restart_step
        for r in self.reporters:
            r.open(self, restart_step=restart)
        self._opened = True
        if restart is None:  # a fresh run reports its initial state
            for r in self.reporters:
                if not isinstance(r, CheckpointReporter) and self.state.step % r.interval == 0:
                    r.report(self)

    def close(self) -> None:
        for r in self.reporters:
            r.close()
        self._opened = False
        self._restart_step = self.state.step  # a later run() appends

    def _fail(self, exc: SimulationError) -> None:
        if self.failure_checkpoint is not None:
            try:
                save_checkpoint(self, self.failure_checkpoint)
            except Exception:  # never mask the original error
                pass
        self.close()

    def run(self, nsteps: int) -> None:
        """Advance ``nsteps`` steps, reporting as configured; raises :class:`SimulationError` on failure."""
        try:
            self.setup()
            self._open_reporters()
        except SimulationError as exc:
            self._fail(exc)
            raise
        bar = None
        # a bar only on a terminal; in a log file the thermo lines (with ns/day) are the progress report
        if self.progress and self.comm.rank == 0 and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=nsteps, unit="step", dynamic_ncols=True)
        self._t0 = time.perf_counter()
        self._steps_timed = 0
        st, integ = self.state, self.integrator
        try:
            for _ in range(nsteps):
                integ.step(st, self.evaluate)
                st.step += 1
                st.time_fs += integ.dt
                self._steps_timed += 1
                due = [r for r in self.reporters if st.step % r.interval == 0]
                # the checks cost a pass over all pairs and a host sync: every check_every steps, and
                # always before anything is written, so no output ever holds a NaN or collapsed frame
                if due or st.step % self.check_every == 0:
                    self.check(st)
                for r in due:
                    r.report(self)
                if bar is not None:
                    bar.update(1)
                    if self._steps_timed % 10 == 0:
                        el = time.perf_counter() - self._t0
                        bar.set_postfix_str(f"{self._steps_timed * integ.dt * 1e-6 / (el / 86400.0):.3f} ns/day")
        except SimulationError as exc:
            self._fail(exc)
            raise
        except BaseException:  # Ctrl-C or a bug: keep what was written, flushed and closed
            self.close()
            raise
        finally:
            self.wall_s += time.perf_counter() - self._t0
            if bar is not None:
                bar.close()
        self.close()
