"""Benchmark: se_atten / se_atten_v2 (DPA-1) on CPU, mlpot vs DeePMD-kit 3.2.0 (PyTorch backend).

Run (repository root, mlpot's venv; DeePMD-kit in its own venv)::

    python benchmarks/se_atten.py [--threads 1] [--dp-python benchmarks/.dpbuild/env/bin/python] [--json out.json]

1. Inference, energy + forces + virial, µs per atom-step, median of several calls after warm-up:
   DeePMD-kit's example descriptors on the bundled water box (frame 0 of data/water/data_0, 192
   atoms): ``se_atten_v2`` attn_layer 0 (``examples/water/se_atten_compressible``) and ``dpa1``
   attn_layer 2 (``examples/water/se_atten/input_torch.json``), fitting [240, 240, 240], float64.
   The SAME weights on both sides: the model is built by DeePMD-kit (``get_model``, seeded random
   weights), written as ``.dp`` and imported by mlpot; DeePMD-kit evaluates its TorchScript freeze
   with ``DeepPot.eval``, mlpot ``mlpot.model.evaluate`` (both include the neighbor search).
2. Cost per atom-step of se_atten_v2 with attn_layer 0 vs 2 for 2, 4 and 7 elements (mlpot and
   DeePMD-kit): the EMT alloy liquids ``data/alloy_emt/CuAgAuPd_liquid`` and
   ``AlCuAgAuNiPdPt_liquid`` frame 0 repeated 2×2×2 (256 atoms), rcut 6, sel 120, the example widths;
   2 elements = the 4-element liquid's geometry relabelled Cu/Ag → Cu, Au/Pd → Au (same neighbors).
   ``--only alloy2_v2_l0 alloy4_v2_l0 alloy7_v2_l0 --skip-train`` runs just that scaling check.
3. Training, s/step: the se_atten_v2 attn_layer 0 example (compressible input) on data_0, 20 steps,
   batch 1, validation once at the end, in-process trainers (DeePMD-kit ``get_trainer(...).run()``,
   mlpot ``Trainer.from_config(...).train()``), setup excluded.

Each measurement runs in a fresh subprocess with ``--threads`` intra-op threads (``benchmarks/common.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "data" / "se_atten" / "deepmd_inputs"
FIT = {"neuron": [240, 240, 240], "resnet_dt": True, "precision": "float64", "seed": 1}
ALL7 = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]
ALLOY4 = ["Cu", "Ag", "Au", "Pd"]
ALLOY2 = ["Cu", "Au"]


def example_descriptor(name: str) -> dict:
    d = json.loads((EXAMPLES / name).read_text())["model"]["descriptor"]
    return {k: v for k, v in d.items() if not k.startswith("_")}


def cases() -> dict:
    v2 = example_descriptor("water_se_atten_compressible_input.json")
    dpa1 = example_descriptor("water_se_atten_input_torch.json")
    out = {
        "water_v2_l0": (["O", "H"], v2, "water"),
        "water_dpa1_l2": (["O", "H"], dpa1, "water"),
    }
    # 2 elements: the 4-element liquid's geometry with Cu/Ag -> Cu and Au/Pd -> Au (write_box relabels)
    for tm, sysname in ((ALLOY2, "CuAgAuPd_liquid"), (ALLOY4, "CuAgAuPd_liquid"), (ALL7, "AlCuAgAuNiPdPt_liquid")):
        for layers in (0, 2):
            d = dict(v2, attn_layer=layers, rcut_smth=2.0)
            out[f"alloy{len(tm)}_v2_l{layers}"] = (tm, d, sysname)
    return out


def write_box(kind: str, type_map: list[str], path: Path) -> int:
    import numpy as np

    if kind == "water":
        return common.write_box(1, path)["natoms"]
    d = ROOT / "data" / "alloy_emt" / kind
    own = (d / "type_map.raw").read_text().split()
    # an element of the system missing from type_map takes type (its own index mod len(type_map)):
    # the same geometry with fewer elements (the 2-element case)
    index = [type_map.index(e) if e in type_map else k % len(type_map) for k, e in enumerate(own)]
    types = np.array([index[t] for t in np.loadtxt(d / "type.raw", dtype=int)])
    coord = np.load(d / "set.000/coord.npy")[0].reshape(-1, 3)
    cell = np.load(d / "set.000/box.npy")[0].reshape(3, 3)
    shifts = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], dtype=float) @ cell
    big = (coord[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    np.savez(path, coord=big, cell=2 * cell, types=np.tile(types, 8))
    return int(big.shape[0])


# ------------------------------------------------------------------------------------ workers
def worker_dp_make(workdir: str) -> None:
    """Build every case's DeePMD-kit model (seeded random weights, random statistics) → .dp + .pth."""
    import pathlib
    import tempfile

    import deepmd.env

    deepmd.env.SHARED_LIB_DIR = pathlib.Path(tempfile.mkdtemp())
    import numpy as np
    import torch
    from deepmd.dpmodel.utils.serialization import save_dp_model
    from deepmd.pt.model.model import get_model
    from deepmd.pt.utils.serialization import deserialize_to_file

    wd = Path(workdir)
    for k, (name, (tm, desc, _)) in enumerate(cases().items()):
        torch.manual_seed(k)
        params = {"type_map": tm, "descriptor": copy.deepcopy(desc), "fitting_net": dict(FIT)}
        model = get_model(copy.deepcopy(params)).to(torch.float64)
        tree = model.serialize()
        rng = np.random.default_rng(k)
        v = tree["descriptor"]["@variables"]
        v["davg"][..., 0] = rng.uniform(0.05, 0.2) * (0.0 if desc.get("set_davg_zero", desc["type"] != "se_atten_v2") else 1.0)
        v["dstd"][..., 0], v["dstd"][..., 1:] = rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.2)
        data = {"backend": "PyTorch", "model": tree, "model_def_script": params, "@variables": {}}
        save_dp_model(str(wd / f"{name}.dp"), data)
        deserialize_to_file(str(wd / f"{name}.pth"), copy.deepcopy(data))
    common.emit({"ok": True})


