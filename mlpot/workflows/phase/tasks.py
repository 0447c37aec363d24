"""The task functions of ``mlpot phase``: one per stage of one (phase × pressure × replica), each
``func(params: dict, workdir: Path, deps: dict[str, dict]) -> dict`` (JSON in, JSON out), run by the
workflow engine in its own process with cwd = ``workdir``.

* :func:`prepare` — build the phase (solid from the lattice or a file; liquid: melt the solid at
  ``melt_factor × t_max``, checked to have melted), NPT-equilibrate at (T0, P) (pressure convergence
  checked), spring constants from the MSD (solids), the Bragg vector of the crystal.
* :func:`reference` — G(T0)/N: Frenkel–Ladd (solids) or Uhlenbeck–Ford (liquids).
* :func:`sweep` — reversible scaling T0 → the other end of [t_min, t_max] at P with G(T0) = 0; the
  analysis adds G(T0)·T/T0 (the RS curve is linear in G(T0)), so reference and sweep run in parallel.
* :func:`gibbs_duhem` — trace the coexistence line from the first pressure's crossing.

Restart: every stage journals its finished legs and the MD checkpoint in ``workdir`` (protocols'
:class:`~md_engine.free_energy.protocols.Journal`), so a killed task continues at its last finished
leg. A physics failure (melted, froze, pressure not converging, non-finite spring constant) raises
:class:`~mlpot.errors.MlpotError` naming the task, the state point and what to change.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from mlpot.errors import ConfigError, MlpotError, SimulationError


# ------------------------------------------------------------------------------------------ helpers
def build_potential(section: Mapping[str, Any], device: str = "cpu") -> Any:
    """The md_engine potential of a validated ``potential`` dict (``type`` + its keys)."""
    import torch
    from md_engine.potentials import POTENTIALS

    entry = POTENTIALS.get(section["type"], "potential.type")
    return entry.obj.from_config(entry.config.model_validate(dict(section)), torch.device(device))


def build_solid(spec: Mapping[str, Any]) -> Any:
    """``ase.Atoms`` of a solid phase spec (lattice + a [+ c] + element, repeated; or a file)."""
    from ase.build import bulk

    if spec.get("structure"):
        from md_engine.structure import read_structure

        at = read_structure(spec["structure"])
    else:
        lat, a, el = spec["lattice"], float(spec["a"]), spec["element"]
        try:
            if lat == "hcp":
                at = bulk(el, "hcp", a=a, c=spec.get("c") or a * math.sqrt(8 / 3), orthorhombic=True)
            else:
                at = bulk(el, lat, a=a, cubic=True)
        except Exception as exc:
            raise ConfigError(f"phase lattice {lat!r} with element {el}: cannot build it ({exc})") from exc
    return at.repeat(tuple(spec.get("repeat") or (1, 1, 1)))


def type_map_of(potential: Any, atoms: Any, where: str) -> list[str]:
    """The potential's type_map (a model's) checked against the elements, else the sorted elements."""
    elems = sorted(set(atoms.get_chemical_symbols()))
    tm = getattr(potential, "type_map", None)
    if tm is None:
        return elems
    missing = [e for e in elems if e not in tm]
    if missing:
        raise ConfigError(f"{where}: elements {missing} are not in the potential's type_map {list(tm)}; use a "
                          "model trained on them (or list them in the potential's type_map) or change the phase's element")
    return list(tm)


def _state(atoms: Any, potential: Any, temperature: float, seed: int, device: str, where: str) -> Any:
    from md_engine.state import State

    return State.from_atoms(atoms, type_map=type_map_of(potential, atoms, where), device=device,
                            temperature=temperature, seed=seed)


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy/torch scalars and arrays turned into plain Python (the engine writes JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def _fail(where: str, exc: Exception, hint: str = "") -> MlpotError:
    return MlpotError(f"{where}: {exc}" + (f"; {hint}" if hint else ""))


def _where(params: Mapping[str, Any]) -> str:
    return f"task {params['task']} ({params['phase']}, T0 = {params['t0']:g} K, P = {params['pressure']:g} bar)"


def _engine_kw(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"dt": params["dt"], "tau": params["tau_t"]}


def _npt_kw(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"tau_p": params["tau_p"], "compressibility": params["compressibility"],
            "barostat_mode": params.get("barostat_mode", "isotropic")}


def _save_atoms(path: Path, state: Any) -> None:
    from ase.io import write

    from mlpot.atomic_io import atomic_path

    with atomic_path(path) as tmp:
        write(str(tmp), state.to_atoms(), format="extxyz")


def _prepared_state(params: Mapping[str, Any], prep: Mapping[str, Any], potential: Any, seed: int) -> Any:
    """The starting state of a stage: the solid's ideal sites in the mean box, or the equilibrated liquid."""
    import torch
    from ase.io import read

    from md_engine.free_energy.protocols import scale_to_cell

    where = _where(params)
    if params["liquid"]:
        atoms = read(prep["structure_file"], format="extxyz")
        st = _state(atoms, potential, params["t0"], seed, params["device"], where)
        return st
    st = _state(build_solid(params["spec"]), potential, params["t0"], seed, params["device"], where)
    return scale_to_cell(st, torch.tensor(prep["cell"], dtype=st.dtype))


