"""Outputs: thermo log (printed + CSV, columns = observables by name), trajectories (extxyz, H5MD),
periodic checkpoints (:mod:`md_engine.checkpoint`).

Every reporter has ``interval`` (steps), ``open(sim, restart_step)``, ``report(sim)`` and ``close()``;
files are flushed after each record so that a crash loses at most one interval. On a restart
(``restart_step`` not None) existing files are kept and records after the restart step are dropped,
so the outputs continue exactly where the checkpoint left them.

H5MD layout (https://www.nongnu.org/h5md/): ``/h5md`` (version, author, creator),
``/particles/all/{position,velocity}/{value,step,time}``, ``/particles/all/box`` (attrs dimension,
boundary) with ``edges/{value,step,time}`` (3×3 cell per frame), ``/particles/all/species`` (N,)
type indices (attr ``type_map``), ``/observables/<name>/{value,step,time}``. Time in ps.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, TextIO

from mlpot.atomic_io import atomic_path

from md_engine.observables import THERMO_COLUMNS, observable

if TYPE_CHECKING:
    from md_engine.simulation import Simulation


class Reporter:
    interval: int = 1

    def open(self, sim: "Simulation", restart_step: Optional[int] = None) -> None:  # noqa: D401
        pass

    def report(self, sim: "Simulation") -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------
# thermo


class ThermoReporter(Reporter):
    """Thermo lines every ``interval`` steps: printed (to ``stream``, None: silent) and appended to a CSV.

    ``columns``: observable names (:data:`md_engine.observables.OBSERVABLES`, or any scalar output of
    the potential, e.g. ``"dU_dlambda"``); default :data:`md_engine.observables.THERMO_COLUMNS`."""

    def __init__(self, path: Optional[str | Path], interval: int = 10, stream: Optional[TextIO] = sys.stdout,
                 columns: Optional[Sequence[str]] = None) -> None:
        self.path = Path(path) if path else None
        self.interval = int(interval)
        self.stream = stream
        self.columns = list(columns) if columns is not None else list(THERMO_COLUMNS)
        if self.columns[:1] != ["step"]:
            self.columns.insert(0, "step")
        self._fh: Optional[TextIO] = None
        self._writer: Any = None
        self._printed_header = False
        self.rows: list[dict[str, float]] = []

    def open(self, sim: "Simulation", restart_step: Optional[int] = None) -> None:
        for name in self.columns:  # unknown names fail now, on every rank alike
            observable(name, sim.state)
        if self.path is None or sim.comm.rank != 0:  # MPI: rank 0 writes
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if restart_step is not None and self.path.exists():
            _truncate_csv(self.path, restart_step, self.columns)
            self._fh = open(self.path, "a", newline="")
            self._writer = csv.writer(self._fh)
        else:
            self._fh = open(self.path, "w", newline="")
            self._writer = csv.writer(self._fh)
            self._writer.writerow(self.columns)
            self._fh.flush()

    def report(self, sim: "Simulation") -> None:
        row = sim.thermo(self.columns)  # collective: all ranks
        if sim.comm.rank != 0:
            return
        self.rows.append(row)
        if self._writer is not None and self._fh is not None:
            self._writer.writerow([int(row["step"])] + [f"{row[c]:.10g}" for c in self.columns[1:]])
            self._fh.flush()
        if self.stream is not None:
            obs = [observable(c, sim.state) for c in self.columns]
            if not self._printed_header:
                widths = [int(o.fmt.split(".")[0].rstrip("dfgse") or 0) for o in obs]
                self.stream.write(" ".join(f"{o.header:>{w}}" for o, w in zip(obs, widths)) + "\n")
                self._printed_header = True
            self.stream.write(" ".join(format(int(row[o.name]) if o.fmt.endswith("d") else row[o.name], o.fmt)
                                       for o in obs) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _truncate_csv(path: Path, step: int, columns: Sequence[str] = THERMO_COLUMNS) -> None:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step] if rows else [list(columns)]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows(keep)


def read_thermo(path: str | Path) -> dict[str, list[float]]:
    """The thermo CSV as columns."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return {name: [float(r[k]) for r in rows[1:]] for k, name in enumerate(rows[0])}


