"""Benchmark: accuracy at equal steps, se_atten_v2 (DPA-1), mlpot vs DeePMD-kit 3.2.0, several seeds.

Run (repository root, mlpot's venv; DeePMD-kit in its own venv)::

    python benchmarks/se_atten_accuracy.py [--water-steps 160] [--alloy-steps 300] [--seeds 1 2 3]
        [--workdir benchmarks/.work/se_atten_accuracy] [--dp-python benchmarks/.dpbuild/env/bin/python]

Cases (the SAME input for both codes apart from paths; every seed key of the input — descriptor,
fitting_net and training — set to the run's seed, the same seed values for both codes):

* ``water``: DeePMD-kit's ``examples/water/se_atten_compressible/input.json``
  (tests/data/se_atten/deepmd_inputs/water_se_atten_compressible_input.json: se_atten_v2, attn_layer 0,
  sel 120, rcut 6 Å, fitting [240, 240, 240], float64, batch_size "auto" = 1 frame of 192 atoms);
  training data data/water/data_0..2, validation data/water/data_3 (all 80 frames).
* ``alloy``: DeePMD-kit's many-element example (tests/data/se_atten/deepmd_inputs/nopbc_mixed_input.json,
  rcut_smth 1 Å, rcut 6 Å, sel 120, axis 12, fitting [240, 240, 240]) with the 7 metals as type_map,
  descriptor type ``se_atten_v2`` with ``attn_layer: 0`` (the compressible form; the default 2 layers
  cost 7–11× per step, RESULTS.md), and a plain ``batch_size: 1`` in place of the example's ``mixed:4``
  (DeePMD-kit 3.2's PyTorch backend refuses ``mixed:N``, mlpot refuses it by name; 1 rather than 4 for
  the CPU budget). Data: the six EMT
  systems of data/alloy_emt, split by frame: frames 0–15 of every system train, frames 16–19 of every
  system (24 frames) validate (written as DeePMD npy under WORKDIR/data/alloy/{train,valid}).

Learning rate: the inputs' decay over 10^6 steps is shortened so that it ends within the run:
``stop_lr`` 1e-5 (start 1e-3 as in the inputs) reached at the last step, ``decay_steps`` = steps/20;
the loss prefactors follow the learning rate as in the inputs (they reach ~1 % of their start-limit gap).

Evaluation: ONE evaluator for both codes: mlpot's ``mlpot.model.evaluate`` on the validation frames
(DeePMD-kit's checkpoint imported with ``mlpot.interop.deepmd.import_deepmd``, mlpot's frozen model
loaded with ``mlpot.export.load_model``), energy RMSE per atom (eV/atom) and force RMSE over all
components (eV/Å), computed by :func:`rmse` here. Cross-check: the first seed's DeePMD-kit model of
each case (and the first of every driver run, e.g. ``--seeds 2``) is evaluated also by DeePMD-kit's own
``DeepPot`` (its checkpoint), same RMSE code; the differences are in the JSON's ``cross_check``.

Every (code, case, seed) training and evaluation writes its own JSON under WORKDIR/runs; a restart
skips the finished ones. One thread per process (``benchmarks/common.py``); ``--jobs 2`` (default) trains the two
codes of one (case, seed) side by side (accuracy only: no timing is compared here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "data" / "se_atten" / "deepmd_inputs"
ALL7 = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]
#: code name → worker mode (mlpot_labelbias: mlpot with DeePMD-kit's initial energy bias, the control)
CODES = {"deepmd": "dp-train", "mlpot": "mlpot-train", "mlpot_labelbias": "mlpot-train-labelbias"}
ALLOY = ROOT / "data" / "alloy_emt"
N_TRAIN_FRAMES = 16  # alloy: frames [0, 16) of each system train, [16, 20) validate
STOP_LR = 1e-5
#: alloy: plain batch size in place of the example's "mixed:4" (refused by DeePMD-kit 3.2's PyTorch backend
#: and by mlpot); 1 frame of 32 atoms, for the CPU budget of a shared 2-core machine
ALLOY_BATCH = 1


# ------------------------------------------------------------------------------------ inputs
def alloy_split(workdir: Path) -> tuple[list[str], list[str]]:
    """Write the frame split of data/alloy_emt (DeePMD npy, float64) under WORKDIR/data/alloy; returns
    (train systems, validation systems)."""
    import numpy as np

    out = {"train": [], "valid": []}
    for src in sorted(p for p in ALLOY.iterdir() if (p / "type.raw").exists()):
        for part, sl in (("train", slice(0, N_TRAIN_FRAMES)), ("valid", slice(N_TRAIN_FRAMES, None))):
            dst = workdir / "data" / "alloy" / part / src.name
            if not (dst / "set.000" / "energy.npy").exists():
                (dst / "set.000").mkdir(parents=True, exist_ok=True)
                for f in ("type.raw", "type_map.raw"):
                    (dst / f).write_text((src / f).read_text())
                for f in sorted((src / "set.000").glob("*.npy")):
                    np.save(dst / "set.000" / f.name, np.load(f)[sl])
            out[part].append(str(dst))
    return out["train"], out["valid"]


def systems(case: str, workdir: Path) -> tuple[list[str], list[str]]:
    if case == "water":
        w = ROOT / "data" / "water"
        return [str(w / f"data_{i}") for i in range(3)], [str(w / "data_3")]
    return alloy_split(workdir)


def make_config(case: str, seed: int, steps: int, workdir: Path) -> dict:
    """The training input of ``case`` for ``seed`` and ``steps`` (identical for both codes)."""
    train, valid = systems(case, workdir)
    if case == "water":
        cfg = json.loads((EXAMPLES / "water_se_atten_compressible_input.json").read_text())
    else:
        cfg = json.loads((EXAMPLES / "nopbc_mixed_input.json").read_text())
        cfg["model"]["type_map"] = list(ALL7)
        cfg["model"]["descriptor"].update(type="se_atten_v2", attn_layer=0)
    m = cfg["model"]
    m["descriptor"]["seed"] = m["fitting_net"]["seed"] = seed
    cfg["learning_rate"].update(decay_steps=max(1, steps // 20), stop_lr=STOP_LR)
    t = cfg["training"]
    t["training_data"] = {"systems": train, "batch_size": "auto" if case == "water" else ALLOY_BATCH}
    t["validation_data"] = {"systems": valid, "batch_size": 1, "numb_btch": 1}
    t.update(numb_steps=steps, seed=seed, disp_freq=max(1, steps // 5), save_freq=steps, disp_file="lcurve.out")
    return cfg


# ------------------------------------------------------------------------------------ evaluator
def read_system(path: str, type_map: list[str]):
    """A DeePMD npy system: (coord (F, N, 3) Å, box (F, 3, 3) Å, types (N,) in ``type_map`` indices,
    energy (F,) eV, force (F, N, 3) eV/Å)."""
    import numpy as np

    p = Path(path)
    own = (p / "type_map.raw").read_text().split()
    types = np.array([type_map.index(own[t]) for t in np.loadtxt(p / "type.raw", dtype=int).reshape(-1)])
    sets = sorted(p.glob("set.*"))
    cat = lambda name: np.concatenate([np.load(s / f"{name}.npy") for s in sets]).astype(np.float64)  # noqa: E731
    n = types.shape[0]
    return (cat("coord").reshape(-1, n, 3), cat("box").reshape(-1, 3, 3), types, cat("energy").reshape(-1),
            cat("force").reshape(-1, n, 3))


def rmse(pred_e, pred_f, ref_e, ref_f, natoms: int) -> dict:
    """Energy RMSE per atom (eV/atom) over frames and force RMSE (eV/Å) over all components."""
    import numpy as np

    de = (np.asarray(pred_e) - np.asarray(ref_e)) / natoms
    df = np.asarray(pred_f) - np.asarray(ref_f)
    return {"e_sq_sum": float(np.sum(de**2)), "n_e": int(de.size), "f_sq_sum": float(np.sum(df**2)), "n_f": int(df.size)}


def combine(parts: list[dict]) -> dict:
    ne, nf = sum(p["n_e"] for p in parts), sum(p["n_f"] for p in parts)
    return {"rmse_e_per_atom": (sum(p["e_sq_sum"] for p in parts) / ne) ** 0.5,
            "rmse_f": (sum(p["f_sq_sum"] for p in parts) / nf) ** 0.5, "frames": ne}


def worker_mlpot_eval(kind: str, model_path: str, case: str, workdir: str) -> None:
    """Validation RMSE with mlpot's evaluator; kind 'mlpot' (frozen model) or 'deepmd' (checkpoint)."""
    import torch

    torch.set_num_threads(1)
    from mlpot.model import evaluate

    if kind == "deepmd":
        from mlpot.interop.deepmd import import_deepmd

        model = import_deepmd(model_path, device="cpu")
    else:
        from mlpot.export import load_model

        model = load_model(model_path, device="cpu")
    model.eval()
    cfg = make_config(case, 1, 1, Path(workdir))
    t0, c0 = time.perf_counter(), time.process_time()
    parts = []
    for path in cfg["training"]["validation_data"]["systems"]:
        coord, box, types, energy, force = read_system(path, cfg["model"]["type_map"])
        tt = torch.tensor(types)
        pe, pf = [], []
        for k in range(coord.shape[0]):
            out = evaluate(model, torch.tensor(coord[k]), tt, torch.tensor(box[k]), [True] * 3,
                           outputs=("energy", "forces"))
            pe.append(float(out["energy"][0].detach()))
            pf.append(out["forces"].detach().numpy())
        parts.append(rmse(pe, pf, energy, force, types.shape[0]))
    common.emit(combine(parts) | {"evaluator": "mlpot.model.evaluate", "eval_s": time.perf_counter() - t0,
                                  "eval_cpu_s": time.process_time() - c0})


