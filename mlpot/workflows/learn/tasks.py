"""The task functions of ``mlpot learn`` (each runs in its own process and folder, see
:mod:`mlpot.workflows.engine`): ``func(params, workdir, deps) -> dict``.

* :func:`train_member`: one ensemble member, trained (or fine-tuned from the previous iteration's
  member) on the HDF5 dataset of the campaign; resumes from its own checkpoint when killed.
* :func:`explore`: one MD run (structure × T [× P]) with member 0, frames recorded every
  ``traj_every`` steps, the model deviation of all members on each frame (``model_devi.out``). An MD
  that cannot go on (atoms too close, non-finite forces: the model is lost) ends the run; the frames
  before it are kept and the error is recorded.
* :func:`select`: classification and candidate picks (:mod:`mlpot.workflows.learn.select`) over
  all explorations of the iteration; writes ``candidates.extxyz``.
* :func:`label`: the labeller (an ASE calculator, imported here) on some candidates; a frame whose
  calculation raises (SCF not converged, ...) is marked failed with its error, the others go on.
  Per-frame results are journalled, so a killed task continues with the next unlabelled frame.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from mlpot.errors import ConfigError, DataError, MlpotError, SimulationError


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    from mlpot.workflows.worker import write_atomic

    write_atomic(path, json.dumps(data, indent=1))


def _task_hash(workdir: Path) -> str:
    """The hash of the task running in ``workdir`` (from the engine's task.json; "" outside the engine)."""
    try:
        return str(json.loads((Path(workdir) / "task.json").read_text()).get("hash", ""))
    except (OSError, ValueError):
        return ""


def _own_partial(marker: Path, workdir: Path) -> bool:
    """Whether the partial outputs next to ``marker`` were left by THIS task (same hash): a task
    re-run after its params changed (new hash, same folder) must not continue another one's work."""
    current = _task_hash(workdir)
    try:
        return marker.read_text().strip() == current
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ training
def member_config(tree: Mapping[str, Any], data: list[str], seed: int, numb_steps: Optional[int],
                  overrides: Optional[Mapping[str, Mapping[str, Any]]] = None) -> dict[str, Any]:
    """The training input of one member: the user's tree with ``training_data.systems = data``, the
    member's seed for the batches and for the descriptor and fitting initialisation, and
    ``numb_steps`` and ``overrides`` (section → keys, e.g. ``{"learning_rate": {"start_lr": 1e-4}}``)
    when given (fine-tuning)."""
    cfg = json.loads(json.dumps(dict(tree)))
    for section, keys in (overrides or {}).items():
        cfg.setdefault(section, {}).update(dict(keys))
    tr = cfg.setdefault("training", {})
    td = dict(tr.get("training_data") or {})
    td["systems"] = list(data)
    tr["training_data"] = td
    tr["seed"] = int(seed)
    for key in ("output_dir", "restart", "init_model"):
        tr.pop(key, None)
    if numb_steps is not None:
        tr["numb_steps"] = int(numb_steps)
    model = cfg.setdefault("model", {})
    for sec in ("descriptor", "fitting_net"):
        if isinstance(model.get(sec), dict):
            model[sec]["seed"] = int(seed) + (0 if sec == "descriptor" else 1)
    return cfg


def train_member(params: dict[str, Any], workdir: Path, deps: dict[str, dict]) -> dict[str, Any]:
    """Train member ``params['member']`` on ``params['data']`` (an HDF5 store that must hold exactly
    the systems ``params['systems']``); ``init_model``: fine-tune from that model file."""
    import torch

    from mlpot.config import load_config
    from mlpot.data.store import HDF5Store
    from mlpot.train.trainer import Trainer

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    workdir = Path(workdir)
    with HDF5Store(params["data"]) as store:
        names = sorted(store.names)
        frames = sum(store[n].n_frames for n in names)
    if names != sorted(params["systems"]):
        raise DataError(f"{params['data']}: expected the systems {sorted(params['systems'])} for this iteration's "
                        f"training, found {names}; the dataset was changed outside mlpot learn (start a new output_dir)")
    cfg = load_config(member_config(params["training"], [params["data"]], params["seed"], params.get("numb_steps"),
                                    params.get("overrides")), base_dir=params["base_dir"])
    out = workdir / "train"
    ckpt = out / (Path(cfg.training.save_ckpt).name + ".pt")
    marker = out / ".task_hash"
    # a killed task continues from its checkpoint; a checkpoint of other params is replaced
    restart = str(ckpt) if ckpt.is_file() and _own_partial(marker, workdir) else None
    if restart is None:
        from mlpot.workflows.worker import write_atomic

        out.mkdir(parents=True, exist_ok=True)
        write_atomic(marker, _task_hash(workdir) + "\n")
    init = None if restart else params.get("init_model")
    trainer = Trainer.from_config(cfg, output_dir=out, device=params["device"], restart=restart, init_model=init,
                                  quiet=False, overwrite=restart is None)
    history = trainer.train()
    model = trainer.freeze(out / "model.pt")
    last = {k: float(v) for k, v in (history[-1] if history else {}).items()}
    data_rmse = training_data_rmse(model, params["data"], names, params["device"])
    return {"model": str(Path(model).resolve()), "model_sha256": _sha256(Path(model)), "frames": int(frames),
            "systems": names, "lcurve_last": last, "init_model": init, "seed": int(params["seed"]), **data_rmse}


def training_data_rmse(model_path: Any, store_path: str, names: list[str], device: str) -> dict[str, float]:
    """Energy RMSE per atom (eV/atom) and force RMSE over all components (eV/Å) of a frozen model on
    every frame of ``names`` in the HDF5 store: the member's fit to its whole training set (the
    lcurve's figures are of single batches), which the loop compares across members."""
    from mlpot.data.store import HDF5Store

    with HDF5Store(store_path) as store:
        err = system_errors(model_path, [store.read(n) for n in names], device)
    return {"data_rmse_f": err["rmse_f"][0] if "rmse_f" in err else float("nan"),
            "data_rmse_e_per_atom": err["rmse_ea"][0] if "rmse_ea" in err else float("nan")}


def system_errors(model_path: Any, systems: list[Any], device: str) -> dict[str, tuple[float, int]]:
    """``mlpot test``'s error metrics of a model file over ``systems`` (weighted over them, no virial):
    :func:`mlpot.metrics.error_metrics` per system combined by :func:`mlpot.metrics.weighted_average`."""
    from mlpot.export import load_model
    from mlpot.metrics import error_metrics, predict, weighted_average

    model = load_model(str(model_path), device=device)
    return weighted_average([error_metrics(predict(model, s, virial=False), s) for s in systems])


# ------------------------------------------------------------------------------------------ exploration
class _FrameRecorder:
    """md_engine reporter: positions and cell of every ``interval``-th step (Å), kept in memory."""

    def __init__(self, interval: int) -> None:
        self.interval = int(interval)
        self.steps: list[int] = []
        self.positions: list[np.ndarray] = []
        self.cells: list[np.ndarray] = []

    def open(self, sim: Any, restart_step: Optional[int] = None) -> None:
        pass

    def report(self, sim: Any) -> None:
        st = sim.gathered_state()
        if st is None:
            return
        self.steps.append(int(st.step))
        self.positions.append(st.positions.detach().cpu().double().numpy().copy())
        self.cells.append(st.cell.detach().cpu().double().numpy().copy())

    def close(self) -> None:
        pass


def read_structure(path: str) -> Any:
    """The last frame of a structure file (``ase.io.read``), DataError naming the file otherwise."""
    from ase.io import read

    try:
        return read(path, index=-1)
    except Exception as exc:  # noqa: BLE001 (ASE raises many kinds)
        raise DataError(f"{path}: cannot read a structure ({type(exc).__name__}: {exc})") from None


def explore(params: dict[str, Any], workdir: Path, deps: dict[str, dict]) -> dict[str, Any]:
    """One exploration run (module docstring); returns the per-frame ``max_devi_f`` (eV/Å), the steps,
    the trajectory file and the MD error (None when the run finished)."""
    import torch
    from ase import Atoms
    from ase.io import write

    from md_engine.integrators import NPT, Langevin, StochasticCellRescaling
    from md_engine.potentials import MlpotPotential
    from md_engine.simulation import Simulation
    from md_engine.state import State
    from mlpot.data.frames import LabeledFrames
    from mlpot.export import load_model
    from mlpot.metrics import format_model_devi, system_model_deviation

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    workdir = Path(workdir)
    device = params["device"]
    models = [load_model(deps[name]["model"], device=device) for name in params["members"]]
    pot = MlpotPotential(models[0])
    atoms = read_structure(params["structure"])
    t, p = float(params["temperature"]), params.get("pressure")
    seed = int(params["seed"])
    state = State.from_atoms(atoms, type_map=list(models[0].type_map), device=device, temperature=t, seed=seed)
    integ: Any = Langevin(params["dt"], t, tau=params["tau_t"], seed=seed)
    if p is not None:
        integ = NPT(integ, StochasticCellRescaling(float(p), tau=params["tau_p"],
                                                   compressibility=params["compressibility"], seed=seed + 7919))
    rec = _FrameRecorder(params["traj_every"])
    sim = Simulation(state, pot, integ, [rec], skin=1.0, min_distance=params.get("min_distance", 0.5), check_every=10)
    error = None
    try:
        sim.run(int(params["steps"]))
    except SimulationError as exc:
        error = " ".join(str(exc).split())
    n_atoms = len(atoms)
    if not rec.steps:
        return {"n_frames": 0, "steps": [], "max_devi_f": [], "error": error, "traj": None, "n_atoms": n_atoms}
    types = state.types.cpu().numpy()
    frames = LabeledFrames(type_map=list(models[0].type_map), atom_types=types, positions=np.stack(rec.positions),
                           cells=np.stack(rec.cells), pbc=np.asarray(atoms.pbc), source=params["structure"])
    devi = system_model_deviation(models, frames)
    symbols = [models[0].type_map[k] for k in types]
    traj = workdir / "traj.extxyz"
    images = []
    for k, step in enumerate(rec.steps):
        a = Atoms(symbols=symbols, positions=frames.positions[k], cell=frames.cells[k], pbc=atoms.pbc)
        a.info.update({"step": int(step), "max_devi_f": float(devi[k, 3])})
        images.append(a)
    from mlpot.atomic_io import atomic_path

    with atomic_path(traj) as tmp:
        write(str(tmp), images, format="extxyz")
    with atomic_path(workdir / "model_devi.out") as tmp:
        Path(tmp).write_text(format_model_devi(np.asarray(rec.steps), devi, header=params["structure"]))
    return {"n_frames": len(rec.steps), "steps": rec.steps, "max_devi_f": devi[:, 3].tolist(), "error": error,
            "traj": str(traj.resolve()), "n_atoms": n_atoms}


# ------------------------------------------------------------------------------------------ selection
def select(params: dict[str, Any], workdir: Path, deps: dict[str, dict]) -> dict[str, Any]:
    """Classify every explored frame, pick at most ``params['n']`` candidates spread over the
    trajectories without near-duplicates, write them to ``candidates.extxyz``."""
    from ase.io import read, write

    from mlpot.atomic_io import atomic_path
    from mlpot.workflows.learn.select import classify, counts, pick_candidates, radial_fingerprint

    workdir = Path(workdir)
    lo, hi = float(params["f_trust_lo"]), float(params["f_trust_hi"])
    runs = [deps[name] for name in params["explorations"]]
    per_run, cand_idx, images = [], [], []
    for name, run, meta in zip(params["explorations"], runs, params["state_points"]):
        cls = classify(run["max_devi_f"], lo, hi)
        c = counts(cls)
        per_run.append({"task": name, **meta, **c, "n_frames": int(run["n_frames"]), "error": run.get("error")})
        idx = np.nonzero(cls == 1)[0]
        cand_idx.append(idx)
        images.append(read(run["traj"], index=":") if run.get("traj") and idx.size else [])

    def fingerprint(t: int, f: int) -> np.ndarray:
        a = images[t][f]
        return radial_fingerprint(a.positions, a.cell.array, a.pbc, a.get_chemical_symbols(),
                                  rcut=params.get("fingerprint_rcut", 6.0))

    picked = pick_candidates(cand_idx, int(params["n"]), seed=int(params["seed"]), fingerprint_fn=fingerprint,
                             tolerance=float(params.get("tolerance", 0)))
    out_images, rows = [], []
    for t, f in picked:
        run = runs[t]
        a = images[t][f]
        a.info.clear()
        a.info.update({"run": t, "frame": int(f), "step": int(run["steps"][f]), "max_devi_f": float(run["max_devi_f"][f])})
        out_images.append(a)
        rows.append({"run": t, "task": params["explorations"][t], "frame": int(f), "step": int(run["steps"][f]),
                     "max_devi_f": float(run["max_devi_f"][f])})
    cfile = workdir / "candidates.extxyz"
    if out_images:
        with atomic_path(cfile) as tmp:
            write(str(tmp), out_images, format="extxyz")
    total = {k: sum(r[k] for r in per_run) for k in ("accurate", "candidate", "failed", "n_frames")}
    all_devi = [float(x) for run in runs for x in run["max_devi_f"]]
    return {"candidates_file": str(cfile.resolve()) if out_images else None, "picked": rows, "runs": per_run,
            "counts": total, "max_devi_f": all_devi}


# ------------------------------------------------------------------------------------------ labelling
def make_calculator(spec: str, kwargs: Mapping[str, Any]) -> Any:
    """``Calculator(**kwargs)`` of the importable ``spec`` (:func:`~mlpot.workflows.learn.config.import_calculator`)."""
    from mlpot.workflows.learn.config import import_calculator

    try:
        cls = import_calculator(spec)
    except ValueError as exc:
        raise ConfigError(f"labeller.calculator: {exc}") from None
    try:
        return cls(**dict(kwargs))
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"labeller: {spec}(**{dict(kwargs)}) failed ({type(exc).__name__}: {exc}); check "
                          "labeller.kwargs") from None