#: g/cm³ per (amu/Å³)
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def summarize_thermo(thermo: dict[str, list[float]], total_mass_amu: float, n_atoms: int,
                     skip_fraction: float = 0.2) -> Optional[dict[str, float]]:
    """Run averages of a thermo log (:func:`read_thermo` columns) after discarding the first
    ``skip_fraction`` of its time as equilibration.

    Returns ``t_from_ps``, ``t_to_ps``, ``rows``, ``T_mean_K``, ``T_std_K``, ``P_mean_bar``,
    ``P_std_bar``, ``density_g_cm3`` (mean of mass/volume), ``drift_eV_atom_ps`` (least-squares slope
    of the conserved energy per atom over the whole log, eV/atom/ps); None with fewer than 3 rows.
    """
    import numpy as np

    t = np.asarray(thermo.get("time_ps", []), dtype=float)
    if t.size < 3:
        return None
    keep = t >= t[0] + skip_fraction * (t[-1] - t[0])
    temp = np.asarray(thermo["temperature_K"])[keep]
    pres = np.asarray(thermo["pressure_bar"])[keep]
    vol = np.asarray(thermo["volume_A3"])[keep]
    cons = np.asarray(thermo["conserved_eV"], dtype=float) / max(n_atoms, 1)
    drift = float(np.polyfit(t, cons, 1)[0]) if t[-1] > t[0] else 0.0
    return {
        "t_from_ps": float(t[keep][0]), "t_to_ps": float(t[-1]), "rows": int(keep.sum()),
        "T_mean_K": float(temp.mean()), "T_std_K": float(temp.std()),
        "P_mean_bar": float(pres.mean()), "P_std_bar": float(pres.std()),
        "density_g_cm3": float(np.mean(total_mass_amu / vol) * AMU_PER_A3_TO_G_PER_CM3),
        "drift_eV_atom_ps": drift,
    }


def format_summary(s: dict[str, float]) -> str:
    """One line for :func:`summarize_thermo`'s averages (units: K, bar, g/cm³, eV/atom/ps)."""
    return (
        f"averages over {s['t_from_ps']:.3g}-{s['t_to_ps']:.3g} ps ({s['rows']} thermo rows): "
        f"T = {s['T_mean_K']:.1f} ± {s['T_std_K']:.1f} K, P = {s['P_mean_bar']:.4g} ± {s['P_std_bar']:.2g} bar, "
        f"density {s['density_g_cm3']:.4f} g/cm³; conserved-energy drift {s['drift_eV_atom_ps']:.2e} eV/atom/ps"
    )


# ---------------------------------------------------------------------------------------------------
# trajectories


class ExtxyzReporter(Reporter):
    """Frames appended to an extended-XYZ file (positions Å, velocities in ASE units, energy, step)."""

    def __init__(self, path: str | Path, interval: int = 100, velocities: bool = False) -> None:
        self.path = Path(path)
        self.interval = int(interval)
        self.velocities = velocities
        self._fh: Optional[TextIO] = None

    def open(self, sim: "Simulation", restart_step: Optional[int] = None) -> None:
        if sim.comm.rank != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if restart_step is not None and self.path.exists():
            _truncate_extxyz(self.path, restart_step)
            self._fh = open(self.path, "a")
        else:
            self._fh = open(self.path, "w")

    def report(self, sim: "Simulation") -> None:
        import ase.io
        from ase.calculators.singlepoint import SinglePointCalculator

        st = sim.gathered_state()  # collective; global arrays on rank 0
        if st is None:
            return
        atoms = st.to_atoms()
        if not self.velocities:
            atoms.arrays.pop("momenta", None)
        atoms.calc = SinglePointCalculator(atoms, energy=float(st.energy), forces=st.forces.detach().cpu().numpy())
        atoms.info["step"] = st.step
        atoms.info["time_ps"] = st.time_fs / 1000.0
        ase.io.write(self._fh, atoms, format="extxyz", parallel=False)  # rank 0 only: no ASE MPI collectives
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _truncate_extxyz(path: Path, step: int) -> None:
    """Drop frames whose ``step=`` is larger than ``step`` (frame headers only are parsed)."""
    import re

    lines = path.read_text().splitlines(keepends=True)
    out: list[str] = []
    k = 0
    pat = re.compile(r"\bstep=(\d+)")
    while k < len(lines):
        n = int(lines[k].strip())
        m = pat.search(lines[k + 1])
        if m is not None and int(m.group(1)) > step:
            break
        out.extend(lines[k : k + 2 + n])
        k += 2 + n
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(out))


