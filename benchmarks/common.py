"""Shared helpers for the mlpot vs DeePMD-kit benchmarks (model_eval.py, calculator.py, train_water.py).

Only numpy and the standard library at import time: the DeePMD-kit side runs these helpers in its
own virtual environment (``--dp-python``, default ``benchmarks/.dpbuild/env/bin/python``, made by
``bash benchmarks/setup_deepmd.sh``), where mlpot is absent.

Conventions: the water box is frame 0 of data/water/data_0 (192 atoms, 12.44 Å cubic) replicated
with ``ase.Atoms.repeat``; all benchmarks are float64; times are medians of several calls after
warm-up; peak memory is the process high-water mark ``VmHWM`` of /proc/self/status (CPU) or
``torch.cuda.max_memory_allocated`` (CUDA), each size in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WATER = ROOT / "data" / "water"
#: DeePMD-kit 3.2.0 built against this venv's torch by ``bash benchmarks/setup_deepmd.sh`` (git-ignored)
DP_PYTHON_DEFAULT = str(ROOT / "benchmarks" / ".dpbuild" / "env" / "bin" / "python")
#: scratch folder of the benchmarks (models, boxes, training runs; git-ignored)
WORKDIR_DEFAULT = str(ROOT / "benchmarks" / ".work")

#: the DeePMD-kit water se_e2_a example model (examples/water/se_e2_a/input.json), float64
WATER_MODEL: dict[str, Any] = {
    "type_map": ["O", "H"],
    "descriptor": {
        "type": "se_e2_a",
        "sel": [46, 92],
        "rcut_smth": 0.5,
        "rcut": 6.0,
        "neuron": [25, 50, 100],
        "resnet_dt": False,
        "axis_neuron": 16,
        "type_one_side": True,
        "precision": "float64",
        "seed": 1,
    },
    "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "precision": "float64", "seed": 1},
}

#: Runs DeePMD-kit's ``dp`` with its prebuilt C++ custom-op library switched off. The PyPI wheel of
#: deepmd-kit 3.2.0 ships libdeepmd_op_pt.so compiled against torch 2.11; with torch 2.13 importing
#: deepmd.pt raises "The version of PyTorch used to compile this deepmd-kit package is 2.11.0 ...".
#: Those ops (MPI border op for LAMMPS, tabulation for compressed models) are not used by se_e2_a
#: training / freezing / Python inference, so pointing SHARED_LIB_DIR elsewhere is harmless.
DP_PRELUDE = (
    "import pathlib, deepmd.env; "
    "deepmd.env.SHARED_LIB_DIR = pathlib.Path('/nonexistent-deepmd-op-dir'); "
)


def dp_command(dp_python: str, *args: str) -> list[str]:
    """argv running ``dp ARGS...`` through :data:`DP_PRELUDE` in DeePMD-kit's venv."""
    code = DP_PRELUDE + "import sys; from deepmd.main import main; sys.argv[0] = 'dp'; sys.exit(main())"
    return [dp_python, "-c", code, *args]


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a benchmark subprocess with ``threads`` intra-op threads on both sides."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        DP_INTRA_OP_PARALLELISM_THREADS=str(threads),
        DP_INTER_OP_PARALLELISM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    # DeePMD-kit's env sees this venv's packages (setup_deepmd.sh); mpi4py among them loads its MPI
    # library from this venv's lib/
    lib = Path(sys.prefix) / "lib"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(x for x in (str(lib), env.get("LD_LIBRARY_PATH", "")) if x)
    return env


# ------------------------------------------------------------------------------------------ data
def water_frame0() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """positions (192, 3) Å, cell (3, 3) Å, types (192,), type_map of data/water/data_0 frame 0."""
    d = WATER / "data_0"
    pos = np.load(d / "set.000" / "coord.npy")[0].reshape(-1, 3).astype(np.float64)
    cell = np.load(d / "set.000" / "box.npy")[0].reshape(3, 3).astype(np.float64)
    types = np.loadtxt(d / "type.raw", dtype=np.int64).reshape(-1)
    type_map = (d / "type_map.raw").read_text().split()
    return pos, cell, types, type_map


def water_atoms(reps: int):
    """ASE Atoms: frame 0 of data_0 repeated (reps, reps, reps) times (192·reps³ atoms), pbc."""
    from ase import Atoms

    pos, cell, types, type_map = water_frame0()
    atoms = Atoms(symbols=[type_map[t] for t in types], positions=pos, cell=cell, pbc=True)
    return atoms.repeat((reps, reps, reps))


