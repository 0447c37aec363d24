"""mlpot → DeePMD-kit → same numbers: export mlpot models, convert them with DeePMD-kit, evaluate both.

Run with mlpot's Python where DeePMD-kit (PyTorch backend) is installed, possibly in another venv::

    python benchmarks/interop_deepmd.py --deepmd-python /path/to/deepmd-venv/bin/python [--hide-deepmd-ops]

For every case (se_e2_a one-sided, se_e2_a two-sided, se_e2_r; mlpot models with seeded random
weights, statistics and energy bias from data/water/data_0), it

1. evaluates the mlpot model on 3 periodic water frames (data/water/data_3) and one non-periodic
   19-atom cluster cut from them;
2. exports it with :func:`mlpot.interop.deepmd.export_deepmd` to ``.dp`` and ``.yaml``;
3. runs ``dp convert-backend model.dp model.pth`` and evaluates ``deepmd.infer.DeepPot(model.pth)``
   (PyTorch backend) and ``DeepPot(model.dp)`` (DeePMD's NumPy reference backend) on the same frames;
4. re-imports the .dp and .yaml into mlpot (round trip, must be bit-identical);

and prints the largest differences (energy relative, forces eV/Å, virial eV). Exit status 1 if
any exceeds 1e-10 relative (energy) / 1e-9 eV/Å (forces) / 1e-8 eV (virial).

``--hide-deepmd-ops``: run DeePMD-kit with its compiled op library hidden (needed when the wheel's
ops were built for another torch version; plain se_e2_a/se_e2_r models do not use them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """
import sys, pathlib, tempfile
if {hide!r}:
    import deepmd.env
    deepmd.env.SHARED_LIB_DIR = pathlib.Path(tempfile.mkdtemp())
"""

_EVAL = """
import numpy as np, json, time
from deepmd.infer import DeepPot
inp = np.load(sys.argv[1])
res = {}
for model in sys.argv[3:]:
    dp = DeepPot(model)
    t0 = time.perf_counter()
    e, f, v = dp.eval(inp["coord"].reshape(len(inp["coord"]), -1), inp["box"].reshape(len(inp["box"]), -1), inp["atype"])[:3]
    t1 = time.perf_counter()
    e2, f2, v2 = dp.eval(inp["ccoord"].reshape(1, -1), None, inp["ctype"])[:3]
    res[model] = dict(energy=np.ravel(e).tolist(), force=np.ravel(f).tolist(), virial=np.ravel(v).tolist(),
                      c_energy=np.ravel(e2).tolist(), c_force=np.ravel(f2).tolist(), c_virial=np.ravel(v2).tolist(),
                      seconds=t1 - t0, type_map=dp.get_type_map())
