"""Make the compressed DeePMD-kit reference models of mlpot's import test (tests/test_import_deepmd_compressed.py).

Run with a DeePMD-kit 3.2.0 Python whose C++ op library is built for its torch (recipe: benchmarks/README.md,
"DeePMD-kit with its custom ops"), from this folder:

    LD_LIBRARY_PATH=/work/main/.venv/lib OMP_NUM_THREADS=1 \
        ../../../benchmarks/.dpbuild/env/bin/python make_reference.py [--data ../../../data/water]

For each variant (se_e2_a, se_atten_v2 attn_layer 0, se_e2_a_two_side; tiny nets, float64): `dp --pt train`
(1 step on data_0), `dp --pt freeze`, `dp --pt compress -s 0.1 -t input.json` (-s 0.2 for se_e2_a_two_side);
keeps <variant>/compressed.pth (and se_e2_a/frozen.pth,
the uncompressed frozen model) and writes
<variant>/reference.npz: DeepPot(compressed.pth).eval on frames 0, 37, 79 of data_3. Keys: coord (F, N, 3) Å,
box (F, 3, 3) Å, atype (N,), energy (F,) eV, force (F, N, 3) eV/Å, virial (F, 3, 3) eV, and energy_plain /
force_plain: the same from the uncompressed frozen model (the compression error DeePMD-kit itself makes).
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ap = argparse.ArgumentParser()
ap.add_argument("--data", default=str(HERE.parents[2] / "data" / "water"))
ap.add_argument("--only", nargs="+", help="make only these variants")
ap.add_argument("--out", default=str(HERE), help="folder to write the variants into")
args = ap.parse_args()
data = pathlib.Path(args.data).resolve()

DESCRIPTORS = {
    "se_e2_a": {"type": "se_e2_a", "sel": [12, 24], "rcut_smth": 0.5, "rcut": 3.5, "neuron": [4, 8], "resnet_dt": False,
                "axis_neuron": 4, "type_one_side": True, "precision": "float64", "seed": 1},
    "se_atten_v2": {"type": "se_atten_v2", "sel": 36, "rcut_smth": 0.5, "rcut": 3.5, "neuron": [4, 8], "axis_neuron": 4,
                    "attn_layer": 0, "tebd_dim": 4, "type_one_side": False, "resnet_dt": False, "precision": "float64",
                    "seed": 1},
    # two-sided se_e2_a (one net per center/neighbor type pair): tiny nets and step 0.2 to stay small
    "se_e2_a_two_side": {"type": "se_e2_a", "sel": [12, 24], "rcut_smth": 0.5, "rcut": 3.5, "neuron": [2, 4],
                         "resnet_dt": False, "axis_neuron": 2, "type_one_side": False, "precision": "float64", "seed": 1},
}
STEP = {"se_e2_a_two_side": "0.2"}
DP = [sys.executable, "-c", "import sys; from deepmd.main import main; sys.argv[0] = 'dp'; sys.exit(main())"]


def run(args: list, cwd: pathlib.Path) -> None:
    r = subprocess.run(DP + args, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"dp {' '.join(args)} failed:\n{r.stderr[-3000:]}")


def make(name: str, descriptor: dict) -> None:
    out = pathlib.Path(args.out) / name
    out.mkdir(exist_ok=True)
    cfg = {
        "model": {"type_map": ["O", "H"], "descriptor": descriptor, "data_stat_nbatch": 2,
                  "fitting_net": {"neuron": [8, 8], "resnet_dt": True, "precision": "float64", "seed": 1}},
        "learning_rate": {"type": "exp", "decay_steps": 5000, "start_lr": 0.001, "stop_lr": 3.51e-08},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(data / "data_0")], "batch_size": 1},
                     "numb_steps": 1, "seed": 10, "disp_freq": 1, "save_freq": 1},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        (work / "input.json").write_text(json.dumps(cfg, indent=1))
        run(["--pt", "train", "input.json"], work)
        run(["--pt", "freeze", "-o", "frozen.pth"], work)
        run(["--pt", "compress", "-i", "frozen.pth", "-o", "compressed.pth", "-s", STEP.get(name, "0.1"), "-t",
             "input.json"], work)
        shutil.copy(work / "compressed.pth", out / "compressed.pth")
        if name == "se_e2_a":  # the uncompressed frozen model too (import of a plain `dp freeze` output)
            shutil.copy(work / "frozen.pth", out / "frozen.pth")
        (out / "input.json").write_text(json.dumps(cfg["model"], indent=1))
        from deepmd.infer import DeepPot

        src = data / "data_3"
        atype = np.loadtxt(src / "type.raw", dtype=np.int64)
        idx = [0, 37, 79]
        coord = np.load(src / "set.000/coord.npy")[idx].reshape(3, -1, 3)
        box = np.load(src / "set.000/box.npy")[idx].reshape(3, 3, 3)
        res = {}
        for tag, fname in (("", "compressed.pth"), ("_plain", "frozen.pth")):
            dp = DeepPot(str(work / fname))
            e, f, v = dp.eval(coord.reshape(3, -1), box.reshape(3, -1), atype)[:3]
            res.update({f"energy{tag}": e.reshape(3), f"force{tag}": f.reshape(3, -1, 3), f"virial{tag}": v.reshape(3, 3, 3)})
        np.savez(out / "reference.npz", coord=coord, box=box, atype=atype, **res)
        print(name, "energy", res["energy"], "max |E_c - E_plain|", np.abs(res["energy"] - res["energy_plain"]).max(),
              "max |F_c - F_plain|", np.abs(res["force"] - res["force_plain"]).max())


for name, d in DESCRIPTORS.items():
    if not args.only or name in args.only:
        make(name, d)
