"""Benchmark: energy + forces + virial of the water se_e2_a model, mlpot vs DeePMD-kit (PyTorch backend).

Run (from the repository root, mlpot's venv):

    python benchmarks/model_eval.py [--reps 1 2 4 8] [--device cpu|cuda] [--threads 2]
        [--dp-python benchmarks/.dpbuild/env/bin/python] [--workdir benchmarks/.work] [--json out.json]

Model: DeePMD-kit's water example (se_e2_a, rcut 6.0, rcut_smth 0.5, sel [46, 92], neuron
[25, 50, 100], axis_neuron 16, type_one_side, fitting [240, 240, 240] resnet_dt, float64).
Speed does not depend on the weights: mlpot uses a random initialisation + ``compute_stats`` on 5
frames of data_0; DeePMD-kit uses the same hyperparameters trained for 1 step (``dp --pt train``
with numb_steps 1, then ``dp --pt freeze``, in ``--workdir/dp_eval``; made once, then reused).

Systems: frame 0 of data/water/data_0 (192 atoms, 12.44 Å box) repeated reps³ times with ASE.
Each (code, size) runs in a fresh subprocess; reported: median µs per atom-step over several calls
after warm-up, and peak memory (CPU: VmHWM of the worker process, i.e. whole-process resident
high-water mark incl. Python/torch ≈ 0.3-0.5 GiB; CUDA: torch.cuda.max_memory_allocated).

mlpot rows: ``mlpot.model.evaluate`` (including the neighbor search), the neighbor search alone
(``mlpot.neighbors.neighbor_list``), and evaluate with a precomputed pair list (model only).
DeePMD-kit: ``deepmd.infer.DeepPot.eval(coords, cells, atom_types)`` (includes its neighbor search).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (numpy-only helpers, importable in DeePMD-kit's venv too)


def timing_plan(natoms: int) -> dict:
    """Calls per measurement: fewer for big boxes (a 12,288-atom call takes ~1 min on a loaded 2-core CPU)."""
    if natoms <= 2000:
        return dict(warmup=2, min_repeat=7, max_repeat=30, budget_s=10.0)
    if natoms <= 20000:
        return dict(warmup=1, min_repeat=3, max_repeat=3, budget_s=0.0)
    return dict(warmup=1, min_repeat=2, max_repeat=5, budget_s=0.0)


# -------------------------------------------------------------------------------------- workers
def worker_mlpot(box: str, device: str) -> None:
    import numpy as np
    import torch

    from mlpot.data.io import read_deepmd
    from mlpot.model import EnergyModel, evaluate
    from mlpot.neighbors import neighbor_list

    data = np.load(box)
    natoms = int(data["types"].shape[0])
    model = EnergyModel.from_config(common.WATER_MODEL, device=device)
    model.compute_stats([read_deepmd(common.WATER / "data_0").subset(np.arange(5))])
    model.eval()
    dev = torch.device(device)
    pos = torch.as_tensor(data["coord"], dtype=torch.float64, device=dev)
    cell = torch.as_tensor(data["cell"], dtype=torch.float64, device=dev).reshape(1, 3, 3)
    types = torch.as_tensor(data["types"], device=dev)
    pbc = torch.ones(1, 3, dtype=torch.bool, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    plan = timing_plan(natoms)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def nl_only():
        return neighbor_list(pos, cell, pbc, model.rcut)

    def full():
        return evaluate(model, pos, types, cell, pbc, outputs=("energy", "forces", "virial"))

    nl = nl_only()

    def model_only():
        return evaluate(model, pos, types, cell, pbc, nl=nl, outputs=("energy", "forces", "virial"))

    # interleaved (full, NL, model-only) rounds, so that a changing load on a shared machine hits all three alike
    t_full, t_nl, t_model = common.time_interleaved([full, nl_only, model_only], sync=sync, **plan)
    res = full()
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else common.peak_rss_gib()
    common.emit(
        {
            "code": "mlpot",
            "natoms": natoms,
            "npairs": int(nl.centers.shape[0]),
            "threads": torch.get_num_threads(),
            "t_full": t_full,
            "t_nl": t_nl,
            "t_model": t_model,
            "peak_gib": peak,
            "energy_per_atom": float(res["energy"][0]) / natoms,
        }
    )


def worker_deepmd(box: str, device: str, model_file: str) -> None:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # DeePMD-kit picks CUDA whenever it is visible
    exec(common.DP_PRELUDE)  # the PyPI wheel's custom-op library mismatches torch 2.13 (see common.py)
    import numpy as np
    import torch
    from deepmd.infer import DeepPot

    data = np.load(box)
    natoms = int(data["types"].shape[0])
    dp = DeepPot(model_file)
    coords = data["coord"].reshape(1, -1)
    cells = data["cell"].reshape(1, 9)
    types = data["types"].tolist()
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def full():
        return dp.eval(coords, cells, types)

    t_full = common.time_calls(full, sync=torch.cuda.synchronize if cuda else None, **timing_plan(natoms))
    e, f, v = full()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else common.peak_rss_gib()
    common.emit(
        {
            "code": "deepmd",
            "natoms": natoms,
            "threads": torch.get_num_threads(),
            "t_full": t_full,
            "peak_gib": peak,
            "energy_per_atom": float(np.ravel(e)[0]) / natoms,
        }
    )


# ------------------------------------------------------------------------------- DeePMD model
def ensure_dp_model(workdir: Path, dp_python: str, threads: int) -> Path:
    """Train the DeePMD-kit model for 1 step and freeze it (once; reused afterwards)."""
    d = workdir / "dp_eval"
    frozen = d / "frozen_model.pth"
    if frozen.is_file():
        return frozen
    d.mkdir(parents=True, exist_ok=True)
    with open(common.ROOT / "tests" / "data" / "deepmd_input_se_e2_a.json") as fh:
        cfg = json.load(fh)
    cfg["model"] = json.loads(json.dumps(common.WATER_MODEL)) | {"data_stat_nbatch": 2}
    t = cfg["training"]
    t.pop("stat_file", None)
    t["training_data"]["systems"] = [str(common.WATER / "data_0")]
    t["validation_data"]["systems"] = [str(common.WATER / "data_3")]
    t.update(numb_steps=1, disp_freq=1, save_freq=1)
    (d / "input.json").write_text(json.dumps(cfg, indent=1))
    env = common.thread_env(threads)
    for args in (["--pt", "train", "input.json"], ["--pt", "freeze", "-o", "frozen_model.pth"]):
        r = subprocess.run(common.dp_command(dp_python, *args), cwd=d, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"dp {' '.join(args)} failed in {d}:\n{r.stderr[-2000:]}")
    return frozen


# ------------------------------------------------------------------------------------------ main
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, nargs="+", default=[1, 2, 4, 8], help="box replications per direction")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (both codes)")
    p.add_argument("--dp-python", default=common.DP_PYTHON_DEFAULT)
    p.add_argument("--dp-model", default=None, help="frozen DeePMD-kit model (default: make one in --workdir)")
    p.add_argument("--workdir", default=common.WORKDIR_DEFAULT)
    p.add_argument("--skip", choices=["mlpot", "deepmd"], nargs="*", default=[])
    p.add_argument("--mem-limit", type=float, default=8.0, help="GiB; a worker above it is killed (reported OOM)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per worker")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--worker", choices=["mlpot", "deepmd"], help=argparse.SUPPRESS)
    p.add_argument("--box", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.device is None:
        args.device = common.default_device()
    if args.worker == "mlpot":
        worker_mlpot(args.box, args.device)
        return 0
    if args.worker == "deepmd":
        worker_deepmd(args.box, args.device, args.dp_model)
        return 0

    info = common.print_header(args.device, args.threads)
    print(f"# {info['uptime']}")
    dp_model = None
    if "deepmd" not in args.skip:
        dp_model = Path(args.dp_model) if args.dp_model else ensure_dp_model(Path(args.workdir), args.dp_python, args.threads)
    env = common.thread_env(args.threads)
    tmp = common.tmpdir()
    rows = []
    hdr = (
        f"{'atoms':>7} {'pairs':>10} | {'mlpot us/atom':>13} {'NL us/atom':>10} {'model us/atom':>13} {'mlpot GiB':>9} |"
        f" {'DeePMD us/atom':>14} {'DeePMD GiB':>10} | {'time ratio':>10} {'mem ratio':>9}"
    )
    print(hdr)
    me = str(Path(__file__).resolve())
    for reps in args.reps:
        box = tmp / f"box{reps}.npz"
        natoms = common.write_box(reps, box)["natoms"]
        row = {"reps": reps, "natoms": natoms, "load_before": common.loadavg()}
        if "mlpot" not in args.skip:
            row["mlpot"] = common.run_worker(
                [sys.executable, me, "--worker", "mlpot", "--box", str(box), "--device", args.device],
                env, args.timeout, args.mem_limit,
            )
        if dp_model is not None:
            row["deepmd"] = common.run_worker(
                [args.dp_python, me, "--worker", "deepmd", "--box", str(box), "--device", args.device,
                 "--dp-model", str(dp_model)],
                env, args.timeout, args.mem_limit,
            )
        row["load_after"] = common.loadavg()
        m, d = row.get("mlpot", {}), row.get("deepmd", {})
        us = lambda r, k: common.median(r[k]) * 1e6 / natoms if k in r else float("nan")  # noqa: E731
        m_us, d_us = us(m, "t_full"), us(d, "t_full")
        row["summary"] = {
            "mlpot_us_per_atom": m_us,
            "mlpot_nl_us_per_atom": us(m, "t_nl"),
            "mlpot_model_us_per_atom": us(m, "t_model"),
            "mlpot_peak_gib": m.get("peak_gib"),
            "deepmd_us_per_atom": d_us,
            "deepmd_peak_gib": d.get("peak_gib"),
            "time_ratio": m_us / d_us if d_us == d_us else float("nan"),
            "mem_ratio": (m["peak_gib"] / d["peak_gib"]) if "peak_gib" in m and "peak_gib" in d else float("nan"),
        }
        s = row["summary"]
        print(
            f"{natoms:>7} {common.fmt(m.get('npairs'), 'd'):>10} | {common.fmt(m_us):>13} {common.fmt(s['mlpot_nl_us_per_atom']):>10}"
            f" {common.fmt(s['mlpot_model_us_per_atom']):>13} {common.fmt(s['mlpot_peak_gib'], '.2f'):>9} |"
            f" {common.fmt(d_us):>14} {common.fmt(s['deepmd_peak_gib'], '.2f'):>10} |"
            f" {common.fmt(s['time_ratio'], '.2f'):>10} {common.fmt(s['mem_ratio'], '.2f'):>9}",
            flush=True,
        )
        for name in ("mlpot", "deepmd"):
            if "error" in row.get(name, {}):
                print(f"        {name}: {row[name]['error']}", flush=True)
        rows.append(row)
    print(f"# {common.uptime_line()}")
    if args.json:
        common.write_json(args.json, {"info": info, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