def _time(fn) -> dict:
    times = common.time_calls(fn, warmup=1, min_repeat=3, max_repeat=10, budget_s=15.0)
    return {"median_s": common.median(times), "n": len(times)}


def worker_dp_eval(model: str, box: str) -> None:
    import pathlib
    import tempfile

    import deepmd.env

    deepmd.env.SHARED_LIB_DIR = pathlib.Path(tempfile.mkdtemp())
    import numpy as np
    from deepmd.infer import DeepPot

    b = np.load(box)
    dp = DeepPot(model)
    coord, cell, types = b["coord"].reshape(1, -1), b["cell"].reshape(1, 9), b["types"]
    r = _time(lambda: dp.eval(coord, cell, types))
    e = dp.eval(coord, cell, types)[0]
    common.emit({**r, "natoms": int(types.shape[0]), "energy": float(np.asarray(e).reshape(-1)[0]),
                 "peak_rss_gib": common.peak_rss_gib()})


def worker_mlpot_eval(model: str, box: str) -> None:
    import numpy as np
    import torch

    from mlpot.interop.deepmd import import_deepmd
    from mlpot.model import evaluate

    b = np.load(box)
    m = import_deepmd(model, device="cpu")
    pos, cell, types = torch.tensor(b["coord"]), torch.tensor(b["cell"]), torch.tensor(b["types"])

    def call():
        return evaluate(m, pos, types, cell, [True] * 3)

    r = _time(call)
    common.emit({**r, "natoms": int(types.shape[0]), "energy": float(call()["energy"][0]),
                 "peak_rss_gib": common.peak_rss_gib()})


def train_config(steps: int) -> dict:
    cfg = json.loads((EXAMPLES / "water_se_atten_compressible_input.json").read_text())
    cfg["training"]["training_data"] = {"systems": [str(ROOT / "data/water/data_0")], "batch_size": 1}
    cfg["training"]["validation_data"] = {"systems": [str(ROOT / "data/water/data_3")], "batch_size": 1, "numb_btch": 1}
    cfg["training"].update(numb_steps=steps, disp_freq=steps, save_freq=steps)
    return cfg


