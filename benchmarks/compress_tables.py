"""mlpot's compression tables vs DeePMD-kit's for the same weights (grid, coefficients, evaluated G).

    python benchmarks/compress_tables.py [--workdir benchmarks/.dpbuild/work/dp_compress_float64]
        [--dp-python benchmarks/.dpbuild/env/bin/python]

Uses the DeePMD-kit models that ``benchmarks/compress.py`` makes (``frozen_model.pth``,
``compressed_model.pth`` from ``dp --pt compress``): converts the frozen one to ``.dp``
(``dp convert-backend``), imports it into mlpot, compresses it with DeePMD-kit's recorded
``min_nbor_dist`` and default strides, and compares ``compress_info`` (must be equal),
``compress_data`` coefficient by coefficient, and G, dG/ds̃ evaluated from both tables at 20,000
points over the whole range (first table, second table).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from compress import DP_PYTHON, dp_env  # noqa: E402

DUMP = """
import sys, numpy as np, torch, deepmd.pt
m = torch.jit.load(sys.argv[1])
sd = {k.replace('.', '__'): v.detach().cpu().numpy() for k, v in m.state_dict().items() if 'compress' in k or 'min_nbor' in k}
np.savez(sys.argv[2], **sd)
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default=str(common.ROOT / "benchmarks/.dpbuild/work/dp_compress_float64"))
    p.add_argument("--dp-python", default=DP_PYTHON)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    import numpy as np
    import torch

    from mlpot.descriptors import tabulate as tab
    from mlpot.interop.deepmd import import_deepmd

    d = Path(args.workdir)
    env = dp_env(1)
    dp = [args.dp_python, "-c", "import sys; from deepmd.main import main; sys.argv[0] = 'dp'; sys.exit(main())"]
    if not (d / "model.dp").is_file():
        subprocess.run(dp + ["--pt", "convert-backend", "frozen_model.pth", "model.dp"], cwd=d, env=env, check=True,
                       capture_output=True)
    npz = d / "dp_tables.npz"
    subprocess.run([args.dp_python, "-c", DUMP, str(d / "compressed_model.pth"), str(npz)], env=env, check=True,
                   capture_output=True)
    theirs = np.load(npz)
    model = import_deepmd(d / "model.dp", device="cpu")
    r_min = float(theirs["min_nbor_dist"])
    model.compress(r_min)
    out = {"min_nbor_dist": r_min, "tables": {}}
    g = torch.Generator().manual_seed(0)
    for tid, key in enumerate(model.descriptor.table_keys()):
        name = f"atomic_model__descriptor__sea__compress_{{}}__{tid}"
        mine_d = getattr(model.descriptor, f"compress_data_{key}")
        mine_i = getattr(model.descriptor, f"compress_info_{key}")
        th_d, th_i = torch.from_numpy(theirs[name.format("data")]), torch.from_numpy(theirs[name.format("info")])
        row = {"info_equal": bool(torch.equal(mine_i, th_i)), "shape": list(mine_d.shape), "info": th_i.tolist()}
        if tuple(mine_d.shape) == tuple(th_d.shape):
            diff = (mine_d - th_d).abs().reshape(mine_d.shape[0], -1, 6)
            row["max_abs_diff_per_power"] = diff.amax(dim=(0, 1)).tolist()
            ft_m = tab.flat_tables([mine_d], [mine_i], torch.float64, torch.device("cpu"))
            ft_t = tab.flat_tables([th_d], [th_i], torch.float64, torch.device("cpu"))
            lo, mx = float(th_i[0]), float(th_i[2])
            x = lo + (mx - lo) * torch.rand(20000, generator=g, dtype=torch.float64) ** 2
            ids = torch.zeros_like(x, dtype=torch.long)
            for der in (False, True):
                a, b = tab.eval_table(x, ids, ft_m, der), tab.eval_table(x, ids, ft_t, der)
                row["max_abs_diff_dG" if der else "max_abs_diff_G"] = float((a - b).abs().max())
                row["max_abs_dG" if der else "max_abs_G"] = float(b.abs().max())
        out["tables"][key] = row
        print(key, json.dumps(row))
    if args.json:
        common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