def worker_dp_eval(model_path: str, case: str, workdir: str) -> None:
    """Validation RMSE with DeePMD-kit's DeepPot (cross-check of one DeePMD-kit model)."""
    import pathlib
    import tempfile

    import deepmd.env

    deepmd.env.SHARED_LIB_DIR = pathlib.Path(tempfile.mkdtemp())
    from deepmd.infer import DeepPot

    dp = DeepPot(model_path)
    cfg = make_config(case, 1, 1, Path(workdir))
    t0 = time.perf_counter()
    parts = []
    for path in cfg["training"]["validation_data"]["systems"]:
        coord, box, types, energy, force = read_system(path, cfg["model"]["type_map"])
        f = coord.shape[0]
        e, fo = dp.eval(coord.reshape(f, -1), box.reshape(f, 9), types)[:2]
        parts.append(rmse(e.reshape(-1), fo.reshape(f, -1, 3), energy, force, types.shape[0]))
    common.emit(combine(parts) | {"evaluator": "deepmd DeepPot", "eval_s": time.perf_counter() - t0})


# ------------------------------------------------------------------------------------ trainers
def worker_dp_train(case: str, seed: str, steps: str, outdir: str, workdir: str) -> None:
    import os
    import pathlib
    import tempfile

    import deepmd.env

    deepmd.env.SHARED_LIB_DIR = pathlib.Path(tempfile.mkdtemp())
    from deepmd.pt.entrypoints.main import get_trainer
    from deepmd.utils.argcheck import normalize
    from deepmd.utils.compat import update_deepmd_input

    cfg = make_config(case, int(seed), int(steps), Path(workdir))
    Path(outdir).mkdir(parents=True, exist_ok=True)
    (Path(outdir) / "input.json").write_text(json.dumps(cfg, indent=1))
    os.chdir(outdir)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = get_trainer(normalize(update_deepmd_input(cfg, warning=False)))
    t1 = time.perf_counter()
    trainer.run()
    t2 = time.perf_counter()
    ckpt = Path(outdir) / f"model.ckpt-{int(steps)}.pt"
    common.emit({"setup_s": t1 - t0, "run_s": t2 - t1, "s_per_step": (t2 - t1) / int(steps),
                 "cpu_s": time.process_time() - c0, "model": str(ckpt if ckpt.exists() else Path(outdir) / "model.ckpt.pt")})


