"""Make reference_{pbc,nopbc}.npz for mlpot's DeePMD-kit interop test. Run with DeePMD-kit's Python:

    python make_reference.py MODEL(.pth|.dp) OUTDIR [--data data/water/data_3] [--hide-deepmd-ops]

reference_pbc.npz: frames 0, 37, 79 of the system (coord/box float32 as stored in the data).
reference_nopbc.npz: the atoms of frame 0 within 5 Å of atom 0, evaluated without a cell.
Keys: coord (F, N, 3) Å, box (F, 3, 3) Å (pbc only), atype (N,), energy (F,) eV, force (F, N, 3) eV/Å,
virial (F, 3, 3) eV, atom_energy (F, N) eV. Evaluated with deepmd.infer.DeepPot(MODEL).eval(..., atomic=True).
"""
import argparse
import pathlib
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("outdir")
ap.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parents[3] / "data" / "water" / "data_3"))
ap.add_argument("--hide-deepmd-ops", action="store_true",
                help="hide DeePMD-kit's compiled op library (built for another torch; unused by se_e2_a/se_e2_r)")
args = ap.parse_args()
if args.hide_deepmd_ops:
    import deepmd.env

    deepmd.env.SHARED_LIB_DIR = pathlib.Path(tempfile.mkdtemp())
import numpy as np  # noqa: E402
from deepmd.infer import DeepPot  # noqa: E402

out = pathlib.Path(args.outdir)
data = pathlib.Path(args.data)
type_map = (data / "type_map.raw").read_text().split()
atype = np.loadtxt(data / "type.raw", dtype=np.int64)
idx = [0, 37, 79]
coord = np.load(data / "set.000/coord.npy")[idx].reshape(3, -1, 3)
box = np.load(data / "set.000/box.npy")[idx].reshape(3, 3, 3)
dp = DeepPot(args.model)
assert dp.get_type_map() == type_map, (dp.get_type_map(), type_map)
e, f, v, ae, av = dp.eval(coord.reshape(3, -1), box.reshape(3, -1), atype, atomic=True)
np.savez(out / "reference_pbc.npz", coord=coord, box=box, atype=atype, energy=e.reshape(3), force=f.reshape(3, -1, 3),
         virial=v.reshape(3, 3, 3), atom_energy=ae.reshape(3, -1))
near = np.nonzero(np.linalg.norm(coord[0] - coord[0, 0], axis=1) < 5.0)[0]
cc, tt = coord[0, near][None], atype[near]
e, f, v, ae, av = dp.eval(cc.reshape(1, -1), None, tt, atomic=True)
np.savez(out / "reference_nopbc.npz", coord=cc, atype=tt, energy=e.reshape(1), force=f.reshape(1, -1, 3),
         virial=v.reshape(1, 3, 3), atom_energy=ae.reshape(1, -1))