def label_atoms(atoms: Any, spec: str, kwargs: Mapping[str, Any], stress: bool = True) -> dict[str, Any]:
    """Energy (eV), forces (N, 3) eV/Å and, with ``stress``, the virial (3, 3) eV = −stress·V of one
    frame by a fresh calculator. A calculator that gives no forces is a :class:`ConfigError` (the
    labeller is unusable); any other exception of the calculation propagates (the frame failed)."""
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms = atoms.copy()
    atoms.calc = make_calculator(spec, kwargs)
    energy = float(atoms.get_potential_energy())
    try:
        forces = np.asarray(atoms.get_forces(), dtype=np.float64)
    except PropertyNotImplementedError:
        raise ConfigError(f"labeller.calculator: {spec} gives no forces (PropertyNotImplementedError); expected a "
                          "calculator that computes energy and forces") from None
    if forces is None or forces.shape != (len(atoms), 3):
        raise ConfigError(f"labeller.calculator: {spec} gave forces of shape {getattr(forces, 'shape', None)}; "
                          f"expected ({len(atoms)}, 3)")
    if not (np.isfinite(energy) and np.isfinite(forces).all()):
        raise ValueError(f"non-finite energy or forces (energy {energy})")
    virial = None
    if stress and atoms.pbc.all():
        try:
            s = np.asarray(atoms.get_stress(voigt=False), dtype=np.float64)
            virial = (-s * atoms.get_volume()).tolist() if np.isfinite(s).all() else None
        except PropertyNotImplementedError:
            virial = None
    return {"energy": energy, "forces": forces.tolist(), "virial": virial}