def worker_mlpot_train(case: str, seed: str, steps: str, outdir: str, workdir: str) -> None:
    import torch

    torch.set_num_threads(1)
    from mlpot.train.trainer import Trainer

    cfg = make_config(case, int(seed), int(steps), Path(workdir))
    Path(outdir).mkdir(parents=True, exist_ok=True)
    (Path(outdir) / "input.json").write_text(json.dumps(cfg, indent=1))
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = Trainer.from_config(cfg, output_dir=outdir, device="cpu", quiet=True, overwrite=True)
    t1 = time.perf_counter()
    trainer.train()
    t2 = time.perf_counter()
    path = trainer.freeze(Path(outdir) / "model.pt")
    common.emit({"setup_s": t1 - t0, "run_s": t2 - t1, "s_per_step": (t2 - t1) / int(steps),
                 "cpu_s": time.process_time() - c0, "model": str(path)})


def worker_mlpot_train_labelbias(case: str, seed: str, steps: str, outdir: str, workdir: str) -> None:
    """mlpot's training with DeePMD-kit's initial energy bias: the per-type least squares of the labels
    alone, without mlpot's refit to the initial network's residual (``absorb_initial_offset``), so
    that the only differences left to DeePMD-kit are the random draws (the control of the comparison)."""
    import mlpot.train.trainer as trainer_mod

    trainer_mod.absorb_initial_offset = lambda model, samples: None
    worker_mlpot_train(case, seed, steps, outdir, workdir)


