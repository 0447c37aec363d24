"""``mlpot phase``: the task graph of a phase-diagram campaign, its execution by the workflow engine
(:func:`mlpot.workflows.engine.run_workflow`), the analysis and the outputs.

Tasks (names are folders under ``output_dir/tasks``)::

    <phase>/P<p>/r<r>/prep   build + NPT equilibration (+ melting for liquids, + spring constants)
    <phase>/P<p>/r<r>/ref    G(T0): Frenkel–Ladd (solids) or Uhlenbeck–Ford (liquids)    [dep: prep]
    <phase>/P<p>/r<r>/rs     reversible scaling over [t_min, t_max]                        [dep: prep]
    gdi/<a>-<b>              Gibbs–Duhem line from the first pressure (optional)           [dep: all of P0]

Outputs in ``output_dir`` (written to a temporary name, then renamed): ``results.json`` (every
number with its unit, the protocol, the finite-N convention), ``transitions.csv``, ``G_T_P<p>.png``
(G(T) per phase relative to the first liquid's, crossing marked), ``phase_diagram.png`` (P–T with
error bars), and one summary line per transition on stdout.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Optional

from mlpot.atomic_io import atomic_path
from mlpot.errors import ConfigError, MlpotError

from mlpot.workflows.phase.config import PhaseConfig

TASKS = "mlpot.workflows.phase.tasks"


def _engine() -> tuple[Any, Any, Any]:
    """(Task, Resources, run_workflow) of the workflow engine (imported on use: it loads Parsl)."""
    from mlpot.workflows.engine import Resources, Task, run_workflow

    return Task, Resources, run_workflow


def _ptag(p: float) -> str:
    return f"P{p:g}"


def check_inputs(cfg: PhaseConfig) -> None:
    """Input mistakes found before any task runs (exit 2): unknown element of a model, a lattice
    that cannot be built."""
    from mlpot.workflows.phase.tasks import build_potential, build_solid, type_map_of

    pot = build_potential(cfg.potential, cfg.device)
    for name, ph in cfg.phases.items():
        spec = cfg.phases[ph.liquid_of] if ph.is_liquid else ph
        atoms = build_solid(spec.model_dump(mode="json"))
        type_map_of(pot, atoms, f"phases.{name}")


def build_tasks(cfg: PhaseConfig) -> tuple[list[Any], dict[str, Any]]:
    """The task list and the layout the analysis needs (names per phase/pressure/replica)."""
    Task, Resources, _ = _engine()
    res = Resources(cores=1, gpus=0 if cfg.device == "cpu" else 1)
    tasks: list[Any] = []
    layout: dict[str, Any] = {"pressures": list(cfg.pressures), "replicas": cfg.replicas, "tasks": {}, "pairs": []}
    steps = cfg.steps.model_dump(mode="json")
    phase_params: dict[str, Any] = {}
    for pi, p in enumerate(cfg.pressures):
        for ni, (name, ph) in enumerate(cfg.phases.items()):
            spec = ph.model_dump(mode="json")
            solid_spec = cfg.phases[ph.liquid_of].model_dump(mode="json") if ph.is_liquid else spec
            t0, t_end = (cfg.t_max, cfg.t_min) if ph.is_liquid else (cfg.t_min, cfg.t_max)
            mode = "anisotropic" if (solid_spec.get("lattice") == "hcp" and not ph.is_liquid) else "isotropic"
            for r in range(cfg.replicas):
                base = f"{name}/{_ptag(p)}/r{r}"
                seed = cfg.seed * 1_000_003 + pi * 10_007 + ni * 101 + r * 7
                common = {"phase": name, "liquid": ph.is_liquid, "spec": spec, "solid_spec": solid_spec,
                          "potential": cfg.potential, "pressure": float(p), "t0": t0, "t_end": t_end,
                          "t_melt": cfg.melt_factor * cfg.t_max, "seed": seed, "device": cfg.device, "dt": cfg.dt,
                          "tau_t": cfg.tau_t, "tau_p": cfg.tau_p, "compressibility": cfg.compressibility,
                          "barostat_mode": mode, "pressure_tolerance": cfg.pressure_tolerance, "steps": steps,
                          "cycles": cfg.cycles, "uf": cfg.uf.model_dump(mode="json"), "n_grid": cfg.n_grid,
                          "prep": f"{base}/prep"}
                tasks.append(Task(f"{base}/prep", f"{TASKS}:prepare", {**common, "task": f"{base}/prep"}, (), res))
                tasks.append(Task(f"{base}/ref", f"{TASKS}:reference", {**common, "task": f"{base}/ref"},
                                  (f"{base}/prep",), res))
                tasks.append(Task(f"{base}/rs", f"{TASKS}:sweep", {**common, "task": f"{base}/rs"},
                                  (f"{base}/prep",), res))
                layout["tasks"].setdefault(name, {}).setdefault(str(p), []).append(
                    {"prep": f"{base}/prep", "ref": f"{base}/ref", "rs": f"{base}/rs"})
                if pi == 0 and r == 0:
                    phase_params[name] = {**common, "task": f"{base}/prep"}
    names = list(cfg.phases)
    solids = [n for n in names if not cfg.phases[n].is_liquid]
    liquids = [n for n in names if cfg.phases[n].is_liquid]
    layout["pairs"] = [[s, l] for s in solids for l in liquids] + [[a, b] for i, a in enumerate(solids) for b in solids[i + 1:]]
    if cfg.gibbs_duhem is not None and layout["pairs"]:
        a, b = layout["pairs"][0]
        p0 = cfg.pressures[0]
        anchor = {n: layout["tasks"][n][str(p0)][0] for n in (a, b)}
        deps = tuple(sorted({v for n in (a, b) for v in anchor[n].values()}))
        tasks.append(Task(f"gdi/{a}-{b}", f"{TASKS}:gibbs_duhem",
                          {"task": f"gdi/{a}-{b}", "pair": [a, b], "anchor": anchor, "p0": float(p0),
                           "pressures": list(cfg.gibbs_duhem.pressures), "steps": cfg.gibbs_duhem.steps,
                           "potential": cfg.potential, "device": cfg.device, "phase_params": phase_params,
                           "pressure_tolerance": cfg.pressure_tolerance}, deps, res))
        layout["gdi"] = f"gdi/{a}-{b}"
    return tasks, layout


def status_text(layout: dict[str, Any]) -> Callable[[dict[str, dict]], str]:
    """The progress bar's text: the current T_coex of the first pair at the first pressure."""
    from mlpot.workflows.phase.analysis import pair_crossings

    def status(results: dict[str, dict]) -> str:
        if not layout["pairs"]:
            return ""
        a, b = layout["pairs"][0]
        p = str(layout["pressures"][0])
        ta, tb = layout["tasks"][a][p][0], layout["tasks"][b][p][0]
        if all(k in results for k in (ta["ref"], ta["rs"], tb["ref"], tb["rs"])):
            c = pair_crossings(results, ta, tb)
            if c is not None:
                return f"T({a}/{b}, {float(p):g} bar) ≈ {c['T']:.1f} K"
        return ""

    return status