def label(params: dict[str, Any], workdir: Path, deps: dict[str, dict]) -> dict[str, Any]:
    """Label candidates ``params['indices']`` of the selection's ``candidates.extxyz``; per frame
    ``{"index", "ok", "energy", "forces", "virial", "error"}`` (module docstring)."""
    from ase.io import read

    workdir = Path(workdir)
    cfile = deps[params["select"]]["candidates_file"]
    journal_path = workdir / "labels.journal.json"
    journal: dict[str, Any] = json.loads(journal_path.read_text()) if journal_path.is_file() else {}
    if journal.pop("task_hash", None) != _task_hash(workdir):
        journal = {}  # another task's labels (its params changed): start again
    journal["task_hash"] = _task_hash(workdir)
    for i in params["indices"]:
        key = str(i)
        if key in journal:
            continue
        atoms = read(cfile, index=int(i))
        try:
            res = label_atoms(atoms, params["calculator"], params["kwargs"], params.get("stress", True))
            journal[key] = {"index": int(i), "ok": True, **res, "error": None}
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 (SCF not converged, a crashed code, ...: this frame failed)
            journal[key] = {"index": int(i), "ok": False, "energy": None, "forces": None, "virial": None,
                            "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]}
            print(f"frame {i}: labelling failed: {journal[key]['error']}", flush=True)
        _write_json(journal_path, journal)
    return {"frames": [journal[str(i)] for i in params["indices"]]}


__all__ = ["train_member", "explore", "select", "label", "label_atoms", "member_config", "make_calculator"]