# ------------------------------------------------------------------------------------ driver
def spread(xs: list[float]) -> dict:
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs), "n": len(xs), "values": xs}


def summarize(runs: dict, cases: list[str], seeds: list[int]) -> dict:
    """Per case and metric: mean ± std (sample) over seeds per code; whether each code's mean lies in
    the other's seed range [min, max] and within mean ± 2 std."""
    out = {}
    for case in cases:
        row = {}
        for metric in ("rmse_e_per_atom", "rmse_f"):
            per = {}
            for code in CODES:
                xs = [runs[f"{code}_{case}_s{s}"]["eval"][metric] for s in seeds
                      if "eval" in runs.get(f"{code}_{case}_s{s}", {}) and metric in runs[f"{code}_{case}_s{s}"]["eval"]]
                if xs:
                    per[code] = spread(xs)
            for x in ("mlpot", "mlpot_labelbias"):
                if x in per and "deepmd" in per:
                    for a, b in ((x, "deepmd"), ("deepmd", x)):
                        m, o = per[a]["mean"], per[b]
                        per[f"{a}_mean_in_{b}_range"] = o["min"] <= m <= o["max"]
                        per[f"{a}_mean_within_2std_of_{b}"] = abs(m - o["mean"]) <= 2 * o["std"]
            row[metric] = per
        out[case] = row
    return out


