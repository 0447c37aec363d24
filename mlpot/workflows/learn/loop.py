"""``mlpot learn``: the driver of the concurrent-learning loop (one :class:`WorkflowSession` for the
whole campaign; every step a task of the workflow engine, so a re-run reuses every finished task and
continues from the last finished step of the last iteration).

Layout of ``output_dir``::

    data.h5                     the campaign's HDF5 dataset: init.NNN (the initial data) and
                                itNNN.RRR (the labels of iteration NNN from exploration run RRR; the
                                system's ``source`` attribute is its provenance, JSON: iteration,
                                stage, structure, ensemble, T, P, MD steps and ε_F,max of its frames)
    tasks/iter.NNN/train.K      member K (train/model.pt, lcurve.out, checkpoints)
    tasks/iter.NNN/explore.RRR  MD run RRR (traj.extxyz, model_devi.out)
    tasks/iter.NNN/select       classification + picks (candidates.extxyz)
    tasks/iter.NNN/label.CCC    the labeller on some candidates
    results.json, iterations.csv, accurate_fraction.png, deviation_hist.png     (report.py)
    models/model.K.pt           the last iteration's members

One iteration, two rounds of the session: (train.K → explore.RRR → select), then the label tasks
(their number is the number of picks). Then the driver appends the labelled frames to ``data.h5``
(skipped when a re-run finds them there) and writes the record of the iteration.

Stage schedule: the iteration explores the current stage; it moves to the next one when the
stage's accurate fraction reaches ``accurate_target`` or after the stage's ``max_iterations``; the
loop ends when the last stage reaches the target (converged), after the last stage's
``max_iterations`` or after ``max_iterations`` in all (not converged: said so in results.json and
on stdout).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from mlpot.atomic_io import atomic_path
from mlpot.errors import ConfigError, MlpotError
from mlpot.workflows.learn.config import LearnConfig

TASKS = "mlpot.workflows.learn.tasks"
#: bump when a code change must rerun the tasks of a campaign (part of every task's params)
VERSION = 1
DATA_FILE = "data.h5"


def _iter(i: int) -> str:
    return f"iter.{i:03d}"


# ------------------------------------------------------------------------------------------ inputs
def training_tree(cfg: LearnConfig) -> tuple[dict[str, Any], str]:
    """The training input as a mapping and the folder its relative paths resolve against."""
    from mlpot.config.base import read_tree

    if isinstance(cfg.training, str):
        return read_tree(cfg.training), str(Path(cfg.training).resolve().parent)
    return json.loads(json.dumps(cfg.training)), str(Path(cfg.output_dir).resolve().parent)


def _elements_problem(symbols: set[str], type_map: list[str], where: str) -> Optional[str]:
    missing = sorted(symbols - set(type_map))
    if missing:
        return f"{where}: elements {missing} are not in the type_map {type_map}"
    return None


def check_inputs(cfg: LearnConfig) -> dict[str, Any]:
    """Every input mistake found before any task runs (one :class:`ConfigError`, exit 2): the
    training input (validated with the initial data in place of its data), the type_map, elements
    of the initial data and of the exploration structures outside it, and (``labeller.check_on_start``)
    a labeller that fails or gives no forces on the first initial frame. Returns
    ``{"type_map", "training", "base_dir"}``."""
    from mlpot.config import load_config
    from mlpot.data.io import load_systems
    from mlpot.workflows.learn.tasks import member_config, read_structure

    tree, base_dir = training_tree(cfg)
    where = cfg.training if isinstance(cfg.training, str) else "training"
    try:
        tcfg = load_config(member_config(tree, list(cfg.init_data), 1, None), base_dir=base_dir)
        if cfg.fine_tune is not None:
            load_config(member_config(tree, list(cfg.init_data), 1, cfg.fine_tune.numb_steps,
                                      cfg.fine_tune.overrides()), base_dir=base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    from mlpot.config import parse_auto_sel

    if parse_auto_sel(getattr(tcfg.model.descriptor, "sel", None)) is not None:
        import sys

        print(f"mlpot learn: note: {where}: model.descriptor.sel 'auto' is resolved from the initial data only; "
              "explored configurations may hold more neighbours (the run then stops at that frame, its error in "
              "results.json): an explicit sel with a margin is safer", file=sys.stderr)
    type_map = list(tcfg.model.type_map)
    if cfg.type_map is not None and list(cfg.type_map) != type_map:
        raise ConfigError(f"type_map {list(cfg.type_map)}: expected the training input's model.type_map {type_map}")
    problems = []
    systems = []
    for k, path in enumerate(cfg.init_data):
        try:
            found = load_systems([path])
        except MlpotError as exc:
            raise ConfigError(f"init_data[{k}]: {exc}") from None
        p = _elements_problem({e for s in found for e in s.symbols}, type_map, f"init_data[{k}] ({path})")
        if p:
            problems.append(p)
        unlabelled = [s.source for s in found if s.energies is None or s.forces is None]
        if unlabelled:
            problems.append(f"init_data[{k}] ({path}): expected energies and forces, found none in {unlabelled[0]}")
        systems += found
    for si, st in enumerate(cfg.stages):
        for k, path in enumerate(st.structures):
            try:
                atoms = read_structure(path)
            except MlpotError as exc:
                raise ConfigError(f"stages[{si}].structures[{k}]: {exc}") from None
            p = _elements_problem(set(atoms.get_chemical_symbols()), type_map, f"stages[{si}].structures[{k}] ({path})")
            if p:
                problems.append(p)
            if st.ensemble == "npt" and not all(atoms.pbc):
                problems.append(f"stages[{si}].structures[{k}] ({path}): npt needs a periodic cell in all directions")
    if problems:
        raise ConfigError("; ".join(problems))
    if cfg.labeller.check_on_start:
        from mlpot.workflows.learn.tasks import label_atoms

        s = systems[0]
        from ase import Atoms

        atoms = Atoms(symbols=s.symbols, positions=s.positions[0], cell=s.cells[0], pbc=s.pbc)
        try:
            res = label_atoms(atoms, cfg.labeller.calculator, cfg.labeller.kwargs, cfg.labeller.stress)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"labeller: {cfg.labeller.calculator} failed on the first frame of init_data "
                              f"({type(exc).__name__}: {exc})") from None
        if not np.allclose(np.asarray(res["forces"]).shape, (s.n_atoms, 3)):
            raise ConfigError(f"labeller: {cfg.labeller.calculator} gave no forces on the first initial frame")
    return {"type_map": type_map, "training": tree, "base_dir": base_dir}


def ensure_init_data(cfg: LearnConfig, store: Path, type_map: list[str]) -> list[str]:
    """``data.h5`` with the initial data as ``init.NNN`` (written once; a re-run finds it); the names."""
    from mlpot.data.io import load_systems
    from mlpot.data.store import HDF5Store, write_hdf5

    if store.is_file():
        with HDF5Store(store) as s:
            names = [n for n in s.names if n.startswith("init.")]
        if names:
            return names
    systems = load_systems(list(cfg.init_data), type_map=type_map)
    return write_hdf5(store, systems, names=[f"init.{k:03d}" for k in range(len(systems))])


def _store_names(store: Path) -> list[str]:
    from mlpot.data.store import HDF5Store

    with HDF5Store(store) as s:
        return list(s.names)


def systems_before(names: list[str], iteration: int) -> list[str]:
    """The dataset's systems an iteration trains on: the initial data and the labels of earlier iterations."""
    return sorted(n for n in names if n.startswith("init.") or (n.startswith("it") and int(n[2:5]) < iteration))


