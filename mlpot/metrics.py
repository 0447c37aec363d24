"""Error metrics of a model on labeled data (``mlpot test``) and the deviation of an ensemble on any frames
(``mlpot model-devi``). (The model itself is evaluated by :func:`mlpot.model.evaluate`.)

* :func:`predict` runs a model over all frames of a system, batched over frames, on the model's device.
* :func:`score_system` / :func:`average_report` / :func:`write_detail_files`: one ``mlpot test`` run
  (predictions + metrics per system, the report lines, the detail files).
* :func:`error_metrics` / :func:`weighted_average` / :func:`format_metrics`: energy, force and virial
  MAE/RMSE as DeePMD-kit's ``dp test`` reports them (total and per atom; several systems averaged
  with weights = number of labeled values, i.e. frames for energies, 3·atoms·frames for forces).
* :func:`detail_blocks`: ``dp test --detail-file`` style per-frame / per-atom prediction files.
* parity plots of the predictions: :class:`mlpot.plot.ParityData`, :func:`mlpot.plot.parity_plot`.
* :func:`model_deviation` / :func:`system_model_deviation` / :func:`format_model_devi`: DP-GEN /
  DeePMD-kit ``model_devi.out``.

Formulas (model deviation, as in DeePMD-kit and DP-GEN; σ is the population standard deviation over
the M models, ⟨·⟩ the mean over models):

* force: ε_F,i = sqrt(⟨|F_i − ⟨F_i⟩|²⟩) per atom i; columns max/min/avg over atoms (eV/Å);
* virial: σ_ab of the per-atom virial W_ab/N for each of the 9 components; columns max_ab σ_ab,
  min_ab σ_ab and sqrt(Σ_ab σ_ab²)/3 (eV);
* energy: σ of the per-atom energy E/N (eV).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np

from mlpot.errors import DataError, ModelError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from mlpot.data.frames import LabeledFrames


# ---------------------------------------------------------------------------------------------- predict
def map_types(system: "LabeledFrames", type_map: Sequence[str]) -> np.ndarray:
    """``system.atom_types`` re-indexed into the model's ``type_map``
    (:func:`mlpot.data.types.remap_types`: an element the model does not know is an
    :class:`~mlpot.data.types.UnknownElementError`, a ModelError)."""
    from mlpot.data.types import remap_types

    return remap_types(system.atom_types, system.type_map, type_map, where=str(system.source))


def predict(
    model: "torch.nn.Module",
    system: "LabeledFrames",
    batch_atoms: int = 4096,
    forces: bool = True,
    virial: bool = True,
    progress: Optional[Callable[[int], None]] = None,
) -> dict[str, np.ndarray]:
    """Model predictions for every frame of ``system``, batched over frames on the model's device.

    Returns float64 numpy arrays: ``energy`` (F,) eV, ``atom_energy`` (F, N) eV, ``forces``
    (F, N, 3) eV/Å and ``virial`` (F, 3, 3) eV (DeePMD convention, virial = −stress·volume) when asked.
    ``batch_atoms``: about how many atoms go through the model at once (at least one frame);
    ``progress``: called with the number of frames of each batch once it is done (a progress bar's update).
    """
    import torch

    from mlpot.data.batch import to_batch
    from mlpot.model import evaluate

    types = map_types(system, model.type_map)  # type: ignore[arg-type]
    device, dtype = model.device, model.dtype
    n_frames, n_atoms = system.n_frames, system.n_atoms
    per_batch = max(1, int(batch_atoms) // max(1, n_atoms))
    out: dict[str, list[np.ndarray]] = {"energy": [], "atom_energy": [], "forces": [], "virial": []}
    for start in range(0, n_frames, per_batch):
        stop = min(n_frames, start + per_batch)
        b = stop - start
        batch = to_batch(system, slice(start, stop), device=device, dtype=dtype, atom_types=types, labels=False)
        res = evaluate(
            model,
            batch.positions,
            batch.atom_types,
            batch.cells,
            batch.pbc,
            frame_index=batch.frame_index,
            outputs=("energy",) + ("forces",) * bool(forces) + ("virial",) * bool(virial),
        )
        out["energy"].append(res["energy"].detach().to("cpu", torch.float64).numpy().reshape(b))
        out["atom_energy"].append(res["atom_energy"].detach().to("cpu", torch.float64).numpy().reshape(b, n_atoms))
        if forces:
            out["forces"].append(res["forces"].detach().to("cpu", torch.float64).numpy().reshape(b, n_atoms, 3))
        if virial:
            out["virial"].append(res["virial"].detach().to("cpu", torch.float64).numpy().reshape(b, 3, 3))
        if progress is not None:
            progress(b)
    return {k: np.concatenate(v, axis=0) for k, v in out.items() if v}


# ---------------------------------------------------------------------------------------------- metrics
def mae(diff: np.ndarray) -> float:
    """Mean absolute value of ``diff``."""
    return float(np.mean(np.abs(diff)))


def rmse(diff: np.ndarray) -> float:
    """Root mean square of ``diff``."""
    return float(np.sqrt(np.mean(np.square(diff))))


def error_metrics(pred: dict[str, np.ndarray], system: "LabeledFrames") -> dict[str, tuple[float, int]]:
    """Errors of ``pred`` (from :func:`predict`) against the labels of ``system``.

    Keys (present only where the labels exist), each ``(value, weight)`` with weight the number of
    labeled values, as ``dp test`` does: ``mae_e, rmse_e`` (eV), ``mae_ea, rmse_ea`` (the same / N, eV),
    ``mae_f, rmse_f`` (eV/Å, over all force components), ``mae_v, rmse_v, mae_va, rmse_va`` (eV;
    virial components, and / N). Frames: the first ``len(pred["energy"])`` of ``system``.
    """
    n = len(pred["energy"])
    na = system.n_atoms
    err: dict[str, tuple[float, int]] = {}
    if system.energies is not None:
        d = pred["energy"] - system.energies[:n]
        err.update(mae_e=(mae(d), d.size), rmse_e=(rmse(d), d.size))
        err.update(mae_ea=(mae(d) / na, d.size), rmse_ea=(rmse(d) / na, d.size))
    if system.forces is not None and "forces" in pred:
        d = pred["forces"] - system.forces[:n]
        err.update(mae_f=(mae(d), d.size), rmse_f=(rmse(d), d.size))
    if system.virials is not None and "virial" in pred and bool(np.all(system.pbc)):
        d = pred["virial"] - system.virials[:n]
        err.update(mae_v=(mae(d), d.size), rmse_v=(rmse(d), d.size))
        err.update(mae_va=(mae(d) / na, d.size), rmse_va=(rmse(d) / na, d.size))
    return err


def weighted_average(errors: Sequence[dict[str, tuple[float, int]]]) -> dict[str, tuple[float, int]]:
    """Combine per-system errors: MAEs averaged with the weights, RMSEs as sqrt of the weighted mean
    square; a key enters only from the systems that have it."""
    total: dict[str, float] = {}
    weight: dict[str, int] = {}
    for err in errors:
        for key, (value, size) in err.items():
            contrib = value * value if key.startswith("rmse") else value
            total[key] = total.get(key, 0.0) + contrib * size
            weight[key] = weight.get(key, 0) + size
    out: dict[str, tuple[float, int]] = {}
    for key, s in total.items():
        mean = s / weight[key] if weight[key] else 0.0
        out[key] = (float(np.sqrt(mean)) if key.startswith("rmse") else float(mean), weight[key])
    return out


_LINES = [
    ("mae_e", "Energy MAE         : {:e} eV"),
    ("rmse_e", "Energy RMSE        : {:e} eV"),
    ("mae_ea", "Energy MAE/Natoms  : {:e} eV"),
    ("rmse_ea", "Energy RMSE/Natoms : {:e} eV"),
    ("mae_f", "Force  MAE         : {:e} eV/A"),
    ("rmse_f", "Force  RMSE        : {:e} eV/A"),
    ("mae_v", "Virial MAE         : {:e} eV"),
    ("rmse_v", "Virial RMSE        : {:e} eV"),
    ("mae_va", "Virial MAE/Natoms  : {:e} eV"),
    ("rmse_va", "Virial RMSE/Natoms : {:e} eV"),
]


def format_metrics(err: dict[str, tuple[float, int]]) -> list[str]:
    """The ``dp test`` lines (``Energy RMSE/Natoms : 1.234567e-03 eV`` ...) for the keys present."""
    return [fmt.format(err[key][0]) for key, fmt in _LINES if key in err]


# ---------------------------------------------------------------------------------------------- detail files
def _block(header: str, data: np.ndarray) -> str:
    import io

    buf = io.StringIO()
    np.savetxt(buf, data, header=header)
    return buf.getvalue()


def detail_blocks(name: str, pred: dict[str, np.ndarray], system: "LabeledFrames") -> dict[str, str]:
    """Text blocks of the ``--detail-file`` outputs for one system, keyed by suffix:

    ``.e.out`` (data_e pred_e per frame, eV), ``.e_peratom.out`` (the same / N), ``.f.out``
    (data_fx data_fy data_fz pred_fx pred_fy pred_fz per atom, eV/Å), ``.v.out`` and
    ``.v_peratom.out`` (9 + 9 virial components, eV) where labels exist. The header names the system.
    """
    n, na = len(pred["energy"]), system.n_atoms
    blocks: dict[str, str] = {}
    if system.energies is not None:
        pe = np.stack([system.energies[:n], pred["energy"]], axis=1)
        blocks[".e.out"] = _block(f"{name}: data_e pred_e", pe)
        blocks[".e_peratom.out"] = _block(f"{name}: data_e pred_e", pe / na)
    if system.forces is not None and "forces" in pred:
        pf = np.concatenate([system.forces[:n].reshape(-1, 3), pred["forces"].reshape(-1, 3)], axis=1)
        blocks[".f.out"] = _block(f"{name}: data_fx data_fy data_fz pred_fx pred_fy pred_fz", pf)
    if system.virials is not None and "virial" in pred:
        comps = ["xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz"]
        head = " ".join([f"data_v{c}" for c in comps] + [f"pred_v{c}" for c in comps])
        pv = np.concatenate([system.virials[:n].reshape(-1, 9), pred["virial"].reshape(-1, 9)], axis=1)
        blocks[".v.out"] = _block(f"{name}: {head}", pv)
        blocks[".v_peratom.out"] = _block(f"{name}: {head}", pv / na)
    return blocks


def detail_path(prefix: str | os.PathLike, suffix: str) -> Path:
    """``prefix`` with ``suffix`` (e.g. ``.e.out``) in place of its extension, as ``dp test`` names them."""
    return Path(prefix).with_suffix(suffix)


# ---------------------------------------------------------------------------------------------- mlpot test
@dataclass
class SystemScore:
    """One system tested: ``system`` (the frames tested), ``pred`` (:func:`predict`), ``errors``
    (:func:`error_metrics`: key -> (value, number of labeled values))."""

    system: "LabeledFrames"
    pred: dict[str, np.ndarray]
    errors: dict[str, tuple[float, int]]

    @property
    def name(self) -> str:
        return str(self.system.source)

    def report(self) -> list[str]:
        """This system's block of ``dp test`` lines."""
        lines = ["# ---------------output of mlpot test--------------- ", f"# testing system : {self.name}",
                 f"# number of test data : {self.system.n_frames:d} ", *format_metrics(self.errors)]
        if not self.errors:
            lines.append("# (no energy/force/virial labels in this system: nothing to compare)")
        return lines + ["# ----------------------------------------------- "]


def score_system(model: "torch.nn.Module", system: "LabeledFrames", numb_test: int = 0,
                 batch_atoms: int = 4096, progress: Optional[Callable[[int], None]] = None) -> SystemScore:
    """Predictions and error metrics of ``model`` on the first ``numb_test`` frames of ``system``
    (0: all frames); ``batch_atoms`` and ``progress`` as in :func:`predict`."""
    if numb_test < 0:
        raise DataError(f"numb_test: expected a number of frames >= 0, found {numb_test}")
    n = system.n_frames if numb_test == 0 else min(system.n_frames, numb_test)
    system = system.subset(slice(0, n))
    pred = predict(model, system, batch_atoms=batch_atoms, progress=progress)
    return SystemScore(system, pred, error_metrics(pred, system))


def average_report(scores: Sequence[SystemScore]) -> list[str]:
    """The ``dp test`` block of the weighted average over several systems (:func:`weighted_average`)."""
    return ["# ----------weighted average of errors----------- ", f"# number of systems : {len(scores)}",
            *format_metrics(weighted_average([s.errors for s in scores])),
            "# ----------------------------------------------- "]


def write_detail_files(prefix: str | os.PathLike, scores: Sequence[SystemScore]) -> list[Path]:
    """Write the ``--detail-file`` outputs (:func:`detail_blocks`, one block per system in each file,
    atomically) next to ``prefix``; returns the paths written."""
    from mlpot.atomic_io import atomic_path

    details: dict[str, str] = {}
    for s in scores:
        for suffix, text in detail_blocks(s.name, s.pred, s.system).items():
            details[suffix] = details.get(suffix, "") + text
    paths = []
    for suffix, text in details.items():
        with atomic_path(detail_path(prefix, suffix)) as tmp:
            tmp.write_text(text)
        paths.append(detail_path(prefix, suffix))
    return paths


# ---------------------------------------------------------------------------------------------- model deviation
def model_deviation(
    energies: np.ndarray, forces: np.ndarray, virials: Optional[np.ndarray], n_atoms: int
) -> np.ndarray:
    """Model deviation of an ensemble, (F, 7): max_devi_v, min_devi_v, avg_devi_v, max_devi_f,
    min_devi_f, avg_devi_f, devi_e (see the module docstring for the formulas).

    energies (M, F) eV, forces (M, F, N, 3) eV/Å, virials (M, F, 3, 3) eV or None (virial columns 0).
    """
    energies = np.asarray(energies, dtype=np.float64)
    forces = np.asarray(forces, dtype=np.float64)
    m, f = energies.shape
    f_mean = forces.mean(axis=0)  # (F, N, 3)
    eps_f = np.sqrt(np.mean(np.sum((forces - f_mean) ** 2, axis=-1), axis=0))  # (F, N)
    devi_e = np.std(energies / n_atoms, axis=0)  # (F,)
    if virials is not None:
        sig_v = np.std(np.asarray(virials, dtype=np.float64).reshape(m, f, 9) / n_atoms, axis=0)  # (F, 9)
        v_cols = [sig_v.max(axis=1), sig_v.min(axis=1), np.linalg.norm(sig_v, axis=1) / 3.0]
    else:
        v_cols = [np.zeros(f)] * 3
    return np.stack(v_cols + [eps_f.max(axis=1), eps_f.min(axis=1), eps_f.mean(axis=1), devi_e], axis=1)


MODEL_DEVI_COLUMNS = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")


def format_model_devi(steps: np.ndarray, devi: np.ndarray, header: str = "") -> str:
    """``model_devi.out`` text: a ``# <header>`` line, the column line ``#       step   max_devi_v ...``
    (step right-aligned in 10, the others in 19 characters), then one row per frame (step %12d, values
    %19.6e), the layout DeePMD-kit and DP-GEN write and read."""
    lines = [f"# {header}".rstrip(), "# " + "%10s" % "step" + "".join("%19s" % c for c in MODEL_DEVI_COLUMNS)]
    for s, row in zip(np.asarray(steps).reshape(-1), np.asarray(devi).reshape(-1, 7)):
        lines.append("%12d" % int(s) + "".join("%19.6e" % v for v in row))
    return "\n".join(lines) + "\n"


def ensemble_predict(
    models: Sequence["torch.nn.Module"], system: "LabeledFrames", batch_atoms: int = 4096,
    progress: Optional[Callable[[int], None]] = None,
) -> dict[str, np.ndarray]:
    """Predictions of each model: energy (M, F), forces (M, F, N, 3), virial (M, F, 3, 3);
    ``progress`` as in :func:`predict` (called for every model: M × F frames in all)."""
    preds = [predict(m, system, batch_atoms=batch_atoms, progress=progress) for m in models]
    return {k: np.stack([p[k] for p in preds]) for k in ("energy", "forces", "virial")}


def system_model_deviation(
    models: Sequence["torch.nn.Module"], system: "LabeledFrames", batch_atoms: int = 4096,
    progress: Optional[Callable[[int], None]] = None,
) -> np.ndarray:
    """:func:`model_deviation` (F, 7) of the ensemble ``models`` over the frames of ``system``
    (``progress`` as in :func:`ensemble_predict`)."""
    pred = ensemble_predict(models, system, batch_atoms=batch_atoms, progress=progress)
    return model_deviation(pred["energy"], pred["forces"], pred["virial"], system.n_atoms)


def check_same_type_map(models: Sequence[Any], names: Optional[Sequence[str]] = None) -> list[str]:
    """The common type_map of ``models``; :class:`ModelError` when they differ."""
    if not models:
        raise ModelError("model deviation: expected at least one model, got none")
    names = list(names) if names is not None else [f"model {i}" for i in range(len(models))]
    ref = list(models[0].type_map)
    for m, name in zip(models[1:], names[1:]):
        if list(m.type_map) != ref:
            raise ModelError(f"{name}: type_map {list(m.type_map)} differs from {names[0]}'s {ref}")
    return ref
