"""Force and energy RMSE on the independent EMT test set (test.extxyz; all 60 frames, and its 10
liquid frames alone) of every iteration's members (the member each iteration kept, from
learn_out/results.json: train.K or an outlier's retrain), with the number of training frames: how
the error on trajectories the models never drove falls as the loop adds labels.

    python evaluate.py [--members 0 1 2 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N_LIQUID = 10  # frames of liquid at the end of test.extxyz (make_data.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default=str(HERE / "learn_out"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from mlpot.data.io import read
    from mlpot.export import load_model
    from mlpot.metrics import score_system

    test = read(HERE / "test.extxyz", type_map=["Cu"])
    if len(test) != 1:
        raise SystemExit(f"{HERE / 'test.extxyz'}: expected one system of 108-atom frames (make_data.py)")
    out = Path(args.out)
    results = json.loads((out / "results.json").read_text())
    rows = []
    print(f"{'iteration':>9} {'member':>6} {'train frames':>12} {'force RMSE (eV/Å)':>18} "
          f"{'liquid only':>11} {'energy RMSE (meV/atom)':>22}")
    for rec in results["iterations"]:
        for k in args.members:
            task = rec["train"][k]["task"]  # the member the iteration kept (train.K or an outlier's retrain)
            model_file = out / "tasks" / task / "train" / "model.pt"
            model = load_model(model_file, device="cpu")
            sq_f, n_f, sq_e, n_e, sq_l, n_l = 0.0, 0, 0.0, 0, 0.0, 0
            for s in test:
                sc = score_system(model, s)
                df = sc.pred["forces"] - s.forces
                de = (sc.pred["energy"] - s.energies) / s.n_atoms
                sq_f, n_f = sq_f + float(np.sum(df**2)), n_f + df.size
                sq_e, n_e = sq_e + float(np.sum(de**2)), n_e + de.size
                liq = df[-N_LIQUID:]  # the last frames of test.extxyz are the liquid (make_data.py)
                sq_l, n_l = sq_l + float(np.sum(liq**2)), n_l + liq.size
            row = {"iteration": rec["iteration"], "member": k, "task": task, "training_frames": rec["training_frames"],
                   "force_rmse_eV_per_A": (sq_f / n_f) ** 0.5, "force_rmse_liquid_eV_per_A": (sq_l / n_l) ** 0.5,
                   "energy_rmse_eV_per_atom": (sq_e / n_e) ** 0.5}
            rows.append(row)
            print(f"{row['iteration']:>9} {k:>6} {row['training_frames']:>12} {row['force_rmse_eV_per_A']:>18.4f} "
                  f"{row['force_rmse_liquid_eV_per_A']:>11.4f} {1e3 * row['energy_rmse_eV_per_atom']:>22.2f}")
    (out / "test_rmse.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