# ------------------------------------------------------------------------------------------ task graph
def train_task(cfg: LearnConfig, info: dict[str, Any], it: int, k: int, attempt: int, systems: list[str],
               previous: Optional[dict[int, dict]], store: Path) -> Any:
    """The training task of member ``k`` in iteration ``it``: ``train.K`` (attempt 0: fine-tuned from
    the previous iteration's member K when ``fine_tune`` is set) or ``train.K.retryA`` (attempt A ≥ 1:
    an outlier retrained from scratch with a new seed)."""
    from mlpot.workflows.engine import Task

    name = f"{_iter(it)}/train.{k}" + (f".retry{attempt}" if attempt else "")
    params: dict[str, Any] = {"v": VERSION, "member": k, "training": info["training"], "base_dir": info["base_dir"],
                              "data": str(store.resolve()), "systems": systems,
                              "seed": cfg.member_seeds()[k] + 7919 * it + 104_729 * attempt,
                              "device": cfg.device, "numb_steps": None, "init_model": None}
    if attempt == 0 and cfg.fine_tune is not None and previous is not None:
        prev = previous[k]
        params.update(numb_steps=cfg.fine_tune.numb_steps, init_model=prev["model"],
                      init_model_sha256=prev["model_sha256"])
        if cfg.fine_tune.overrides():
            params["overrides"] = cfg.fine_tune.overrides()
    gpu = 0 if cfg.device == "cpu" else 1  # a CUDA device: each training / MD task gets a GPU of its own
    return Task(name, f"{TASKS}:train_member", params, (), cfg.resources.train.to_engine(gpu))