def report(result: dict) -> str:
    """Markdown table of the summary: per case and code mean ± std (min–max) over seeds."""
    lines = ["| case | steps | metric | DeePMD-kit mean ± std (min–max) | mlpot mean ± std (min–max) | "
             "mlpot mean in DeePMD-kit's range / ±2σ | DeePMD-kit mean in mlpot's range / ±2σ |",
             "|---|---|---|---|---|---|---|"]
    names = {"rmse_e_per_atom": ("energy RMSE/atom", "meV/atom", 1e3), "rmse_f": ("force RMSE", "meV/Å", 1e3)}
    yes = {True: "yes", False: "**no**"}
    for case, row in result["summary"].items():
        for metric, per in row.items():
            if "deepmd" not in per or "mlpot" not in per:
                continue
            label, unit, k = names[metric]
            cell = lambda s: f"{k * s['mean']:.1f} ± {k * s['std']:.1f} ({k * s['min']:.1f}–{k * s['max']:.1f})"  # noqa: E731
            lines.append(
                f"| {case} | {result['steps'][case]} | {label} ({unit}) | {cell(per['deepmd'])} | {cell(per['mlpot'])} | "
                f"{yes[per['mlpot_mean_in_deepmd_range']]} / {yes[per['mlpot_mean_within_2std_of_deepmd']]} | "
                f"{yes[per['deepmd_mean_in_mlpot_range']]} / {yes[per['deepmd_mean_within_2std_of_mlpot']]} |")
    lines.append("")
    for case, row in result["summary"].items():
        for metric, per in row.items():
            label, unit, k = names[metric]
            vals = {c: ", ".join(f"{k * v:.1f}" for v in per[c]["values"]) for c in CODES if c in per}
            line = (f"* {case}, {label} ({unit}), seeds {', '.join(map(str, result['seeds']))}: DeePMD-kit "
                    f"{vals.get('deepmd', '-')}; mlpot {vals.get('mlpot', '-')}")
            if "mlpot_labelbias" in per:
                s = per["mlpot_labelbias"]
                line += (f"; mlpot with DeePMD-kit's initial energy bias {vals['mlpot_labelbias']} (mean "
                         f"{k * s['mean']:.1f} ± {k * s['std']:.1f}; in DeePMD-kit's range / ±2σ: "
                         f"{yes[per['mlpot_labelbias_mean_in_deepmd_range']]} / "
                         f"{yes[per['mlpot_labelbias_mean_within_2std_of_deepmd']]})")
            lines.append(line)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--water-steps", type=int, default=160)
    ap.add_argument("--alloy-steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--cases", nargs="+", default=["water", "alloy"], choices=["water", "alloy"])
    ap.add_argument("--codes", nargs="+", default=["deepmd", "mlpot"], choices=list(CODES),
                    help="mlpot_labelbias: mlpot with DeePMD-kit's initial energy bias (the control)")
    ap.add_argument("--workdir", default=str(Path(common.WORKDIR_DEFAULT) / "se_atten_accuracy"))
    ap.add_argument("--dp-python", default=common.DP_PYTHON_DEFAULT)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/se_atten_accuracy.json"))
    ap.add_argument("--no-cross-check", action="store_true")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once (the two codes side by side); 1 thread each")
    ap.add_argument("--report", action="store_true", help="print the markdown table of --json and exit")
    args = ap.parse_args()
    if args.report:
        print(report(json.loads(Path(args.json).read_text())))
        return
    env = common.thread_env(1)
    env["PYTHONPATH"] = str(ROOT)
    wd = Path(args.workdir)
    (wd / "runs").mkdir(parents=True, exist_ok=True)
    me = str(Path(__file__).resolve())
    steps = {"water": args.water_steps, "alloy": args.alloy_steps}
    alloy_split(wd)
    print(common.uptime_line(), flush=True)

    def stage(name: str, argv: list[str], timeout: float) -> dict:
        path = wd / "runs" / f"{name}.json"
        if path.exists():
            r = json.loads(path.read_text())
            if "error" not in r:
                return r
        t0 = time.time()
        r = common.run_worker(argv, env, timeout, 8.0)
        r["wall_s"] = time.time() - t0
        r["loadavg"] = common.loadavg()
        common.write_json(path, r)
        print(time.strftime("%H:%M:%S"), name, json.dumps(r), flush=True)
        return r

    runs: dict = {}

    def pipeline(code: str, case: str, seed: int) -> None:
        key = f"{code}_{case}_s{seed}"
        out = wd / "train" / key
        py = args.dp_python if code == "deepmd" else sys.executable
        tr = stage(f"train_{key}", [py, me, CODES[code], case, str(seed), str(steps[case]), str(out), str(wd)], 3600)
        runs[key] = {"train": tr, "steps": steps[case]}
        if "error" in tr:
            return
        kind = "deepmd" if code == "deepmd" else "mlpot"
        runs[key]["eval"] = stage(f"eval_{key}", [sys.executable, me, "mlpot-eval", kind, tr["model"], case, str(wd)],
                                  1800)
        done_before = (wd / "runs" / f"xeval_{key}.json").exists()  # e.g. by a driver run for this seed alone
        if code == "deepmd" and (seed == args.seeds[0] or done_before) and not args.no_cross_check:
            runs[key]["eval_deepmd_deeppot"] = stage(
                f"xeval_{key}", [args.dp_python, me, "dp-eval", tr["model"], case, str(wd)], 1800)

    result: dict = {}
    for seed in args.seeds:
        for case in args.cases:
            # the two codes side by side (--jobs 2) or one after the other (--jobs 1)
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                for f in [pool.submit(pipeline, code, case, seed) for code in args.codes]:
                    f.result()
            result = {
                "host": common.host_info(), "threads": 1, "jobs": args.jobs, "steps": steps, "seeds": args.seeds,
                "stop_lr": STOP_LR, "decay_steps": {c: max(1, n // 20) for c, n in steps.items()},
                "alloy_split": f"frames [0, {N_TRAIN_FRAMES}) of each system train, [{N_TRAIN_FRAMES}, 20) validate",
                "runs": runs, "summary": summarize(runs, args.cases, args.seeds),
                "cross_check": {k: {"abs_diff_rmse_e_per_atom": abs(r["eval"]["rmse_e_per_atom"] - x["rmse_e_per_atom"]),
                                    "abs_diff_rmse_f": abs(r["eval"]["rmse_f"] - x["rmse_f"])}
                                for k, r in runs.items() if "rmse_f" in (x := r.get("eval_deepmd_deeppot", {}))},
                "cpu_s_total": sum(r["train"].get("cpu_s", 0) + r.get("eval", {}).get("eval_cpu_s", 0)
                                   for r in runs.values()),
            }
            common.write_json(args.json, result)
    print(json.dumps(result["summary"], indent=1))
    print("wrote", args.json)


if __name__ == "__main__":
    workers = {"dp-train": worker_dp_train, "mlpot-train": worker_mlpot_train,
               "mlpot-train-labelbias": worker_mlpot_train_labelbias, "mlpot-eval": worker_mlpot_eval,
               "dp-eval": worker_dp_eval}
    if len(sys.argv) > 1 and sys.argv[1] in workers:
        workers[sys.argv[1]](*sys.argv[2:])
    else:
        main()
