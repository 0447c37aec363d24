"""Make ``tests/data/se_atten/export/<case>/``: models written by mlpot's ``export-deepmd`` and
evaluated by DeePMD-kit 3.2.0. Two stages, two Python environments::

    PYTHONPATH=$PWD .venv/bin/python tests/data/se_atten/make_export_reference.py mlpot
    /work/dpvenv/bin/python tests/data/se_atten/make_export_reference.py deepmd

Stage ``mlpot``: for each case of :data:`CASES`, an mlpot model built from its config (seeded random
weights, DeePMD-like random statistics and energy bias, random layer-norm weights) is exported with
:func:`mlpot.interop.deepmd.export_deepmd` to ``<case>/model.dp``; mlpot's own energies, forces,
virials, atomic energies of two frames are written to ``<case>/mlpot_eval.npz``.

Stage ``deepmd`` (DeePMD-kit's Python, op library hidden): ``<case>/model.dp`` is turned into a
TorchScript model exactly as ``dp convert-backend model.dp model.pth`` does
(``deepmd.pt.utils.serialization.deserialize_to_file``) and evaluated with ``deepmd.infer.DeepPot``
on the same frames: ``<case>/deepmd_eval.npz`` (keys ``pbc_{coord,box,atype,energy,force,virial,
atom_energy}``); the largest relative difference to mlpot's numbers is printed.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
OUT = HERE / "export"
ALL7 = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]

#: name → (system, type_map, descriptor keys)
CASES = {
    "atten_concat_l2": (ROOT / "data/alloy_emt/CuAgAuPd_liquid", ["Cu", "Ag", "Au", "Pd"], dict(
        type="se_atten", attn_layer=2, set_davg_zero=False)),
    "atten_strip_smooth_l1_one_side": (ROOT / "data/alloy_emt/AlCuNi_solid", ["Al", "Cu", "Ni"], dict(
        type="se_atten", attn_layer=1, tebd_input_mode="strip", smooth_type_embedding=True, type_one_side=True,
        set_davg_zero=False, temperature=1.0)),
    "v2_l0": (ROOT / "data/alloy_emt/AlCuAgAuNiPdPt_solid", ALL7, dict(type="se_atten_v2", attn_layer=0)),
}


def frames(system: pathlib.Path, type_map: list[str]):
    sys_map = (system / "type_map.raw").read_text().split()
    atype = np.array([type_map.index(sys_map[t]) for t in np.loadtxt(system / "type.raw", dtype=int)])
    coord = np.load(system / "set.000/coord.npy")[[0, 5]].reshape(2, -1, 3)
    box = np.load(system / "set.000/box.npy")[[0, 5]].reshape(2, 3, 3)
    return coord, box, atype


def stage_mlpot() -> None:
    import torch

    from mlpot.interop.deepmd import export_deepmd
    from mlpot.model import evaluate
    from mlpot.testing import tiny_model

    for k, (name, (system, type_map, desc)) in enumerate(CASES.items()):
        desc = dict(desc)
        kind = desc.pop("type")
        model = tiny_model(kind, type_map=type_map, sel=(48,), rcut=4.5, rcut_smth=1.0, attn=8, tebd_dim=4,
                           seed=20 + k, stats_seed=30 + k, **desc)
        g = torch.Generator().manual_seed(40 + k)
        with torch.no_grad():
            for layer in model.descriptor.attention:
                layer.layer_norm.matrix.add_(0.2 * torch.randn(layer.layer_norm.matrix.shape, generator=g))
                layer.layer_norm.bias.add_(0.1 * torch.randn(layer.layer_norm.bias.shape, generator=g))
        out = OUT / name
        out.mkdir(parents=True, exist_ok=True)
        export_deepmd(model, out / "model.dp")
        coord, box, atype = frames(system, type_map)
        nf, n = coord.shape[:2]
        r = evaluate(model, torch.tensor(coord.reshape(-1, 3)), torch.tensor(np.tile(atype, nf)), torch.tensor(box),
                     torch.ones(nf, 3, dtype=torch.bool), torch.arange(nf).repeat_interleave(n),
                     outputs=("energy", "forces", "virial", "atom_energy"))
        np.savez(out / "mlpot_eval.npz", pbc_coord=coord, pbc_box=box, pbc_atype=atype,
                 pbc_energy=r["energy"].detach().numpy(), pbc_force=r["forces"].detach().numpy().reshape(nf, n, 3),
                 pbc_virial=r["virial"].detach().numpy(), pbc_atom_energy=r["atom_energy"].detach().numpy().reshape(nf, n))
        print(f"{name}: exported, E = {r['energy'].detach().numpy()}")


def stage_deepmd() -> None:
    import deepmd.env

    deepmd.env.SHARED_LIB_DIR = pathlib.Path(tempfile.mkdtemp())
    from deepmd.dpmodel.utils.serialization import load_dp_model
    from deepmd.infer import DeepPot
    from deepmd.pt.utils.serialization import deserialize_to_file

    for name in CASES:
        out = OUT / name
        mine = np.load(out / "mlpot_eval.npz")
        with tempfile.TemporaryDirectory() as tmp:
            pth = str(pathlib.Path(tmp) / "model.pth")
            deserialize_to_file(pth, load_dp_model(str(out / "model.dp")))
            dp = DeepPot(pth)
            coord, box, atype = mine["pbc_coord"], mine["pbc_box"], mine["pbc_atype"]
            nf = coord.shape[0]
            e, f, v, ae, _ = dp.eval(coord.reshape(nf, -1), box.reshape(nf, 9), atype, atomic=True)
        ref = {"pbc_energy": e.reshape(nf), "pbc_force": f.reshape(nf, -1, 3), "pbc_virial": v.reshape(nf, 3, 3),
               "pbc_atom_energy": ae.reshape(nf, -1)}
        np.savez(out / "deepmd_eval.npz", pbc_coord=coord, pbc_box=box, pbc_atype=atype, **ref)
        worst = {k: float(np.max(np.abs(ref[k] - mine[k])) / np.max(np.abs(ref[k]))) for k in ref}
        print(f"{name}: DeePMD-kit DeepPot vs mlpot, max relative difference {worst}")


if __name__ == "__main__":
    {"mlpot": stage_mlpot, "deepmd": stage_deepmd}[sys.argv[1]]()
