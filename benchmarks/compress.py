"""Benchmark: compressed vs uncompressed water se_e2_a, mlpot (numba, eager and torch.compile tables) and
DeePMD-kit (PyTorch backend, ``dp --pt compress``), side by side in one run.

Run (from the repository root, mlpot's venv):

    python benchmarks/compress.py [--reps 2 4] [--precision float64 float32] [--threads 2]
        [--dp-python benchmarks/.dpbuild/env/bin/python] [--workdir benchmarks/.work] [--json out.json]

Model: DeePMD-kit's water example (``common.WATER_MODEL``: se_e2_a, rcut 6, sel [46, 92], neuron
[25, 50, 100], axis 16, type_one_side, fitting [240, 240, 240]) in the given precision. mlpot: random
initialisation + ``compute_stats`` on 5 frames of data_0, compressed with min_nbor_dist 0.8854 Å
(the bundled water's), step 0.01, extrapolate 5. DeePMD-kit: the same hyperparameters trained for 1
step, ``dp --pt freeze``, ``dp --pt compress -t input.json`` (made once in ``--workdir``). DeePMD-kit
must be built against the same torch (benchmarks/README.md, "DeePMD-kit with its custom ops"):
its compressed model calls ``torch.ops.deepmd.tabulate_fusion_se_a``.

Variants (each (variant, size, precision) in a fresh subprocess): mlpot ``plain`` (embedding nets),
``numba`` (tables, the numba kernels: the default on CPU; the first call includes loading them from
numba's cache, or compiling them once), ``eager`` (tables, embedding_bag evaluation), ``compile``
(tables, torch.compile kernels; the compile time is reported apart); DeePMD-kit ``plain`` and
``compressed``. Reported: median µs per atom-step
of energy + forces + virial (neighbor search included), peak RSS (VmHWM) and its increase over the
process after model build, per atom.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

R_MIN = 0.8854  # Å, shortest pair distance of the bundled water (mlpot neighbor-stat)
DP_PYTHON = common.DP_PYTHON_DEFAULT


def timing_plan(natoms: int) -> dict:
    """Calls after the first (timed apart): few, the 2-core machine is shared and a 12,288-atom call
    of the uncompressed model takes ~10-100 s there."""
    if natoms <= 2000:
        return dict(warmup=1, min_repeat=3, max_repeat=10, budget_s=5.0)
    return dict(warmup=0, min_repeat=2, max_repeat=2, budget_s=0.0)


def model_config(precision: str) -> dict:
    cfg = json.loads(json.dumps(common.WATER_MODEL))
    cfg["descriptor"]["precision"] = precision
    cfg["fitting_net"]["precision"] = precision
    return cfg


# -------------------------------------------------------------------------------------- workers
def worker_mlpot(box: str, variant: str, precision: str) -> None:
    import numpy as np
    import torch

    from mlpot.data.io import read_deepmd
    from mlpot.descriptors import tabulate as tab
    from mlpot.model import EnergyModel, evaluate

    data = np.load(box)
    natoms = int(data["types"].shape[0])
    model = EnergyModel.from_config(model_config(precision), device="cpu")
    model.compute_stats([read_deepmd(common.WATER / "data_0").subset(np.arange(5))])
    model.eval()
    t_compile = 0.0
    if variant != "plain":
        model.compress(R_MIN)
        tab.set_backend(variant)
    pos = torch.as_tensor(data["coord"], dtype=torch.float64)
    cell = torch.as_tensor(data["cell"], dtype=torch.float64).reshape(1, 3, 3)
    types = torch.as_tensor(data["types"])
    pbc = torch.ones(1, 3, dtype=torch.bool)

    def full():
        return evaluate(model, pos, types, cell, pbc, outputs=("energy", "forces", "virial"))

    base = common.current_rss_gib()
    t0 = time.perf_counter()
    res = full()  # the first call (compiles the kernels in the compile variant)
    t_first = time.perf_counter() - t0
    if variant == "compile":
        t_compile = t_first
        if tab.active_backend(torch.device("cpu")) != "compile":
            common.emit({"error": "torch.compile failed; fell back to eager"})
            return
    if variant == "numba" and not model.descriptor.uses_numba_tables():
        common.emit({"error": "numba kernels not usable here; fell back to eager"})
        return
    cpu: list[float] = []

    def timed():
        c0 = time.process_time()
        full()
        cpu.append(time.process_time() - c0)

    times = common.time_calls(timed, **timing_plan(natoms))
    cpu = cpu[-len(times):]  # the timed calls (not the warm-up ones)
    peak = common.peak_rss_gib()
    common.emit({
        "code": "mlpot", "variant": variant, "precision": precision, "natoms": natoms,
        "threads": torch.get_num_threads(), "t_full": times, "t_cpu": cpu, "t_first": t_first, "t_compile": t_compile,
        "peak_gib": peak, "delta_kib_per_atom": (peak - base) * 2**20 / natoms,
        "energy_per_atom": float(res["energy"][0]) / natoms,
    })


def worker_deepmd(box: str, model_file: str, variant: str, precision: str) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import numpy as np
    import torch
    from deepmd.infer import DeepPot

    data = np.load(box)
    natoms = int(data["types"].shape[0])
    dp = DeepPot(model_file)
    coords = data["coord"].reshape(1, -1)
    cells = data["cell"].reshape(1, 9)
    types = data["types"].tolist()
    base = common.current_rss_gib()

    def full():
        return dp.eval(coords, cells, types)

    t0 = time.perf_counter()
    e, f, v = full()
    t_first = time.perf_counter() - t0
    times = common.time_calls(full, **timing_plan(natoms))
    peak = common.peak_rss_gib()
    common.emit({
        "code": "deepmd", "variant": variant, "precision": precision, "natoms": natoms,
        "threads": torch.get_num_threads(), "t_full": times, "t_first": t_first, "peak_gib": peak,
        "delta_kib_per_atom": (peak - base) * 2**20 / natoms, "energy_per_atom": float(np.ravel(e)[0]) / natoms,
    })


# ------------------------------------------------------------------------------- DeePMD models
def dp_env(threads: int) -> dict[str, str]:
    """Environment of DeePMD-kit's processes: the threads, and this venv's lib/ on LD_LIBRARY_PATH (the
    DeePMD-kit build sees this venv's packages, mpi4py among them, whose MPI library lives there)."""
    return common.thread_env(threads)


def ensure_dp_models(workdir: Path, dp_python: str, threads: int, precision: str) -> tuple[Path, Path]:
    """(frozen, compressed) DeePMD-kit models: 1 training step, freeze, compress (made once)."""
    d = workdir / f"dp_compress_{precision}"
    frozen, compressed = d / "frozen_model.pth", d / "compressed_model.pth"
    if frozen.is_file() and compressed.is_file():
        return frozen, compressed
    d.mkdir(parents=True, exist_ok=True)
    with open(common.WATER / "deepmd_input_se_e2_a.json") as fh:
        cfg = json.load(fh)
    cfg["model"] = model_config(precision) | {"data_stat_nbatch": 2}
    t = cfg["training"]
    t.pop("stat_file", None)
    t["training_data"]["systems"] = [str(common.WATER / "data_0")]
    t["validation_data"]["systems"] = [str(common.WATER / "data_3")]
    t.update(numb_steps=1, disp_freq=1, save_freq=1)
    (d / "input.json").write_text(json.dumps(cfg, indent=1))
    env = dp_env(threads)
    dp = [dp_python, "-c", "import sys; from deepmd.main import main; sys.argv[0] = 'dp'; sys.exit(main())"]
    for args in (["--pt", "train", "input.json"], ["--pt", "freeze", "-o", frozen.name],
                 ["--pt", "compress", "-i", frozen.name, "-o", compressed.name, "-t", "input.json"]):
        r = subprocess.run(dp + args, cwd=d, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"dp {' '.join(args)} failed in {d}:\n{r.stderr[-2000:]}")
    return frozen, compressed


# ------------------------------------------------------------------------------------------ main
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, nargs="+", default=[2, 4], help="box replications per direction (2: 1,536 atoms, 4: 12,288)")
    p.add_argument("--precision", nargs="+", default=["float64", "float32"])
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--baseline", default=None, help="another mlpot checkout (e.g. main): its variants run as code 'base', interleaved")
    p.add_argument("--rounds", type=int, default=1, help="repeat every (size, precision, threads) block this often (ABAB)")
    p.add_argument("--variants", nargs="+", default=["mlpot:plain", "mlpot:numba", "mlpot:eager", "mlpot:compile", "deepmd:plain", "deepmd:compressed"])
    p.add_argument("--dp-python", default=DP_PYTHON)
    p.add_argument("--workdir", default=common.WORKDIR_DEFAULT)
    p.add_argument("--mem-limit", type=float, default=10.0, help="GiB; a worker above it is killed (reported)")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", choices=["mlpot", "deepmd"], help=argparse.SUPPRESS)
    p.add_argument("--box", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--prec", help=argparse.SUPPRESS)
    p.add_argument("--dp-model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker == "mlpot":
        worker_mlpot(args.box, args.variant, args.prec)
        return 0
    if args.worker == "deepmd":
        worker_deepmd(args.box, args.dp_model, args.variant, args.prec)
        return 0

    info = common.print_header("cpu", args.threads[0])
    info["baseline"] = args.baseline
    info["dp_python"] = args.dp_python
    print(f"# {info['uptime']}")
    tmp = common.tmpdir()
    me = str(Path(__file__).resolve())
    dp_models = {}
    if any(v.startswith("deepmd") for v in args.variants):
        for prec in args.precision:
            try:
                dp_models[prec] = ensure_dp_models(Path(args.workdir), args.dp_python, args.threads[0], prec)
            except SystemExit as exc:
                print(f"# DeePMD-kit models ({prec}) not made: {str(exc)[:300]}")
    rows = []
    print(f"{'atoms':>7} {'prec':>8} {'thr':>3} {'variant':>18} | {'us/atom-step':>12} {'cpu us/atom':>11} {'first call s':>12} {'peak GiB':>8} {'KiB/atom':>8}")
    specs = list(args.variants)
    if args.baseline:  # before (baseline) and after (this checkout), alternating
        specs = [x for v in args.variants for x in ([v, "base:" + v.split(":")[1]] if v.startswith("mlpot:") else [v])]
    for reps in args.reps:
        box = tmp / f"box{reps}.npz"
        natoms = common.write_box(reps, box)["natoms"]
        for prec in args.precision:
            for threads in args.threads:
                env = common.thread_env(threads)
                for rnd in range(args.rounds):
                    for spec in specs:
                        code, variant = spec.split(":")
                        if code in ("mlpot", "base"):  # this checkout's mlpot (or the baseline's), not the venv's
                            tree = str(common.ROOT) if code == "mlpot" else str(Path(args.baseline).resolve())
                            wenv = dict(env, PYTHONPATH=tree + os.pathsep + env.get("PYTHONPATH", ""))
                            argv = [sys.executable, me, "--worker", "mlpot", "--box", str(box), "--variant", variant, "--prec", prec]
                        else:
                            if prec not in dp_models:
                                continue
                            model = dp_models[prec][0 if variant == "plain" else 1]
                            wenv = dp_env(threads)
                            argv = [args.dp_python, me, "--worker", "deepmd", "--box", str(box), "--variant", variant,
                                    "--prec", prec, "--dp-model", str(model)]
                        load0 = common.loadavg()
                        res = common.run_worker(argv, wenv, args.timeout, args.mem_limit)
                        res.update(natoms=natoms, precision=prec, code=code, variant=variant, threads=threads, round=rnd,
                                   load_before=load0, load_after=common.loadavg())
                        if "t_full" in res:
                            res["us_per_atom"] = common.median(res["t_full"]) * 1e6 / natoms
                        if res.get("t_cpu"):
                            res["cpu_us_per_atom"] = common.median(res["t_cpu"]) * 1e6 / natoms
                        rows.append(res)
                        print(f"{natoms:>7} {prec:>8} {threads:>3} {code + ':' + variant:>18} | {common.fmt(res.get('us_per_atom')):>12}"
                              f" {common.fmt(res.get('cpu_us_per_atom')):>11}"
                              f" {common.fmt(res.get('t_first'), '.1f'):>12} {common.fmt(res.get('peak_gib'), '.2f'):>8}"
                              f" {common.fmt(res.get('delta_kib_per_atom'), '.1f'):>8}"
                              + (f"   {res['error']}" if "error" in res else ""), flush=True)
    # ratios within each (size, precision, threads), medians over the rounds
    print("# ratios (us/atom-step, median over rounds): plain/compressed, after/before (base), mlpot compressed / DeePMD-kit compressed")

    def pick(natoms, prec, threads, code, variant, key="us_per_atom"):
        vals = [r.get(key) for r in rows if r["natoms"] == natoms and r["precision"] == prec and r["threads"] == threads
                and r["code"] == code and r["variant"] == variant and r.get(key)]
        return common.median(vals) if vals else None

    for reps in args.reps:
        na = 192 * reps**3
        for prec in args.precision:
            for threads in args.threads:
                mp, mn, me_, mc = (pick(na, prec, threads, "mlpot", v) for v in ("plain", "numba", "eager", "compile"))
                bp, bn, be, bc = (pick(na, prec, threads, "base", v) for v in ("plain", "numba", "eager", "compile"))
                dpc = pick(na, prec, threads, "deepmd", "compressed")
                best = min([v for v in (mn, me_, mc) if v] or [float("nan")])
                r = lambda a, b: common.fmt(a / b if a and b else None, ".2f")  # noqa: E731
                print(f"# {na} atoms {prec} {threads} thr: plain/numba {r(mp, mn)}, plain/best-compressed {r(mp, best)};"
                      f" after/before plain {r(mp, bp)}, numba {r(mn, bn)}, eager {r(me_, be)}, compile {r(mc, bc)};"
                      f" numba / DeePMD compressed {r(mn, dpc)}, best-compressed / DeePMD compressed {r(best, dpc)}")
    print(f"# {common.uptime_line()}")
    if args.json:
        common.write_json(args.json, {"info": info, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