def worker_dp_train(workdir: str, steps: str) -> None:
    import os
    import pathlib
    import tempfile

    import deepmd.env

    deepmd.env.SHARED_LIB_DIR = pathlib.Path(tempfile.mkdtemp())
    from deepmd.pt.entrypoints.main import get_trainer
    from deepmd.utils.argcheck import normalize
    from deepmd.utils.compat import update_deepmd_input

    os.chdir(workdir)
    cfg = train_config(int(steps))
    t0 = time.perf_counter()
    trainer = get_trainer(normalize(update_deepmd_input(cfg, warning=False)))
    t1 = time.perf_counter()
    trainer.run()
    t2 = time.perf_counter()
    common.emit({"setup_s": t1 - t0, "run_s": t2 - t1, "s_per_step": (t2 - t1) / int(steps)})


def worker_mlpot_train(workdir: str, steps: str) -> None:
    from mlpot.train.trainer import Trainer

    t0 = time.perf_counter()
    trainer = Trainer.from_config(train_config(int(steps)), output_dir=workdir, device="cpu", quiet=True, overwrite=True)
    t1 = time.perf_counter()
    trainer.train()
    t2 = time.perf_counter()
    common.emit({"setup_s": t1 - t0, "run_s": t2 - t1, "s_per_step": (t2 - t1) / int(steps)})


# ------------------------------------------------------------------------------------ driver
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dp-python", default=common.DP_PYTHON_DEFAULT)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/se_atten.json"))
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="run only these inference cases (names of cases())")
    args = ap.parse_args()
    env = common.thread_env(args.threads)
    env["PYTHONPATH"] = str(ROOT)
    wd = common.tmpdir()
    me = str(Path(__file__).resolve())
    result = {"host": common.host_info(), "threads": args.threads, "git": common.git_hash(), "eval": {}, "train": {}}
    print(common.uptime_line(), flush=True)
    made = common.run_worker([args.dp_python, me, "dp-make", str(wd)], env, 900, 8.0)
    if "error" in made:
        raise SystemExit(f"DeePMD-kit model build failed: {made['error']}")
    for name, (tm, _, kind) in cases().items():
        if args.only is not None and name not in args.only:
            continue
        box = wd / f"{name}.npz"
        write_box(kind, tm, box)
        row = {}
        for code, argv in (("deepmd", [args.dp_python, me, "dp-eval", str(wd / f"{name}.pth"), str(box)]),
                           ("mlpot", [sys.executable, me, "mlpot-eval", str(wd / f"{name}.dp"), str(box)])):
            r = common.run_worker(argv, env, 900, 8.0)
            if "median_s" in r:
                r["us_per_atom_step"] = 1e6 * r["median_s"] / r["natoms"]
            row[code] = r
        if "us_per_atom_step" in row["deepmd"] and "us_per_atom_step" in row["mlpot"]:
            row["ratio_mlpot_over_deepmd"] = row["mlpot"]["us_per_atom_step"] / row["deepmd"]["us_per_atom_step"]
            row["energy_rel_diff"] = abs(row["mlpot"]["energy"] - row["deepmd"]["energy"]) / abs(row["deepmd"]["energy"])
        result["eval"][name] = row
        print(name, json.dumps({k: (v.get("us_per_atom_step", v) if isinstance(v, dict) else v) for k, v in row.items()}),
              flush=True)
    if not args.skip_train:
        for code, argv in (("deepmd", [args.dp_python, me, "dp-train"]), ("mlpot", [sys.executable, me, "mlpot-train"])):
            d = wd / f"train_{code}"
            d.mkdir()
            result["train"][code] = common.run_worker(argv + [str(d), str(args.train_steps)], env, 1800, 8.0)
            print("train", code, result["train"][code], flush=True)
    result["loadavg_end"] = common.loadavg()
    common.write_json(args.json, result)
    print("wrote", args.json)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("dp-make", "dp-eval", "mlpot-eval", "dp-train", "mlpot-train"):
        {"dp-make": worker_dp_make, "dp-eval": worker_dp_eval, "mlpot-eval": worker_mlpot_eval,
         "dp-train": worker_dp_train, "mlpot-train": worker_mlpot_train}[sys.argv[1]](*sys.argv[2:])
    else:
        main()