# ------------------------------------------------------------------------------------------- stages
def prepare(params: dict[str, Any], workdir: Path, deps: dict[str, dict]) -> dict[str, Any]:
    """Stage 1 of a phase at one pressure (module docstring)."""
    import torch

    from md_engine.free_energy.protocols import (LIQUID_ORDER, SOLID_ORDER, Journal, bragg_order, bragg_vector,
                                                 equilibrate_npt, scale_to_cell, spring_constants, _sim)

    workdir = Path(workdir)
    where = _where(params)
    pot = build_potential(params["potential"], params["device"])
    solid_spec = params["spec"] if not params["liquid"] else params["solid_spec"]
    atoms = build_solid(solid_spec)
    seed = int(params["seed"])
    ideal = _state(atoms, pot, params["t0"], seed, params["device"], where)
    hkl = bragg_vector(ideal)
    journal = Journal(workdir)
    start = ideal
    try:
        if params["liquid"]:
            melt_file = workdir / "melted.extxyz"
            if not melt_file.exists():
                t_melt = params["t_melt"]
                # NPT at (t_melt, P): the box expands and the crystal melts quickly (no superheating at the
                # solid's density)
                npt = {k: v for k, v in _npt_kw(params).items()}
                sim, _ = _sim(ideal, pot, t_melt, seed=seed + 11, pressure_bar=params["pressure"], **_engine_kw(params),
                              **npt)
                sim.run(params["steps"]["melt"])
                q = bragg_order(sim.state, hkl)
                if q > LIQUID_ORDER:
                    raise MlpotError(f"{where}: the solid did not melt at {t_melt:g} K in {params['steps']['melt']} "
                                     f"steps (Bragg order {q:.3f} > {LIQUID_ORDER}); raise melt_factor or steps.melt")
                _save_atoms(melt_file, sim.state)
            from ase.io import read

            start = _state(read(melt_file, format="extxyz"), pot, params["t0"], seed, params["device"], where)
        if not journal.done("npt"):
            eq = equilibrate_npt(start, pot, params["t0"], params["pressure"], params["steps"]["equilibration"],
                                 seed=seed + 13, tolerance_bar=params["pressure_tolerance"], where=where,
                                 **_engine_kw(params), **_npt_kw(params))
            st = eq.pop("state")
            q = bragg_order(st, hkl)
            if params["liquid"] and q > LIQUID_ORDER:
                raise MlpotError(f"{where}: the liquid froze during NPT equilibration (Bragg order {q:.3f}); "
                                 "raise t_max (the liquid's T0)")
            if not params["liquid"] and q < SOLID_ORDER:
                raise MlpotError(f"{where}: the solid melted during NPT equilibration (Bragg order {q:.3f}); "
                                 "lower t_min (the solid's T0) or check the lattice constant")
            eq["bragg_order"] = q
            if params["liquid"]:
                _save_atoms(workdir / "liquid.extxyz", st)
                eq["structure_file"] = str((workdir / "liquid.extxyz").resolve())
            journal.record("npt", eq)
        out = dict(journal.data["npt"])
        if not params["liquid"]:
            if not journal.done("springs"):
                sites = scale_to_cell(ideal, torch.tensor(out["cell"], dtype=ideal.dtype))
                journal.record("springs", spring_constants(sites, pot, params["t0"], params["steps"]["spring"],
                                                           seed=seed + 17, where=where, **_engine_kw(params)))
            out.update(journal.data["springs"])
    except SimulationError as exc:
        raise _fail(where, exc) from exc
    out.update({"hkl": hkl.tolist(), "n_atoms": len(atoms), "phase": params["phase"], "liquid": params["liquid"]})
    return jsonable(out)