def write_box(reps: int, path: Path) -> dict[str, Any]:
    """Write the replicated box to ``path`` (.npz: coord (N,3), cell (3,3), types (N,)) for a worker
    in another venv; returns {natoms}."""
    atoms = water_atoms(reps)
    _, _, _, type_map = water_frame0()
    index = {s: i for i, s in enumerate(type_map)}
    types = np.array([index[s] for s in atoms.get_chemical_symbols()], dtype=np.int64)
    np.savez(path, coord=atoms.get_positions(), cell=np.asarray(atoms.get_cell()[:]), types=types)
    return {"natoms": len(atoms)}


# ---------------------------------------------------------------------------------- measurement
def peak_rss_gib() -> float:
    """High-water mark of this process's resident memory (VmHWM), GiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def current_rss_gib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def time_calls(
    fn: Callable[[], Any],
    warmup: int = 2,
    min_repeat: int = 5,
    max_repeat: int = 20,
    budget_s: float = 20.0,
    sync: Optional[Callable[[], None]] = None,
) -> list[float]:
    """Wall times (s) of ``fn()`` after ``warmup`` calls: at least ``min_repeat`` calls, more while the
    total stays under ``budget_s`` (at most ``max_repeat``)."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_repeat and (len(times) < min_repeat or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return times


def time_interleaved(
    fns: Sequence[Callable[[], Any]],
    warmup: int = 2,
    min_repeat: int = 5,
    max_repeat: int = 20,
    budget_s: float = 20.0,
    sync: Optional[Callable[[], None]] = None,
) -> list[list[float]]:
    """As :func:`time_calls` for several functions called in rounds (f0, f1, ..., f0, f1, ...);
    returns one list of wall times (s) per function."""
    for _ in range(warmup):
        for fn in fns:
            fn()
            if sync:
                sync()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(times[0]) < max_repeat and (len(times[0]) < min_repeat or time.perf_counter() - start < budget_s):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            times[k].append(time.perf_counter() - t0)
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def loadavg() -> list[str]:
    """The 1, 5 and 15-minute load averages (as strings, from /proc/loadavg)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0:3]
    except OSError:
        return ["?"]


def uptime_line() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load " + " ".join(loadavg())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def git_hash() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def host_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "mlpot_git": git_hash(),
        "uptime": uptime_line(),
    }


# ---------------------------------------------------------------------------------- subprocesses

def print_header(device: str, threads: int) -> dict:
    """Host info plus device and threads; prints the one-line run header. Returns the info dict."""
    info = host_info() | {"device": device, "threads": threads}
    print(f"# {info['cpu']} ({info['cores']} cores), device {device}, {threads} threads, mlpot {info['mlpot_git']}")
    return info

def run_worker(
    argv: list[str], env: dict[str, str], timeout_s: float, mem_limit_gib: float, cwd: Optional[str] = None
) -> dict[str, Any]:
    """Run a worker that prints one JSON line prefixed with ``RESULT `` on stdout. The worker is
    killed when its resident memory passes ``mem_limit_gib`` (the machine is shared: better an
    'out of memory' entry than a swapless host OOM) or after ``timeout_s``.
    Returns the worker's dict, or {"error": "..."}."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: dict[str, str] = {}
    peak = [0.0]

    def watch() -> None:
        t0 = time.time()
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as fh:
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            rss = int(line.split()[1]) / 2**20
                            peak[0] = max(peak[0], rss)
                            if rss > mem_limit_gib:
                                killed["why"] = f"killed: RSS {rss:.1f} GiB > limit {mem_limit_gib:.1f} GiB"
                                proc.kill()
                            break
            except OSError:
                pass
            if time.time() - t0 > timeout_s:
                killed["why"] = f"killed: timeout {timeout_s:.0f} s"
                proc.kill()
            time.sleep(0.05)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    out, err = proc.communicate()
    th.join()
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    if killed:
        return {"error": killed["why"], "rss_seen_gib": round(peak[0], 2)}
    tail = (err or out).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (temp file in the same directory, then rename)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def emit(result: dict[str, Any]) -> None:
    """Worker side of :func:`run_worker`."""
    print("RESULT " + json.dumps(result), flush=True)


def tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mlpot_bench_"))


def fmt(x: Any, spec: str = ".1f") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return format(x, spec)


def default_device() -> str:
    """"cuda" when torch sees a GPU, else "cpu" (also when torch is not importable here)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