json.dump(res, open(sys.argv[2], "w"))
"""

CASES = {
    "se_e2_a": {"type": "se_e2_a", "neuron": [8, 16, 32], "axis_neuron": 4, "type_one_side": True, "resnet_dt": True},
    "se_e2_a_two_side": {"type": "se_e2_a", "neuron": [4, 8, 16], "axis_neuron": 4, "type_one_side": False, "resnet_dt": False},
    "se_e2_r": {"type": "se_e2_r", "neuron": [8, 16, 32], "type_one_side": True, "resnet_dt": False},
}


def run_deepmd(py: str, hide: bool, body: str, args: list[str]) -> None:
    code = _PRELUDE.format(hide=hide) + body
    proc = subprocess.run([py, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"DeePMD-kit call failed ({' '.join(args[:3])}):\n{proc.stderr[-3000:]}")


def frames() -> dict[str, np.ndarray]:
    d = ROOT / "data" / "water" / "data_3"
    idx = [0, 37, 79]
    coord = np.load(d / "set.000" / "coord.npy")[idx].reshape(3, -1, 3)
    box = np.load(d / "set.000" / "box.npy")[idx].reshape(3, 3, 3)
    atype = np.loadtxt(d / "type.raw", dtype=np.int64)
    near = np.nonzero(np.linalg.norm(coord[0] - coord[0, 0], axis=1) < 5.0)[0]
    return {"coord": coord, "box": box, "atype": atype, "ccoord": coord[0, near][None], "ctype": atype[near]}


def build_model(case: dict, seed: int = 7):
    import torch

    from mlpot.data.io import read_deepmd
    from mlpot.model import EnergyModel

    desc = {"rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92], "activation_function": "tanh", "precision": "float64",
            "seed": seed, **case}
    cfg = {"type_map": ["O", "H"], "descriptor": desc,
           "fitting_net": {"neuron": [16, 16, 16], "resnet_dt": True, "precision": "float64", "seed": seed + 1}}
    model = EnergyModel.from_config(cfg, device="cpu")
    model.compute_stats([read_deepmd(str(ROOT / "data" / "water" / "data_0"))], max_frames=5)
    with torch.no_grad():  # make the timesteps non-trivial, as after training
        for name, p in model.named_parameters():
            if name.endswith(".idt"):
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def mlpot_eval(model, fr: dict) -> dict[str, np.ndarray]:
    from mlpot.model import evaluate

    n, nat = fr["coord"].shape[:2]
    t0 = time.perf_counter()
    out = evaluate(model, fr["coord"].reshape(-1, 3), np.tile(fr["atype"], n), fr["box"], [True] * 3,
                   frame_index=np.repeat(np.arange(n), nat))
    t1 = time.perf_counter()
    c = evaluate(model, fr["ccoord"][0], fr["ctype"], np.zeros((3, 3)), [False] * 3)
    g = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return {"energy": g(out["energy"]), "force": g(out["forces"]).reshape(n, nat, 3), "virial": g(out["virial"]),
            "c_energy": g(c["energy"]), "c_force": g(c["forces"])[None], "c_virial": g(c["virial"]), "seconds": t1 - t0}


def diffs(a: dict, b: dict) -> tuple[float, float, float]:
    de = max(np.max(np.abs(np.ravel(a[k]) - np.ravel(b[k])) / np.abs(np.ravel(b[k]))) for k in ("energy", "c_energy"))
    df = max(np.max(np.abs(np.ravel(a[k]) - np.ravel(b[k]))) for k in ("force", "c_force"))
    dv = max(np.max(np.abs(np.ravel(a[k]) - np.ravel(b[k]))) for k in ("virial", "c_virial"))
    return float(de), float(df), float(dv)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deepmd-python", default="python", help="a Python with deepmd-kit installed")
    ap.add_argument("--hide-deepmd-ops", action="store_true")
    ap.add_argument("--workdir", default=None, help="keep the exported/converted files here")
    args = ap.parse_args()

    from mlpot.interop.deepmd import export_deepmd, import_deepmd

    fr = frames()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="interop_deepmd_"))
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / "frames.npz", **fr)
    worst = [0.0, 0.0, 0.0]
    print(f"{'case':18s} {'against':26s} {'max|dE|/|E|':>12s} {'max|dF| eV/A':>13s} {'max|dW| eV':>11s}")
    for name, case in CASES.items():
        model = build_model(case)
        ref = mlpot_eval(model, fr)
        dp_file, yaml_file, pth = work / f"{name}.dp", work / f"{name}.yaml", work / f"{name}.pth"
        export_deepmd(model, dp_file)
        export_deepmd(model, yaml_file)
        rows = []
        for f in (dp_file, yaml_file):
            back = mlpot_eval(import_deepmd(f, device="cpu"), fr)
            rows.append((f"mlpot<-import {f.suffix}", diffs(back, ref)))
        run_deepmd(args.deepmd_python, args.hide_deepmd_ops,
                   "from deepmd.main import main\nsys.argv = ['dp'] + sys.argv[1:]\nmain()\n",
                   ["convert-backend", str(dp_file), str(pth)])
        out_json = work / f"{name}_deepmd.json"
        run_deepmd(args.deepmd_python, args.hide_deepmd_ops, _EVAL, [str(work / "frames.npz"), str(out_json), str(pth), str(dp_file)])
        res = json.loads(out_json.read_text())
        for model_file, label in ((str(pth), "DeepPot(.pth, PyTorch)"), (str(dp_file), "DeepPot(.dp, NumPy)")):
            r = {k: np.asarray(v) for k, v in res[model_file].items() if k not in ("type_map", "seconds")}
            de, df, dv = diffs(r, ref)
            if model_file.endswith(".dp"):  # DeePMD's NumPy backend has no autodiff: energies only (NaN forces)
                df = dv = float("nan")
            rows.append((label, (de, df, dv)))
        for label, (de, df, dv) in rows:
            worst = [max(worst[0], de), np.nanmax([worst[1], df]), np.nanmax([worst[2], dv])]
            show = lambda x, w: f"{x:{w}.2e}" if np.isfinite(x) else f"{'n/a':>{w}s}"  # noqa: E731
            print(f"{name:18s} {label:26s} {show(de, 12)} {show(df, 13)} {show(dv, 11)}")
        print(f"{name:18s} eval 3x192 atoms: mlpot {ref['seconds']:.3f} s, DeePMD-kit PyTorch {res[str(pth)]['seconds']:.3f} s (CPU)")
    ok = worst[0] <= 1e-10 and worst[1] <= 1e-9 and worst[2] <= 1e-8
    print(f"worst: energy {worst[0]:.2e} rel, forces {worst[1]:.2e} eV/A, virial {worst[2]:.2e} eV -> {'OK' if ok else 'FAIL'}")
    print(f"files in {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
