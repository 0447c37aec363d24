"""Speed regression check: the same three workloads on two source trees, side by side in one run.

    python benchmarks/regression.py --old /path/to/old/checkout [--new .] [--repeats 3] [--threads 2]
        [--json benchmarks/results/regression.json]

Both trees run with this interpreter (same torch, same machine, same moment); each measurement is a
fresh subprocess with ``PYTHONPATH=<tree>``, and the trees alternate (old, new, old, new, ...) so that
machine-load drift hits both alike. Only command lines and files are used (``python -m mlpot train``,
``python -m mlpot md``, a frozen model file), so the script works across API changes.

Workloads (DeePMD-kit's water example hyperparameters: se_e2_a, rcut 6 Å, sel [46, 92], embedding
[25, 50, 100], axis 16, fitting [240, 240, 240], float64):

* ``eval``: ``mlpot.model.evaluate`` (energy, forces, virial, incl. the neighbor search) on 1,536 water
  atoms, median of several calls, µs/atom;
* ``train``: s/step of ``mlpot train`` on data/water/data_0..2 (batch 1), from the wall time of an
  N2-step run minus an N1-step run (start-up cancels);
* ``md``: s/step of ``mlpot md`` NVT (CSVR) on the 192-atom water box replicated 2×2×2 (1,536 atoms),
  from an M2-step run minus an M1-step run.

The model is trained for one step by the OLD tree (the model file format is shared by both).
Units: µs/atom (eval), s/step (train, md). Ratio = new / old (< 1: the new tree is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WATER = ROOT / "data" / "water"
INPUT = ROOT / "tests" / "data" / "deepmd_input_se_e2_a.json"

EVAL_SNIPPET = r"""
import sys, time, statistics, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from ase.io import read
from mlpot.export import load_model
from mlpot.model import evaluate
model = load_model(sys.argv[1], device="cpu")
atoms = read(sys.argv[2])
tm = list(model.type_map)
types = torch.tensor([tm.index(s) for s in atoms.get_chemical_symbols()])
pos = torch.tensor(atoms.positions, dtype=torch.float64)
cell = torch.tensor(np.asarray(atoms.cell), dtype=torch.float64)
pbc = torch.tensor([True, True, True])
for _ in range(2):
    evaluate(model, pos, types, cell, pbc)
clock = time.process_time if len(sys.argv) > 4 and sys.argv[4] == "cpu" else time.perf_counter
ts = []
for _ in range(7):
    t0 = clock(); out = evaluate(model, pos, types, cell, pbc); ts.append(clock() - t0)
