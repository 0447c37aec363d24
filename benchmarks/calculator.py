"""Benchmark: one ASE calculator call (energy + forces + stress), mlpot.DeepPotCalculator vs
deepmd.calculator.DP, on replicated water boxes.

Run (from the repository root, mlpot's venv):

    python benchmarks/calculator.py [--reps 1 4] [--device cpu|cuda] [--threads 2] [--json out.json]

Same model and boxes as benchmarks/model_eval.py (water se_e2_a example hyperparameters, float64;
mlpot random init + compute_stats, DeePMD-kit trained 1 step and frozen in --workdir/dp_eval).
Each (code, size) runs in a fresh subprocess (DeePMD-kit in its own venv). A call is
``calc.calculate(atoms, ["energy", "forces", "stress"], all_changes)`` (no result caching);
reported: the median wall time per call after warm-up.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from model_eval import ensure_dp_model, timing_plan  # noqa: E402  (numpy-only at import time)


def _atoms(box: str):
    import numpy as np
    from ase import Atoms

    data = np.load(box)
    _, _, _, type_map = common.water_frame0()
    return Atoms(symbols=[type_map[t] for t in data["types"]], positions=data["coord"], cell=data["cell"], pbc=True)


def _time(calc, atoms, sync=None) -> tuple[list[float], float]:
    from ase.calculators.calculator import all_changes

    def call():
        calc.calculate(atoms, ["energy", "forces", "stress"], all_changes)

    times = common.time_calls(call, sync=sync, **timing_plan(len(atoms)))
    return times, float(calc.results["energy"])


def worker_mlpot(box: str, device: str) -> None:
    import numpy as np
    import torch

    from mlpot import DeepPotCalculator
    from mlpot.data.io import read_deepmd
    from mlpot.model import EnergyModel

    model = EnergyModel.from_config(common.WATER_MODEL, device=device)
    model.compute_stats([read_deepmd(common.WATER / "data_0").subset(np.arange(5))])
    calc = DeepPotCalculator(model, device=device)
    atoms = _atoms(box)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    times, e = _time(calc, atoms, sync)
    peak = torch.cuda.max_memory_allocated() / 2**30 if sync else common.peak_rss_gib()
    common.emit({"code": "mlpot", "natoms": len(atoms), "t_call": times, "energy": e, "peak_gib": peak,
                 "threads": torch.get_num_threads()})


def worker_deepmd(box: str, device: str, model_file: str) -> None:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    exec(common.DP_PRELUDE)  # the PyPI wheel's custom-op library mismatches torch 2.13 (see common.py)
    import torch
    from deepmd.calculator import DP

    calc = DP(model=model_file)
    atoms = _atoms(box)
    cuda = torch.cuda.is_available() and device != "cpu"
    times, e = _time(calc, atoms, torch.cuda.synchronize if cuda else None)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else common.peak_rss_gib()
    common.emit({"code": "deepmd", "natoms": len(atoms), "t_call": times, "energy": e, "peak_gib": peak,
                 "threads": torch.get_num_threads()})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, nargs="+", default=[1, 4], help="box replications (1: 192, 4: 12,288 atoms)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--dp-python", default=common.DP_PYTHON_DEFAULT)
    p.add_argument("--dp-model", default=None)
    p.add_argument("--workdir", default=common.WORKDIR_DEFAULT)
    p.add_argument("--skip", choices=["mlpot", "deepmd"], nargs="*", default=[])
    p.add_argument("--mem-limit", type=float, default=8.0)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--json", default=None)
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
    me = str(Path(__file__).resolve())
    print(f"{'atoms':>7} | {'mlpot s/call':>12} {'mlpot GiB':>9} | {'DeePMD s/call':>13} {'DeePMD GiB':>10} | {'ratio':>6}")
    rows = []
    for reps in args.reps:
        box = tmp / f"box{reps}.npz"
        natoms = common.write_box(reps, box)["natoms"]
        row = {"reps": reps, "natoms": natoms, "load_before": common.loadavg()}
        if "mlpot" not in args.skip:
            row["mlpot"] = common.run_worker([sys.executable, me, "--worker", "mlpot", "--box", str(box),
                                              "--device", args.device], env, args.timeout, args.mem_limit)
        if dp_model is not None:
            row["deepmd"] = common.run_worker([args.dp_python, me, "--worker", "deepmd", "--box", str(box),
                                               "--device", args.device, "--dp-model", str(dp_model)],
                                              env, args.timeout, args.mem_limit)
        row["load_after"] = common.loadavg()
        m, d = row.get("mlpot", {}), row.get("deepmd", {})
        mt = common.median(m["t_call"]) if "t_call" in m else float("nan")
        dt = common.median(d["t_call"]) if "t_call" in d else float("nan")
        row["summary"] = {"mlpot_s_per_call": mt, "deepmd_s_per_call": dt, "ratio": mt / dt if dt == dt else float("nan")}
        print(f"{natoms:>7} | {common.fmt(mt, '.3f'):>12} {common.fmt(m.get('peak_gib'), '.2f'):>9} |"
              f" {common.fmt(dt, '.3f'):>13} {common.fmt(d.get('peak_gib'), '.2f'):>10} |"
              f" {common.fmt(row['summary']['ratio'], '.2f'):>6}", flush=True)
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