def choose_members(results: dict[str, dict], attempts: dict[int, list[str]]) -> dict[int, str]:
    """Per member the attempt kept: the one with the lowest force RMSE on the training data."""
    def rmse(name: str) -> float:
        v = float(results[name].get("data_rmse_f", float("nan")))
        return v if np.isfinite(v) else float("inf")

    return {k: min(names, key=rmse) for k, names in attempts.items()}


def explore_tasks(cfg: LearnConfig, it: int, stage: int, members: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """The explore and select tasks of iteration ``it`` (MD with the chosen ``members``) and their names."""
    from mlpot.workflows.engine import Task

    base = _iter(it)
    gpu = 0 if cfg.device == "cpu" else 1
    st = cfg.stages[stage]
    explore_res = cfg.resources.explore.to_engine(gpu)
    tasks, runs, points = [], [], []
    r = 0
    for si, structure in enumerate(st.structures):
        for t, p in st.state_points:
            name = f"{base}/explore.{r:03d}"
            params = {"v": VERSION, "members": members, "structure": structure, "temperature": t, "pressure": p,
                      "steps": st.steps, "traj_every": st.traj_every, "dt": st.dt, "tau_t": st.tau_t,
                      "tau_p": st.tau_p, "compressibility": st.compressibility, "device": cfg.device,
                      "seed": cfg.seed * 100_003 + it * 1009 + r * 31 + 5}
            tasks.append(Task(name, f"{TASKS}:explore", params, tuple(members), explore_res))
            runs.append(name)
            points.append({"structure": structure, "ensemble": st.ensemble, "temperature_K": t, "pressure_bar": p})
            r += 1
    sel = f"{base}/select"
    lo, hi = cfg.trust(stage)
    tasks.append(Task(sel, f"{TASKS}:select",
                      {"v": VERSION, "explorations": runs, "state_points": points, "f_trust_lo": lo,
                       "f_trust_hi": hi, "n": cfg.candidates_per_iteration,
                       "seed": cfg.seed * 7 + it, "tolerance": cfg.duplicate_tolerance,
                       "fingerprint_rcut": cfg.fingerprint_rcut, "stage": stage, "iteration": it},
                      tuple(runs)))
    return tasks, {"members": members, "runs": runs, "select": sel, "points": points}


def train_ensemble(cfg: LearnConfig, info: dict[str, Any], it: int, systems: list[str],
                   previous: Optional[dict[int, dict]], store: Path, session: Any
                   ) -> tuple[list[Any], dict[int, str], dict[str, dict], list[dict[str, Any]]]:
    """Train the members of iteration ``it``; retrain outliers (:func:`~mlpot.workflows.learn.select.outlier_members`
    on the force RMSE over the training data) from scratch with new seeds, up to ``outlier_retries``
    times. Returns the tasks, the chosen task per member, the results and the retraining log."""
    from mlpot.workflows.learn.select import outlier_members

    tasks = [train_task(cfg, info, it, k, 0, systems, previous, store) for k in range(cfg.ensemble_size)]
    attempts = {k: [t.name] for k, t in enumerate(tasks)}
    retrained: list[dict[str, Any]] = []
    for attempt in range(1, cfg.outlier_retries + 2):
        wf = session.run(tasks)
        if wf.failed:
            raise _round_failed(it, dict(wf.failed), Path(cfg.output_dir))
        chosen = choose_members(wf.results, attempts)
        if cfg.outlier_factor is None or attempt > cfg.outlier_retries:
            break
        rmse = [float(wf.results[chosen[k]].get("data_rmse_f", float("nan"))) for k in range(cfg.ensemble_size)]
        outliers = outlier_members(rmse, cfg.outlier_factor)
        if not outliers:
            break
        for k in outliers:
            t = train_task(cfg, info, it, k, attempt, systems, previous, store)
            retrained.append({"member": k, "task": t.name, "replaces": chosen[k], "data_rmse_f": rmse[k],
                              "median_others": float(np.median([r for j, r in enumerate(rmse) if j != k]))})
            tasks.append(t)
            attempts[k].append(t.name)
    for r in retrained:
        r["data_rmse_f_new"] = float(wf.results[r["task"]].get("data_rmse_f", float("nan")))
    return tasks, chosen, wf.results, retrained


def label_tasks(cfg: LearnConfig, it: int, sel_name: str, n_picked: int) -> list[Any]:
    """The label tasks of iteration ``it``: ``frames_per_task`` candidates each."""
    from mlpot.workflows.engine import Task

    lab = cfg.labeller
    res = lab.resources.to_engine()
    idx = list(range(n_picked))
    chunks = [idx[i:i + lab.frames_per_task] for i in range(0, n_picked, lab.frames_per_task)]
    return [Task(f"{_iter(it)}/label.{c:03d}", f"{TASKS}:label",
                 {"v": VERSION, "select": sel_name, "indices": chunk, "calculator": lab.calculator,
                  "kwargs": lab.kwargs, "stress": lab.stress}, (sel_name,), res)
            for c, chunk in enumerate(chunks)]


# ------------------------------------------------------------------------------------------ labels → data
def labelled_systems(it: int, stage: int, sel: dict[str, Any], labels: list[dict[str, Any]],
                     points: list[dict[str, Any]], type_map: list[str]) -> tuple[list[Any], list[str]]:
    """The successfully labelled candidates grouped per exploration run, as LabeledFrames (with the
    provenance in ``source``), and their system names ``itNNN.RRR``."""
    from ase.io import read

    from mlpot.data.frames import LabeledFrames

    by_run: dict[int, list[tuple[dict, dict]]] = {}
    for row, lab in zip(sel["picked"], labels):
        if lab["ok"]:
            by_run.setdefault(int(row["run"]), []).append((row, lab))
    systems, names = [], []
    cfile = sel["candidates_file"]
    for run, items in sorted(by_run.items()):
        atoms = [read(cfile, index=int(lab["index"])) for _, lab in items]
        sym = atoms[0].get_chemical_symbols()
        types = np.array([type_map.index(s) for s in sym])
        virials = [lab["virial"] for _, lab in items]
        positions = np.stack([a.positions for a in atoms])
        energies = np.array([lab["energy"] for _, lab in items])
        digest = hashlib.sha256(positions.tobytes() + energies.tobytes()).hexdigest()[:16]
        prov = {"mlpot_learn": {"iteration": it, "stage": stage, **points[run], "run": run,
                                "md_steps": [int(r["step"]) for r, _ in items],
                                "max_devi_f": [float(r["max_devi_f"]) for r, _ in items], "digest": digest}}
        systems.append(LabeledFrames(
            type_map=type_map, atom_types=types, positions=positions,
            cells=np.stack([a.cell.array for a in atoms]), pbc=np.asarray(atoms[0].pbc), energies=energies,
            forces=np.stack([np.asarray(lab["forces"]) for _, lab in items]),
            virials=np.stack([np.asarray(v) for v in virials]) if all(v is not None for v in virials) else None,
            source=json.dumps(prov)))
        names.append(f"it{it:03d}.{run:03d}")
    return systems, names


def append_labels(store: Path, it: int, systems: list[Any], names: list[str]) -> bool:
    """Append the iteration's systems to ``data.h5`` unless a re-run finds them there (then they must
    be the same frames: ConfigError otherwise, e.g. after an input change that altered the picks);
    True if written."""
    from mlpot.data.store import HDF5Store, write_hdf5

    with HDF5Store(store) as s:
        present = {n: json.loads(s[n].origin).get("mlpot_learn", {}).get("digest")
                   for n in s.names if n.startswith(f"it{it:03d}.")}
    if present:
        new = {n: json.loads(x.source)["mlpot_learn"]["digest"] for n, x in zip(names, systems)}
        known = {n: d for n, d in present.items() if d is not None}  # (no digest: written before digests)
        if set(new) != set(present) or any(new[n] != d for n, d in known.items()):
            raise ConfigError(f"{store}: holds other labels of iteration {it} ({sorted(present)}) than this run "
                              f"produced ({sorted(new)}): the input changed after they were appended; continue with "
                              "the old input or start a new output_dir")
        return False
    if not systems:
        return False
    write_hdf5(store, systems, append=True, names=names)
    return True


def force_rmse_on_labels(model_path: str, systems: list[Any], device: str) -> Optional[float]:
    """Force RMSE (eV/Å) of a member on the new labels of its iteration (frames it never saw)."""
    if not systems:
        return None
    from mlpot.workflows.learn.tasks import system_errors

    return system_errors(model_path, systems, device)["rmse_f"][0]


def _round_failed(it: int, failed: dict[str, str], out: Path) -> MlpotError:
    """The error of a round with failed tasks: every failure (the cause, not only "skipped")."""
    lines = "; ".join(f"{k}: {v}" for k, v in sorted(failed.items()))
    return MlpotError(f"iteration {it}: {len(failed)} task(s) failed (finished tasks are kept in {out / 'tasks'} "
                      f"and reused on the next run): {lines}")


# ------------------------------------------------------------------------------------------ the loop
def run_learn(cfg: LearnConfig, progress: bool = True, max_workers: Optional[int] = None,
              echo: Callable[[str], None] = print, stop_after: Optional[str] = None) -> dict[str, Any]:
    """The whole campaign (module docstring); returns the results written to ``results.json``.
    ``stop_after``: ``"iter.NNN/select"`` returns once that iteration's first round has finished (a
    planned interruption: the next call continues from there)."""
    from mlpot.workflows.engine import WorkflowSession
    from mlpot.workflows.learn import report

    info = check_inputs(cfg)
    type_map = info["type_map"]
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = out / DATA_FILE
    ensure_init_data(cfg, store, type_map)
    records: list[dict[str, Any]] = []
    stage, at_stage = 0, 0
    previous: Optional[dict[int, dict]] = None
    status = "max_iterations"
    last_members: list[str] = []
    with WorkflowSession(out / "tasks", cfg.cluster, progress=progress, max_workers=max_workers) as session:
        for it in range(cfg.max_iterations):
            systems = systems_before(_store_names(store), it)
            train, chosen, _, retrained = train_ensemble(cfg, info, it, systems, previous, store, session)
            member_names = [chosen[k] for k in range(cfg.ensemble_size)]
            tasks, names = explore_tasks(cfg, it, stage, member_names)
            tasks = train + tasks
            wf = session.run(tasks)
            if names["select"] in wf.failed:
                raise _round_failed(it, dict(wf.failed), out)
            if stop_after == names["select"]:
                return {"status": "stopped", "iteration": it}
            sel = wf.results[names["select"]]
            labs = label_tasks(cfg, it, names["select"], len(sel["picked"]))
            wf2 = session.run(tasks + labs) if labs else wf
            labels: list[dict[str, Any]] = []
            for t in labs:
                r = wf2.results.get(t.name)
                if r is None:  # the whole task failed (walltime, crash, a labeller without forces)
                    err = wf2.failed.get(t.name, "not run")
                    if err.startswith("labeller"):  # the labeller itself is unusable: stop, said once
                        raise MlpotError(f"iteration {it}: task {t.name} failed: {err}")
                    labels += [{"index": i, "ok": False, "error": f"label task failed: {err}"} for i in t.params["indices"]]
                else:
                    labels += r["frames"]
            new_systems, new_names = labelled_systems(it, stage, sel, labels, names["points"], type_map)
            append_labels(store, it, new_systems, new_names)
            members = {m: wf.results[m] for m in names["members"]}
            rec = report.iteration_record(cfg, it, stage, members, sel, labels, wf2,
                                          force_rmse_on_labels(members[names["members"][0]]["model"], new_systems,
                                                               cfg.device))
            rec["retrained"] = retrained
            records.append(rec)
            at_stage += 1
            last_members = names["members"]
            previous = {k: wf.results[chosen[k]] for k in range(cfg.ensemble_size)}
            echo(report.summary_line(rec))
            reached = rec["accurate_fraction"] >= cfg.accurate_target
            last_stage = stage == len(cfg.stages) - 1
            if reached and last_stage:
                status = "converged"
            elif at_stage >= cfg.stages[stage].max_iterations and last_stage:
                status = "stage_max_iterations"
            elif reached or at_stage >= cfg.stages[stage].max_iterations:
                rec["advance"] = "target reached" if reached else "stage max_iterations reached, target not reached"
                stage, at_stage = stage + 1, 0
            report.write_outputs(cfg, out, records, status="running", final_models=[])
            if status != "max_iterations":
                break
    final = []
    (out / "models").mkdir(exist_ok=True)
    for k, m in enumerate(last_members):
        dst = out / "models" / f"model.{k}.pt"
        with atomic_path(dst) as tmp:
            shutil.copyfile(previous[k]["model"], tmp)  # type: ignore[index]
        final.append(str(dst.resolve()))
    data = report.write_outputs(cfg, out, records, status=status, final_models=final)
    echo(report.final_line(data))
    return data


__all__ = ["run_learn", "check_inputs", "train_task", "train_ensemble", "explore_tasks", "choose_members", "label_tasks",
           "labelled_systems", "systems_before"]