class H5MDReporter(Reporter):
    """Frames appended to an HDF5 file in the H5MD layout (module docstring); flushed each record."""

    OBSERVABLES = ("potential_energy", "kinetic_energy", "total_energy", "conserved_energy", "temperature",
                   "pressure", "volume")

    def __init__(self, path: str | Path, interval: int = 100, velocities: bool = True, forces: bool = False) -> None:
        self.path = Path(path)
        self.interval = int(interval)
        self.velocities = velocities
        self.forces = forces
        self._f: Any = None

    def open(self, sim: "Simulation", restart_step: Optional[int] = None) -> None:
        import h5py

        st = sim.gathered_state()  # collective (global species)
        if st is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if restart_step is not None and self.path.exists():
            self._f = h5py.File(self.path, "a")
            _truncate_h5md(self._f, restart_step)
            return
        f = self._f = h5py.File(self.path, "w")
        h = f.create_group("h5md")
        h.attrs["version"] = [1, 1]
        h.create_group("author").attrs["name"] = os.environ.get("USER", "mlpot")
        c = h.create_group("creator")
        c.attrs["name"] = "mlpot md_engine"
        from md_engine import __version__

        c.attrs["version"] = __version__
        part = f.create_group("particles/all")
        n = st.n_atoms
        sp = part.create_dataset("species", data=st.types.cpu().numpy().astype("int32"))
        sp.attrs["type_map"] = list(st.type_map)
        box = part.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = ["periodic" if p else "none" for p in st.pbc.tolist()]
        self._element(box, "edges", (3, 3), "angstrom")
        self._element(part, "position", (n, 3), "angstrom")
        if self.velocities:
            self._element(part, "velocity", (n, 3), "angstrom fs-1")
        if self.forces:
            self._element(part, "force", (n, 3), "eV angstrom-1")
        for name in self.OBSERVABLES:
            self._element(f.require_group("observables"), name, (), _OBS_UNITS[name])
        f.flush()

    @staticmethod
    def _element(group: Any, name: str, shape: tuple[int, ...], unit: str) -> None:
        g = group.create_group(name)
        v = g.create_dataset("value", shape=(0, *shape), maxshape=(None, *shape), dtype="f8",
                             chunks=(1, *shape) if shape else (256,))
        v.attrs["unit"] = unit
        g.create_dataset("step", shape=(0,), maxshape=(None,), dtype="i8", chunks=(256,))
        t = g.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(256,))
        t.attrs["unit"] = "ps"

    @staticmethod
    def _append(g: Any, value: Any, step: int, time_ps: float) -> None:
        k = g["step"].shape[0]
        for name in ("value", "step", "time"):
            g[name].resize(k + 1, axis=0)
        g["value"][k] = value
        g["step"][k] = step
        g["time"][k] = time_ps

    def report(self, sim: "Simulation") -> None:
        st = sim.gathered_state()  # collective
        row = sim.thermo(list(_H5MD_COLUMNS.values()))  # collective
        if st is None:
            return
        t = st.time_fs / 1000.0
        part = self._f["particles/all"]
        self._append(part["box/edges"], st.cell.detach().cpu().numpy(), st.step, t)
        self._append(part["position"], st.positions.detach().cpu().numpy(), st.step, t)
        if self.velocities:
            self._append(part["velocity"], st.velocities.detach().cpu().numpy(), st.step, t)
        if self.forces:
            self._append(part["force"], st.forces.detach().cpu().numpy(), st.step, t)
        for name, col in _H5MD_COLUMNS.items():
            self._append(self._f["observables"][name], row[col], st.step, t)
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


#: H5MD observable name → thermo observable
_H5MD_COLUMNS = {"potential_energy": "potential_eV", "kinetic_energy": "kinetic_eV", "total_energy": "total_eV",
                 "conserved_energy": "conserved_eV", "temperature": "temperature_K", "pressure": "pressure_bar",
                 "volume": "volume_A3"}
_OBS_UNITS = {"potential_energy": "eV", "kinetic_energy": "eV", "total_energy": "eV", "conserved_energy": "eV",
              "temperature": "K", "pressure": "bar", "volume": "angstrom3"}


def _truncate_h5md(f: Any, step: int) -> None:
    def visit(name: str, obj: Any) -> None:
        import h5py

        if isinstance(obj, h5py.Group) and "step" in obj and "value" in obj:
            steps = obj["step"][()]
            keep = int((steps <= step).sum())
            for ds in ("value", "step", "time"):
                obj[ds].resize(keep, axis=0)

    f.visititems(visit)


def read_h5md(path: str | Path) -> dict[str, Any]:
    """positions (T, N, 3), cells (T, 3, 3), steps (T,), time_ps (T,), species (N,), type_map, observables."""
    import h5py

    with h5py.File(path, "r") as f:
        part = f["particles/all"]
        out = {
            "positions": part["position/value"][()], "steps": part["position/step"][()],
            "time_ps": part["position/time"][()], "cells": part["box/edges/value"][()],
            "species": part["species"][()], "type_map": [str(s) for s in part["species"].attrs["type_map"]],
            "observables": {k: f["observables"][k]["value"][()] for k in f["observables"]},
        }
        if "velocity" in part:
            out["velocities"] = part["velocity/value"][()]
    return out


# ---------------------------------------------------------------------------------------------------
# checkpoints


class CheckpointReporter(Reporter):
    """Full restart state every ``interval`` steps, written atomically to ``path`` (:mod:`md_engine.checkpoint`)."""

    def __init__(self, path: str | Path, interval: int = 1000) -> None:
        self.path = Path(path)
        self.interval = int(interval)

    def report(self, sim: "Simulation") -> None:
        from md_engine.checkpoint import save_checkpoint

        save_checkpoint(sim, self.path)


__all__ = ["Reporter", "ThermoReporter", "ExtxyzReporter", "H5MDReporter", "CheckpointReporter", "read_thermo",
           "read_h5md"]
