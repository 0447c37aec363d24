"""The MD loop: ``Simulation(state, potential, integrator, reporters, ...).run(nsteps)``.

The force evaluation is one path, :meth:`Simulation.compute_forces`, for one rank and many alike
(serial = the one-rank decomposition, :mod:`md_engine.domain`)::

    if verlet.needs_rebuild(state, comm):  pos, nl = domain.build(state); verlet.store(nl, ...)
    else:                                  pos = domain.forward(state)
    out = potential.compute(pos, types, cell, pbc, nl, n_local, outputs)   # named outputs
    out = domain.reduce(out)          # global energy/virial/scalar extras, forces on owned atoms

:meth:`Simulation.evaluate` stores the results in the state (``energy``, ``forces``, ``virial`` and
the extra outputs in ``state.outputs``) and runs the safety checks of the first evaluation;
integrators call it once per step.

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

from md_engine.checkpoint import restore_checkpoint, save_checkpoint
from md_engine.comm import SERIAL, Comm
from md_engine.domain import make_domain
from md_engine.integrators import Integrator
from md_engine.io import CheckpointReporter, Reporter
from md_engine.observables import THERMO_COLUMNS, observe
from md_engine.potentials import FORCE_OUTPUTS, Potential
from md_engine.potentials.pairs import note_build
from md_engine.space import lost_atom_excess
from md_engine.state import State


def _explain(exc: BaseException, step: int) -> str:
    """The message of a failed model evaluation; a neighbor overflow during a run (step > 0) says what
    it usually means there: the structure is exploding or collapsing, not that ``sel`` is too small."""
    msg = str(exc)
    if step > 0 and "neighbor overflow" in msg:
        msg += ("; during MD this usually means the structure is exploding or collapsing (time step too large, "
                "temperature too high, or the model met configurations outside its training data: check "
                "thermo.csv and the last trajectory frames); raise sel only if the structure is sane")
    return msg


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
    ``progress``: show a tqdm bar (ns/day, ETA). ``comm``: communicator (serial by default);
    ``grid``: MPI rank grid (None: automatic); ``ghosts``: use ghost atoms (default: with more than
    one rank; ``True`` on one rank runs the ghost path on periodic self-images).
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
        self.domain = make_domain(self.comm, state.cell, state.pbc, potential.cutoff + skin, grid=grid, ghosts=ghosts)
        self.state = self.domain.scatter(state)
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
        self._pair_positions = self.state.positions
        self._ready = False
        self._restart_step: Optional[int] = None
        self._opened = False
        self._t0 = time.perf_counter()
        self._steps_timed = 0

    # --- forces -----------------------------------------------------------------------------------
    def compute_forces(self, state: State, update_neighbors: bool = True) -> dict[str, torch.Tensor]:
        """The one force path (module docstring): neighbor-list update (if ``update_neighbors``, or
        when there is no list yet), the potential on the domain's pair positions, the reduction.

        Returns the global outputs: ``energy`` 0-d eV, ``forces`` (n_local, 3) eV/Å, ``virial``
        (3, 3) eV, plus the potential's extra outputs (scalars summed over ranks)."""
        dom, v = self.domain, self.verlet
        if v.nl is None or (update_neighbors and v.needs_rebuild(state, self.comm)):
            pos, nl = dom.build(state)
            v.store(nl, state.positions, state.cell)
            note_build(nl, v.ref_positions, v.ref_cell)  # pair tables oriented at the build (pairs.py)
        else:
            pos, nl = dom.forward(state), v.nl
        self._pair_positions = pos
        cell, pbc = dom.frame(state)
        err, out = "", None
        try:
            out = self.potential.compute(pos, dom.pair_types(state), cell, pbc, nl, n_local=dom.n_centers(state),
                                         outputs=FORCE_OUTPUTS)
        except Exception as exc:  # with several ranks: a failure on one must not leave the others waiting
            if self.comm.size == 1:
                if isinstance(exc, ModelError):
                    raise SimulationError(f"step {state.step}: model evaluation failed: {_explain(exc, state.step)}") from exc
                raise
            err = _explain(exc, state.step) if isinstance(exc, (ModelError, SimulationError)) else f"{type(exc).__name__}: {exc}"
        return dom.reduce(out, err, state.step)

    def evaluate(self, state: State, update_neighbors: bool = True) -> None:
        """Forces at the current positions, stored in ``state`` (energy, forces, virial; the other
        outputs in ``state.outputs``); the safety checks for the first one (later ones are checked by
        :meth:`run` every ``check_every`` steps and before every output)."""
        out = self.compute_forces(state, update_neighbors)
        state.energy, state.forces, state.virial = out["energy"], out["forces"], out["virial"]
        state.outputs = {k: t for k, t in out.items() if k not in FORCE_OUTPUTS}
        if not self._ready:
            self.check(state)

    def check(self, state: State) -> None:
        """The safety checks (module docstring), one reduction over ranks; :class:`SimulationError`."""
        nl = self.verlet.nl
        assert nl is not None
        finite = torch.isfinite(state.energy).all() & torch.isfinite(state.forces).all()
        if nl.centers.numel():
            d = pair_vectors(self._pair_positions, self.domain.frame(state)[0], None, nl)
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

    def _bar_text(self) -> str:
        """The progress bar's figures: T (K), E_pot (eV), P (bar) and ns/day. Only with one rank (the bar
        lives on rank 0 alone, and the observables are collective)."""
        el = time.perf_counter() - self._t0
        speed = f"{self._steps_timed * self.integrator.dt * 1e-6 / (el / 86400.0):.3f} ns/day"
        if self.comm.size != 1:
            return speed
        row = observe(self, ["temperature_K", "potential_eV", "pressure_bar"])
        return f"T {row['temperature_K']:.1f} K, E {row['potential_eV']:.4f} eV, P {row['pressure_bar']:.0f} bar, {speed}"

    # --- global view, setup, checkpoint, restart ---------------------------------------------------
    def gather(self, include_reference: bool = False) -> Optional[tuple[State, Optional[torch.Tensor]]]:
        """Collective: (the global state in global-id order, with energy, forces, virial and outputs;
        the neighbor list's reference positions in the same order if ``include_reference``) on rank 0,
        None on the other ranks."""
        st = self.state
        arrays = {name: getattr(st, name) for name in ("positions", "velocities", "masses", "types", "image", "forces")}
        ref = self.verlet.ref_positions
        if include_reference and ref is not None:
            arrays["ref_positions"] = ref
        g = self.domain.gather(arrays, st.ids)
        if g is None:
            return None
        out = State(positions=g["positions"], velocities=g["velocities"], masses=g["masses"], types=g["types"],
                    cell=st.cell.detach().cpu(), pbc=st.pbc.cpu(), type_map=list(st.type_map), image=g["image"],
                    bounds=st.bounds.detach().cpu(), step=st.step, time_fs=st.time_fs, energy=st.energy,
                    forces=g["forces"], virial=st.virial, outputs=dict(st.outputs))
        return out, g.get("ref_positions")

    def gathered_state(self) -> Optional[State]:
        """Collective: the global state in global-id order on rank 0 (None on other ranks)."""
        g = self.gather()
        return None if g is None else g[0]

    def setup(self) -> None:
        """Integrator setup and the first force evaluation (idempotent)."""
        if self._ready:
            return
        self.integrator.setup(self.state, self.comm)
        self.evaluate(self.state, update_neighbors=self.verlet.nl is None)
        self._ready = True

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore state, integrator variables and neighbor list from ``path`` (:mod:`md_engine.checkpoint`)."""
        restore_checkpoint(self, path)

    def restored(self, state: State) -> None:
        """After a restore: the forces of the restored state; the run continues from its step."""
        if self.verlet.nl is not None and self.verlet.ref_positions is not None:
            note_build(self.verlet.nl, self.verlet.ref_positions, self.verlet.ref_cell)
        self.evaluate(state, update_neighbors=False)
        self._ready = True
        self._restart_step = state.step

    def save_checkpoint(self, path: str | Path) -> Path:
        return save_checkpoint(self, path)

    # --- observables -------------------------------------------------------------------------------
    def thermo(self, columns: Sequence[str] = THERMO_COLUMNS) -> dict[str, Any]:
        """Collective: the observables ``columns`` by name (:mod:`md_engine.observables`)."""
        return observe(self, list(columns))

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
                        bar.set_postfix_str(self._bar_text())
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
