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

import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from mlpot.errors import ModelError, SimulationError
from mlpot.units import EV_PER_A3_TO_BAR

from md_engine.integrators import Integrator, pressure
from md_engine.io import CheckpointReporter, Reporter, load_checkpoint, save_checkpoint
from md_engine.neighbors import VerletList
from md_engine.potentials import Potential, pair_vectors
from md_engine.state import Comm, SERIAL, State, kinetic_energy, lost_atom_excess, temperature


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
    (None: only when needed). ``min_distance`` (Å), ``lost_margin`` (Å): see module docstring.
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
    ) -> None:
        self.state = state
        self.potential = potential
        _match_type_map(state, potential)
        self.integrator = integrator
        self.reporters = list(reporters)
        self.verlet = VerletList(potential.cutoff, skin, rebuild_every=rebuild_every)
        self.min_distance = float(min_distance)
        self.lost_margin = float(lost_margin) if lost_margin is not None else 3.0 * potential.cutoff
        if failure_checkpoint is None:
            ck = [r for r in self.reporters if isinstance(r, CheckpointReporter)]
            if ck:
                failure_checkpoint = ck[0].path.with_name(ck[0].path.stem + ".failed.pt")
        self.failure_checkpoint = Path(failure_checkpoint) if failure_checkpoint else None
        self.progress = progress
        self.comm: Comm = comm or SERIAL
        self.wall_s = 0.0
        self._ready = False
        self._restart_step: Optional[int] = None
        self._opened = False
        self._t0 = time.perf_counter()
        self._steps_timed = 0
        self.n_rebuilds_at_start = 0

    # --- forces -----------------------------------------------------------------------------------
    def compute_forces(self, state: State, update_neighbors: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Neighbor-list update (if ``update_neighbors``) and potential: (energy eV, forces eV/Å, virial eV)."""
        if update_neighbors or self.verlet.nl is None:
            nl, _ = self.verlet.update(state, comm=self.comm)
        else:
            nl = self.verlet.nl
        try:
            return self.potential.compute(state.positions, state.types, state.cell, state.pbc, nl, virial=True)
        except ModelError as exc:
            raise SimulationError(f"step {state.step}: model evaluation failed: {exc}") from exc

    def evaluate(self, state: State, update_neighbors: bool = True) -> None:
        """Forces at the current positions, stored in ``state``; then the safety checks."""
        energy, forces, virial = self.compute_forces(state, update_neighbors)
        state.energy, state.forces, state.virial = energy, forces, virial
        self.check(state)

    def check(self, state: State) -> None:
        nl = self.verlet.nl
        assert nl is not None
        finite = torch.isfinite(state.energy).all() & torch.isfinite(state.forces).all()  # type: ignore[arg-type]
        if nl.centers.numel():
            d = pair_vectors(state.positions, state.cell, nl)
            dmin = (d * d).sum(-1).min().sqrt()
        else:
            dmin = torch.tensor(float("inf"), dtype=state.dtype, device=state.device)
        lost = lost_atom_excess(state)
        ok, dmin_v, lost_v = torch.stack([finite.to(state.dtype), dmin.to(state.dtype), lost.to(state.dtype)]).tolist()
        if not ok:
            raise SimulationError(f"step {state.step}: non-finite energy or forces (energy = {float(state.energy)})")
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
        if list(d["type_map"]) != list(st.type_map) or d["positions"].shape != st.positions.shape:
            raise SimulationError(f"{path}: checkpoint of {d['positions'].shape[0]} atoms / type_map {d['type_map']} "
                                  f"does not match the system ({st.n_atoms} atoms, {st.type_map})")
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
        if self.progress and self.comm.rank == 0:
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
                for r in self.reporters:
                    if st.step % r.interval == 0:
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
