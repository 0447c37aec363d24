"""Benchmark: training speed (and optionally accuracy) on DeePMD-kit's water se_e2_a example,
``dp --pt train`` vs ``mlpot train``, same input, same steps, same schedule, run one after the other.

Run (from the repository root, mlpot's venv):

    python benchmarks/train_water.py [--steps 60] [--short 10] [--device cpu|cuda] [--threads 2]
        [--accuracy-steps 1000 --accuracy-decay 100] [--workdir benchmarks/.work] [--json out.json]

Input: tests/data/deepmd_input_se_e2_a.json (DeePMD-kit's water example input) (or --input) with training systems
data/water/data_0..2, validation data/water/data_3, float64 (descriptor and fitting), no stat_file.
The learning-rate decay_steps are scaled with the number of steps (5000 per 100,000 in the example),
disp_freq and save_freq = numb_steps, validation numb_btch 1 (so both codes validate at step 1 and at
the end only).

Speed: each code is run twice, ``--short`` and ``--steps`` steps, and
``s/step = (wall(steps) − wall(short)) / (steps − short)`` (start-up, data statistics, the two
validations and the final checkpoint/freeze cancel out). Wall = the whole command.

Accuracy (``--accuracy-steps N``): both codes train N steps with decay_steps ``--accuracy-decay``,
then ``dp --pt test`` / ``mlpot test`` on data_3 (all frames); energy RMSE/atom (eV) and force RMSE
(eV/Å) parsed from their outputs. ``--seeds 1 2 3`` repeats the accuracy run with each seed (set as
``training.seed``, ``descriptor.seed`` and ``fitting_net.seed`` in both codes' input) and reports
mean ± sample standard deviation per code: one run per code says little, the seed-to-seed spread of
the final RMSEs is several per cent. ``--jobs J`` runs J accuracy trainings at once (each with
``--threads`` threads; use J × threads ≤ cores).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

EXAMPLE = common.ROOT / "tests" / "data" / "deepmd_input_se_e2_a.json"


def make_input(src: Path, steps: int, decay_steps: int, disp_freq: int, seed: int | None = None) -> dict:
    cfg = json.loads(src.read_text())
    if seed is not None:
        cfg["model"]["descriptor"]["seed"] = int(seed)
        cfg["model"]["fitting_net"]["seed"] = int(seed)
        cfg["training"]["seed"] = int(seed)
    cfg["model"]["descriptor"]["precision"] = "float64"
    cfg["model"]["fitting_net"]["precision"] = "float64"
    cfg["learning_rate"]["decay_steps"] = int(decay_steps)
    t = cfg["training"]
    t.pop("stat_file", None)
    t["training_data"]["systems"] = [str(common.WATER / f"data_{i}") for i in range(3)]
    t["validation_data"]["systems"] = [str(common.WATER / "data_3")]
    t["validation_data"]["numb_btch"] = 1
    t.update(numb_steps=int(steps), disp_freq=int(disp_freq), save_freq=int(steps))
    return cfg


def scaled_decay(steps: int) -> int:
    return max(1, round(steps * 5000 / 100000))


def run_timed(argv: list[str], cwd: Path, env: dict, log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        r = subprocess.run(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(argv[-6:])}; see {log}")
    return wall


def train_one(code: str, cfg: dict, d: Path, args, env: dict) -> float:
    """Train in a fresh directory ``d``; returns the wall time (s)."""
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "input.json").write_text(json.dumps(cfg, indent=1))
    if code == "deepmd":
        if args.device == "cpu":
            env = env | {"CUDA_VISIBLE_DEVICES": ""}
        argv = common.dp_command(args.dp_python, "--pt", "train", "input.json", "--skip-neighbor-stat")
    else:
        argv = [args.mlpot, "train", "input.json", "-o", ".", "--device", args.device]
    return run_timed(argv, d, env, d / "train.log")


def freeze_and_test(code: str, d: Path, args, env: dict) -> dict:
    test_sys = str(common.WATER / "data_3")
    if code == "deepmd":
        env = env | ({"CUDA_VISIBLE_DEVICES": ""} if args.device == "cpu" else {})
        run_timed(common.dp_command(args.dp_python, "--pt", "freeze", "-o", "frozen_model.pth"), d, env, d / "freeze.log")
        run_timed(common.dp_command(args.dp_python, "--pt", "test", "-m", "frozen_model.pth", "-s", test_sys, "-n", "0"),
                  d, env, d / "test.log")
    else:
        run_timed([args.mlpot, "test", "-m", "model.pt", "-s", test_sys, "-n", "0", "--device", args.device],
                  d, env, d / "test.log")
    text = (d / "test.log").read_text()

    def grab(pattern: str) -> float:
        m = re.findall(pattern, text)
        return float(m[-1]) if m else float("nan")

    return {
        "rmse_e_per_atom": grab(r"Energy RMSE/Natoms\s*:\s*([0-9.eE+-]+)"),
        "rmse_f": grab(r"Force\s+RMSE\s*:\s*([0-9.eE+-]+)"),
        "rmse_v_per_atom": grab(r"Virial RMSE/Natoms\s*:\s*([0-9.eE+-]+)"),
    }


def log_s_per_step(code: str, log: Path) -> float:
    """The code's own figure, for cross-checking: DeePMD-kit's "average training time: X s/batch",
    mlpot's last progress line "R step/s" (mlpot's includes its first, slower step)."""
    text = log.read_text()
    if code == "deepmd":
        m = re.findall(r"average training time:\s*([0-9.eE+-]+)\s*s/batch", text)
        return float(m[-1]) if m else float("nan")
    m = re.findall(r"([0-9.]+) step/s", text)
    return 1.0 / float(m[-1]) if m and float(m[-1]) > 0 else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default=str(EXAMPLE))
    p.add_argument("--steps", type=int, default=50, help="long speed run (steps)")
    p.add_argument("--short", type=int, default=10, help="short speed run (steps), subtracted")
    p.add_argument("--accuracy-steps", type=int, default=0, help="also train this many steps and test on data_3")
    p.add_argument("--accuracy-decay", type=int, default=100, help="decay_steps of the accuracy run")
    p.add_argument("--seeds", type=int, nargs="*", default=None,
                   help="accuracy run once per seed (default: the input's seeds, one run)")
    p.add_argument("--jobs", type=int, default=1, help="accuracy trainings run at once")
    p.add_argument("--skip-speed", action="store_true", help="only the accuracy run")
    p.add_argument("--test-speed-models", action="store_true",
                   help="run dp test / mlpot test on the models of the long speed run (pipeline check)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--dp-python", default=common.DP_PYTHON_DEFAULT)
    p.add_argument("--mlpot", default=str(Path(sys.executable).with_name("mlpot")), help="the mlpot executable")
    p.add_argument("--workdir", default=common.WORKDIR_DEFAULT)
    p.add_argument("--skip", choices=["mlpot", "deepmd"], nargs="*", default=[])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    codes = [c for c in ("deepmd", "mlpot") if c not in args.skip]
    env = common.thread_env(args.threads)
    work = Path(args.workdir) / "train"
    info = common.print_header(args.device, args.threads)
    out: dict = {"info": info, "speed": {}, "accuracy": {}}
    decay = scaled_decay(args.steps)
    print(f"# speed: {args.short} and {args.steps} steps, decay_steps {decay}, batch 1, float64")
    print(f"{'code':>7} {'wall short s':>12} {'wall long s':>11} {'s/step':>8} {'steps/s':>8} {'log s/step':>10}  load before/after")
    for code in [] if args.skip_speed else codes:
        rec = {"load_before": common.loadavg()}
        walls = []
        for n in (args.short, args.steps):
            cfg = make_input(Path(args.input), n, decay, disp_freq=n)
            walls.append(train_one(code, cfg, work / f"{code}_speed_{n}", args, env))
        rec.update(wall_short=walls[0], wall_long=walls[1], s_per_step=(walls[1] - walls[0]) / (args.steps - args.short))
        rec["load_after"] = common.loadavg()
        rec["log_s_per_step"] = log_s_per_step(code, work / f"{code}_speed_{args.steps}" / "train.log")
        out["speed"][code] = rec
        print(f"{code:>7} {walls[0]:>12.1f} {walls[1]:>11.1f} {rec['s_per_step']:>8.3f} {1 / rec['s_per_step']:>8.3f} {rec['log_s_per_step']:>10.3f}"
              f"  {rec['load_before']} / {rec['load_after']}", flush=True)
    if len(codes) == 2 and not args.skip_speed:
        r = out["speed"]["mlpot"]["s_per_step"] / out["speed"]["deepmd"]["s_per_step"]
        out["speed"]["ratio_mlpot_over_deepmd_s_per_step"] = r
        print(f"# s/step ratio mlpot/DeePMD: {r:.2f}")
    if args.test_speed_models and not args.skip_speed:
        print(f"# test on data_3 of the {args.steps}-step speed-run models (pipeline check, not an accuracy figure)")
        for code in codes:
            res = freeze_and_test(code, work / f"{code}_speed_{args.steps}", args, env)
            out["speed"][code]["test"] = res
            print(f"{code:>7} E RMSE/atom {res['rmse_e_per_atom']:.3e} eV  F RMSE {res['rmse_f']:.3e} eV/Å")
    if args.accuracy_steps > 0:
        n = args.accuracy_steps
        seeds = args.seeds or [None]
        print(f"# accuracy: {n} steps, decay_steps {args.accuracy_decay}, test on data_3 (all frames), "
              f"seeds {seeds}, {args.jobs} at once")

        def one(job: tuple[str, int | None]) -> tuple[str, int | None, dict]:
            code, seed = job
            cfg = make_input(Path(args.input), n, args.accuracy_decay, disp_freq=max(1, n // 10), seed=seed)
            d = work / (f"{code}_acc_{n}" + ("" if seed is None else f"_seed{seed}"))
            wall = train_one(code, cfg, d, args, env)
            return code, seed, freeze_and_test(code, d, args, env) | {"wall_s": wall, "seed": seed}

        jobs = [(code, seed) for seed in seeds for code in codes]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for code, seed, res in pool.map(one, jobs):
                out["accuracy"].setdefault(code, {"runs": []})["runs"].append(res)
                print(f"{code:>7} seed {seed}: E RMSE/atom {res['rmse_e_per_atom']:.3e} eV  "
                      f"F RMSE {res['rmse_f']:.3e} eV/Å  ({res['wall_s']:.0f} s)", flush=True)
        for code in codes:
            rec = out["accuracy"][code]
            for key in ("rmse_e_per_atom", "rmse_f"):
                vals = [r[key] for r in rec["runs"]]
                rec[key] = statistics.fmean(vals)
                rec[key + "_std"] = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            print(f"{code:>7} mean over {len(rec['runs'])}: E RMSE/atom {rec['rmse_e_per_atom']:.3e} "
                  f"± {rec['rmse_e_per_atom_std']:.1e} eV  F RMSE {rec['rmse_f']:.3e} ± {rec['rmse_f_std']:.1e} eV/Å")
    print(f"# {common.uptime_line()}")
    if args.json:
        common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