print("RESULT", statistics.median(ts) / len(atoms) * 1e6)
"""


#: set by ``--callgrind``: run every command under valgrind's callgrind and measure executed
#: instructions instead of wall seconds (repeatable whatever else the machine is doing)
CALLGRIND: dict[str, Any] = {"on": False, "n": 0}
#: set by ``--cpu-time``: measure the child's CPU seconds (user + system, from the kernel's rusage)
#: instead of wall seconds: time slices lost to other processes on a shared machine do not count
CPU_TIME: dict[str, bool] = {"on": False}
#: minor page faults of the last child run (kernel rusage): deterministic evidence of allocator churn
LAST_FAULTS: dict[str, int] = {"minflt": 0}


def run(tree: Path, args: list[str], threads: int, cwd: Path, timeout: float = 1800.0) -> tuple[float, str]:
    """Run ``python args...`` with ``tree`` first on the path; (wall seconds, stdout), or with
    ``--callgrind`` (instructions executed, stdout)."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, *args]
    out_file = None
    if CALLGRIND["on"]:
        CALLGRIND["n"] += 1
        out_file = cwd / f"callgrind.{CALLGRIND['n']}.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *cmd]
        timeout *= 100
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_FAULTS["minflt"] = ru1.ru_minflt - ru0.ru_minflt
    if CPU_TIME["on"]:
        wall = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if r.returncode != 0:
        raise RuntimeError(f"{tree}: {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    if out_file is not None:
        for line in out_file.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return float(line.split()[1]), r.stdout
        raise RuntimeError(f"{out_file}: no callgrind summary line")
    return wall, r.stdout


def train_input(work: Path, steps: int, name: str) -> Path:
    cfg = json.loads(INPUT.read_text())
    cfg["training"]["training_data"]["systems"] = [str(WATER / f"data_{k}") for k in range(3)]
    cfg["training"]["training_data"]["batch_size"] = 1
    cfg["training"].pop("validation_data", None)
    cfg["training"].update(numb_steps=steps, disp_freq=max(steps, 1), save_freq=10**6)
    cfg["training"]["device"] = "cpu"
    path = work / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def water_box(work: Path) -> Path:
    """The bundled 192-atom water box replicated 2×2×2 (1,536 atoms), as extxyz."""
    from ase.io import read, write

    box = work / "water_1536.extxyz"
    if not box.exists():
        atoms = read(WATER / "water.lmp", format="lammps-data", atom_style="atomic")
        atoms.set_chemical_symbols(["O" if z == 1 else "H" for z in atoms.numbers])
        write(box, atoms.repeat((2, 2, 2)))
    return box


def md_input(work: Path, model: Path, steps: int, name: str) -> Path:
    box = water_box(work)
    text = f"""structure: {box}
type_map: [O, H]
progress: false
potential:
  model: {model}
ensemble: nvt-csvr
temperature: 300.0
tau_t: 100.0
dt: 0.5
steps: {steps}
seed: 1
skin: 1.0
thermo_every: {steps}
traj_every: {10 * steps}
traj_formats: [extxyz]
checkpoint_every: {10 * steps}
output_dir: {work / ('md_' + name)}
device: cpu
"""
    path = work / f"md_{name}.yaml"
    path.write_text(text)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="source tree of the old commit (e.g. a git worktree)")
    p.add_argument("--new", default=str(ROOT), help="source tree of the new commit (default: this one)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, nargs=2, default=[5, 45])
    p.add_argument("--md-steps", type=int, nargs=2, default=[5, 35])
    p.add_argument("--only", nargs="*", choices=["eval", "train", "md"], default=["eval", "train", "md"])
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "regression.json"))
    p.add_argument("--callgrind", action="store_true",
                   help="count executed instructions under valgrind's callgrind instead of timing (train/md only; "
                        "slow: ~50x; units become instructions/step)")
    p.add_argument("--cpu-time", action="store_true",
                   help="train/md: the child's CPU seconds (user + system) instead of wall seconds (for a shared machine; "
                        "use with --threads 1)")
    a = p.parse_args()
    CPU_TIME["on"] = a.cpu_time
    if a.callgrind:
        CALLGRIND["on"] = True
        a.only = [w for w in a.only if w != "eval"]  # eval's in-process timing has no instruction analogue
    trees = {"old": Path(a.old).resolve(), "new": Path(a.new).resolve()}
    for t in trees.values():
        if not (t / "mlpot").is_dir():
            p.error(f"{t}: not an mlpot source tree")
    commits = {}
    for k, t in trees.items():
        r = subprocess.run(["git", "-C", str(t), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        commits[k] = r.stdout.strip() or "?"
    work = Path(tempfile.mkdtemp(prefix="mlpot_regression_"))
    print(f"work dir {work}; old {commits['old']} ({trees['old']}), new {commits['new']} ({trees['new']})")
    # one model for both (trained 1 step by the old tree)
    model_dir = work / "model_run"
    on, CALLGRIND["on"] = CALLGRIND["on"], False  # the shared model file is made at full speed
    run(trees["old"], ["-m", "mlpot", "train", str(train_input(work, 1, "model")), "-o", str(model_dir)], a.threads, work)
    CALLGRIND["on"] = on
    model = model_dir / "model.pt"
    if not model.exists():
        raise SystemExit(f"no frozen model at {model}")
    res: dict[str, dict[str, list[float]]] = {w: {"old": [], "new": []} for w in a.only}
    faults: dict[str, dict[str, list[float]]] = {w: {"old": [], "new": []} for w in a.only}
    n1, n2 = a.train_steps
    m1, m2 = a.md_steps
    for rep in range(a.repeats):
        for key in ("old", "new") if rep % 2 == 0 else ("new", "old"):
            tree = trees[key]
            if "eval" in a.only:
                _, out = run(tree, ["-c", EVAL_SNIPPET, str(model), str(water_box(work)), str(a.threads), "cpu" if a.cpu_time else "wall"], a.threads, work)
                res["eval"][key].append(float(out.split("RESULT")[-1]))
                faults["eval"][key].append(LAST_FAULTS["minflt"])  # whole process (load + 9 evaluations)
            if "train" in a.only:
                walls, flts = [], []
                for n in (n1, n2):
                    cfg = train_input(work, n, f"t{n}_{key}_{rep}")
                    w, _ = run(tree, ["-m", "mlpot", "train", str(cfg), "-o", str(work / f"t{n}_{key}_{rep}")], a.threads, work)
                    walls.append(w)
                    flts.append(LAST_FAULTS["minflt"])
                res["train"][key].append((walls[1] - walls[0]) / (n2 - n1))
                faults["train"][key].append((flts[1] - flts[0]) / (n2 - n1))
            if "md" in a.only:
                walls, flts = [], []
                for m in (m1, m2):
                    y = md_input(work, model, m, f"{m}_{key}_{rep}")
                    w, _ = run(tree, ["-m", "mlpot", "md", str(y)], a.threads, work)
                    walls.append(w)
                    flts.append(LAST_FAULTS["minflt"])
                res["md"][key].append((walls[1] - walls[0]) / (m2 - m1))
                faults["md"][key].append((flts[1] - flts[0]) / (m2 - m1))
            print(f"rep {rep} {key}: " + ", ".join(f"{w} {res[w][key][-1]:.4g}" for w in a.only), flush=True)
    units = {"eval": "µs/atom", "train": "s/step", "md": "s/step"}
    if a.callgrind:
        units = {"train": "instructions/step", "md": "instructions/step"}
    summary = {}
    print(f"\n{'workload':10s} {'old':>12s} {'new':>12s} {'new/old':>8s}  unit")
    for w in a.only:
        o, n = statistics.median(res[w]["old"]), statistics.median(res[w]["new"])
        fo, fn = statistics.median(faults[w]["old"]), statistics.median(faults[w]["new"])
        summary[w] = {"old_median": o, "new_median": n, "ratio": n / o, "unit": units[w], "old": res[w]["old"], "new": res[w]["new"],
                      "minor_faults_old": fo, "minor_faults_new": fn,
                      "minor_faults_unit": "per process" if w == "eval" else "per step"}
        print(f"{w:10s} {o:12.4g} {n:12.4g} {n / o:8.3f}  {units[w]}   minor page faults old {fo:.4g}, new {fn:.4g} "
              f"({summary[w]['minor_faults_unit']})")
    load = os.getloadavg()
    out = {"commits": commits, "threads": a.threads, "repeats": a.repeats, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "loadavg": load, "callgrind": a.callgrind, "cpu_time": a.cpu_time, "train_steps": [n1, n2], "md_steps": [m1, m2], "results": summary}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1))
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; JSON: {a.json}")


if __name__ == "__main__":
    main()