def run_phase(cfg: PhaseConfig, progress: bool = True, max_workers: Optional[int] = None,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole campaign (module docstring); returns the results dict written to results.json."""
    from mlpot.workflows.phase.analysis import analyse, curves

    check_inputs(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks, layout = build_tasks(cfg)
    _, _, run_workflow = _engine()
    wf = run_workflow(tasks, out / "tasks", cfg.cluster, progress=progress, status=status_text(layout),
                      max_workers=max_workers)
    results = dict(wf.results)
    summary = analyse(results, layout)
    data = {
        "units": {"T": "K", "P": "bar", "G": "eV/atom", "H": "eV/atom", "V": "A^3/atom", "S": "eV/K/atom",
                  "dTdP": "K/bar"},
        "convention": "classical nuclei; exact finite-N reference terms (Einstein COM correction with +kT ln N, "
                      "ideal gas with ln N!); G = F + P<V> at the NPT mean volume",
        "protocol": json.loads(cfg.model_dump_json(exclude={"cluster"})),
        "transitions": summary["transitions"],
        "G_T": curves(results, layout),
        "failed": dict(wf.failed),
        "reused": sorted(getattr(wf, "reused", set())),
    }
    if layout.get("gdi") and layout["gdi"] in results:
        data["gibbs_duhem"] = results[layout["gdi"]]
    _write_json(out / "results.json", data)
    _write_csv(out / "transitions.csv", summary["transitions"])
    try:
        from mlpot.workflows.phase.plots import plot_diagram, plot_g_t

        plot_g_t(data, out)
        plot_diagram(data, out)
    except ImportError as exc:  # matplotlib missing: the numbers are written anyway
        echo(f"(no plots: {exc})")
    for e in summary["transitions"]:
        echo(summary_line(e))
    if wf.failed:
        lines = "; ".join(f"{k}: {v}" for k, v in sorted(wf.failed.items()))
        raise MlpotError(f"{len(wf.failed)} task(s) failed (finished tasks are kept in {out / 'tasks'} and reused "
                         f"on the next run): {lines}")
    return data


def summary_line(e: dict[str, Any]) -> str:
    a, b = e["pair"]
    p = e["pressure_bar"]
    if "T_coex" not in e:
        return f"{a} / {b} at {p:g} bar: no crossing in [t_min, t_max]"
    s = (f"{a} / {b} at {p:g} bar: T = {e['T_coex']:.1f} ± {e['T_error']:.1f} K, ΔH = {e['delta_H'] * 1e3:.1f} meV/atom "
         f"(⟨H⟩: {e['delta_H_direct'] * 1e3:.1f}), ΔV = {e['delta_V']:.3f} Å³/atom, "
         f"dT/dP (Clausius–Clapeyron) = {e['dTdP_clausius_clapeyron'] * 1e3:.3f} K/kbar")
    if "dTdP_finite_difference" in e:
        s += f", from the P grid {e['dTdP_finite_difference'] * 1e3:.3f} ± {e['dTdP_finite_difference_error'] * 1e3:.3f} K/kbar"
    return s


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, default=float))


def _write_csv(path: Path, transitions: list[dict[str, Any]]) -> None:
    cols = [("phase_a", None), ("phase_b", None), ("pressure_bar", "pressure_bar"), ("T_coex_K", "T_coex"),
            ("T_error_K", "T_error"), ("T_sem_K", "T_sem"), ("dissipation_bound_K", "hysteresis"),
            ("delta_H_eV_per_atom", "delta_H"), ("delta_H_direct_eV_per_atom", "delta_H_direct"),
            ("delta_V_A3_per_atom", "delta_V"), ("dTdP_CC_K_per_bar", "dTdP_clausius_clapeyron"),
            ("dTdP_FD_K_per_bar", "dTdP_finite_difference")]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([c for c, _ in cols])
    for e in transitions:
        w.writerow([e["pair"][0], e["pair"][1]] + [e.get(k, "") for _, k in cols[2:]])
    with atomic_path(path) as tmp:
        Path(tmp).write_text(buf.getvalue())


__all__ = ["run_phase", "build_tasks", "check_inputs", "summary_line"]