def reference(params: dict[str, Any], workdir: Path, deps: dict[str, dict]) -> dict[str, Any]:
    """Stage 2: G(T0)/N by Frenkel–Ladd (solid) or Uhlenbeck–Ford (liquid), ``cycles`` cycles."""
    import torch

    from md_engine.free_energy.protocols import frenkel_ladd, uf_liquid

    where = _where(params)
    prep = deps[params["prep"]]
    pot = build_potential(params["potential"], params["device"])
    st = _prepared_state(params, prep, pot, int(params["seed"]))
    s = params["steps"]
    try:
        if params["liquid"]:
            r = uf_liquid(st, pot, params["t0"], s["reference_eq"], s["switching"], params["cycles"],
                          p=params["uf"]["p"], x=params["uf"]["x"], seed=int(params["seed"]) + 23,
                          pressure_bar=params["pressure"], workdir=Path(workdir), where=where,
                          hkl=torch.tensor(prep["hkl"]), **_engine_kw(params))
        else:
            r = frenkel_ladd(st, pot, params["t0"], prep["k"], s["reference_eq"], s["switching"], params["cycles"],
                             seed=int(params["seed"]) + 23, pressure_bar=params["pressure"], workdir=Path(workdir),
                             where=where, **_engine_kw(params))
    except SimulationError as exc:
        raise _fail(where, exc) from exc
    r["method"] = "uhlenbeck-ford" if params["liquid"] else "frenkel-ladd"
    return jsonable(r)


def sweep(params: dict[str, Any], workdir: Path, deps: dict[str, dict]) -> dict[str, Any]:
    """Stage 3: reversible scaling from T0 to ``t_end`` at P with G(T0) = 0 (module docstring)."""
    import torch

    from md_engine.free_energy.protocols import reversible_scaling

    where = _where(params)
    prep = deps[params["prep"]]
    pot = build_potential(params["potential"], params["device"])
    st = _prepared_state(params, prep, pot, int(params["seed"]) + 1)
    s = params["steps"]
    try:
        r = reversible_scaling(st, pot, params["t0"], params["t_end"], s["sweep_eq"], s["sweep"], 0.0,
                               pressure_bar=params["pressure"], n_cycles=params["cycles"],
                               seed=int(params["seed"]) + 29, n_grid=params["n_grid"], workdir=Path(workdir),
                               phase="liquid" if params["liquid"] else "solid", hkl=torch.tensor(prep["hkl"]),
                               where=where, **_engine_kw(params), **_npt_kw(params))
    except SimulationError as exc:
        raise _fail(where, exc) from exc
    return jsonable(r)


def gibbs_duhem(params: dict[str, Any], workdir: Path, deps: dict[str, dict]) -> dict[str, Any]:
    """Trace T_coex(P) of the pair ``params['pair']`` from the anchor crossing at the first pressure
    (computed from its deps) to ``params['pressures']`` (Gibbs–Duhem, predictor–corrector; two NPT
    runs per right-hand side, journalled in ``workdir``)."""
    from md_engine.free_energy.coexistence import gibbs_duhem as trace
    from md_engine.free_energy.protocols import Journal, equilibrate_npt

    from mlpot.workflows.phase.analysis import pair_crossings

    a, b = params["pair"]
    cr = pair_crossings(deps, params["anchor"][a], params["anchor"][b])
    if cr is None:
        raise MlpotError(f"task {params['task']}: the phases {a} and {b} do not cross in [t_min, t_max] at "
                         f"P = {params['p0']:g} bar: no anchor for Gibbs–Duhem; widen the temperature range")
    pot = build_potential(params["potential"], params["device"])
    journal = Journal(Path(workdir))
    states = {}
    for name in (a, b):
        ph = params["phase_params"][name]
        states[name] = _prepared_state(ph, deps[ph["prep"]], pot, int(ph["seed"]))

    def rhs(t: float, p: float) -> tuple[float, float]:
        key = f"{t:.6f}_{p:.6f}"
        if not journal.done(key):
            res = {}
            for name in (a, b):
                ph = params["phase_params"][name]
                eq = equilibrate_npt(states[name], pot, t, p, params["steps"], seed=int(ph["seed"]) + 31,
                                     where=f"task {params['task']} ({name}, T = {t:.1f} K, P = {p:g} bar)",
                                     tolerance_bar=params["pressure_tolerance"], **_engine_kw(ph), **_npt_kw(ph))
                res[name] = {"h": eq["enthalpy_per_atom"], "v": eq["volume_per_atom"]}
            journal.record(key, res)
        r = journal.data[key]
        return r[a]["h"] - r[b]["h"], r[a]["v"] - r[b]["v"]

    try:
        line = trace(cr["T"], params["p0"], params["pressures"], rhs)
    except SimulationError as exc:
        raise _fail(f"task {params['task']}", exc) from exc
    return jsonable({"pair": [a, b], "line": line})


__all__ = ["prepare", "reference", "sweep", "gibbs_duhem", "build_potential", "build_solid"]
