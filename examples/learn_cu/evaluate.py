"""Force and energy RMSE on the independent EMT test set (test.extxyz) of every iteration's members
(learn_out/tasks/iter.NNN/train.K/train/model.pt), with the number of training frames: how the error
on trajectories the models never drove falls as the loop adds labels.

    python evaluate.py [--members 0 1 2 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


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
    out = Path(args.out)
    rows = []
    print(f"{'iteration':>9} {'member':>6} {'train frames':>12} {'force RMSE (eV/Å)':>18} {'energy RMSE (meV/atom)':>22}")
    for it_dir in sorted((out / "tasks").glob("iter.*")):
        for k in args.members:
            model_file = it_dir / f"train.{k}" / "train" / "model.pt"
            result = it_dir / f"train.{k}" / "result.json"
            if not (model_file.is_file() and result.is_file() and (it_dir / f"train.{k}" / "DONE").is_file()):
                continue
            model = load_model(model_file, device="cpu")
            sq_f, n_f, sq_e, n_e = 0.0, 0, 0.0, 0
            for s in test:
                sc = score_system(model, s)
                df = sc.pred["forces"] - s.forces
                de = (sc.pred["energy"] - s.energies) / s.n_atoms
                sq_f, n_f = sq_f + float(np.sum(df**2)), n_f + df.size
                sq_e, n_e = sq_e + float(np.sum(de**2)), n_e + de.size
            frames = json.loads(result.read_text())["frames"]
            row = {"iteration": int(it_dir.name.split(".")[1]), "member": k, "training_frames": frames,
                   "force_rmse_eV_per_A": (sq_f / n_f) ** 0.5, "energy_rmse_eV_per_atom": (sq_e / n_e) ** 0.5}
            rows.append(row)
            print(f"{row['iteration']:>9} {k:>6} {frames:>12} {row['force_rmse_eV_per_A']:>18.4f} "
                  f"{1e3 * row['energy_rmse_eV_per_atom']:>22.2f}")
    (out / "test_rmse.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
