"""Make the se_atten / se_atten_v2 DeePMD-kit references of ``tests/test_se_atten.py``.

Run with DeePMD-kit 3.2.0's Python (its compiled op library is hidden: the uncompressed models are
pure PyTorch)::

    /work/dpvenv/bin/python tests/data/se_atten/make_reference.py [OUTDIR]

For every case of :data:`CASES` it

1. builds the DeePMD-kit PyTorch energy model of the case's input (``deepmd.pt.model.model.get_model``,
   seeded random weights);
2. serialises it (``model.serialize()``) and gives the arrays that a fresh model holds at trivial
   values random values instead: descriptor ``davg``/``dstd`` (per center type, the structure DeePMD's
   statistics have: radial mean, one std for the three angular columns), the layer-norm weights and
   biases, ``bias_atom_e`` and ``out_bias``; rebuilds the PyTorch model from that tree
   (``BaseModel.deserialize``) and writes the tree as ``<case>/model.dp``;
3. freezes the model with TorchScript (``deepmd.pt.utils.serialization.deserialize_to_file``, what
   ``dp convert-backend model.dp model.pth`` does) and evaluates it with ``deepmd.infer.DeepPot``:
   two frames of the case's data with their cell, and an open cluster (atoms of the first frame
   within 5 Å of atom 0) without one; writes ``<case>/reference.npz`` (keys ``{pbc,nopbc}_{coord,
   box,atype,energy,force,virial,atom_energy}``);
4. checks DeePMD-kit's NumPy backend (``DeepPot(model.dp)``) against the TorchScript numbers and
   prints the largest relative difference.

Every se_atten case states ``smooth_type_embedding`` explicitly: DeePMD-kit's input default (``argcheck``,
what ``dp train`` applies) is false, the default of its Python constructor ``DescrptDPA1`` is true.

The ``.pth`` files are not kept (TorchScript archives, large). Units: Å, eV, eV/Å, eV.
"""

from __future__ import annotations

import copy
import json
import pathlib
import sys
import tempfile

import deepmd.env

deepmd.env.SHARED_LIB_DIR = pathlib.Path(tempfile.mkdtemp())  # hide the op library built for torch 2.11

import numpy as np  # noqa: E402
import torch  # noqa: E402
from deepmd.dpmodel.utils.serialization import save_dp_model  # noqa: E402
from deepmd.infer import DeepPot  # noqa: E402
from deepmd.pt.model.model import get_model  # noqa: E402
from deepmd.pt.model.model.model import BaseModel  # noqa: E402
from deepmd.pt.utils.serialization import deserialize_to_file  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[3]
WATER = ROOT / "data" / "water" / "data_3"
ALLOY = ROOT / "data" / "alloy_emt"
ALL7 = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]

FIT = {"neuron": [16, 16], "resnet_dt": True, "precision": "float64", "seed": 3}
SMALL = {"neuron": [4, 8, 16], "axis_neuron": 4, "attn": 16, "precision": "float64", "seed": 1}

#: name → (data system, type_map, descriptor)
CASES = {
    # se_atten defaults (concat, not smooth), two attention layers, both-side type embedding; the
    # nonzero davg exercises DeePMD's padding slots (they take the type of the frame's first atom)
    "atten_concat_l2": (WATER, ["O", "H"], {
        "type": "se_atten", "rcut": 4.0, "rcut_smth": 0.5, "sel": 40, "attn_layer": 2,
        "smooth_type_embedding": False, "set_davg_zero": False, **SMALL}),
    # DPA-1 alias, no attention, one-side, 7-element type_map on 4-element data
    "dpa1_concat_l0_one_side": (ALLOY / "AgAuPdPt_solid", ALL7, {
        "type": "dpa1", "rcut": 4.5, "rcut_smth": 2.0, "sel": 48, "attn_layer": 0, "type_one_side": True,
        "smooth_type_embedding": False, "tebd_dim": 4, **SMALL}),
    # strip + smooth, one layer, temperature, no dotr; tebd_dim = 2 ntypes (type-embedding resnet)
    "atten_strip_smooth_l1": (ALLOY / "AlCuNi_solid", ["Al", "Cu", "Ni"], {
        "type": "se_atten", "rcut": 4.5, "rcut_smth": 1.0, "sel": 48, "attn_layer": 1,
        "tebd_input_mode": "strip", "smooth_type_embedding": True, "set_davg_zero": False,
        "temperature": 1.0, "attn_dotr": False, "tebd_dim": 6, **SMALL}),
    # strip, not smooth, one-side, two layers (padding slots again take the first atom's type)
    "atten_strip_l2_one_side": (ALLOY / "CuAu_solid", ["Cu", "Au"], {
        "type": "se_atten", "rcut": 4.5, "rcut_smth": 1.0, "sel": 48, "attn_layer": 2,
        "tebd_input_mode": "strip", "smooth_type_embedding": False, "type_one_side": True,
        "set_davg_zero": False, **SMALL}),
    # DeePMD-kit's compressible example: se_atten_v2, attn_layer 0, one-side
    "v2_l0_one_side": (WATER, ["O", "H"], {
        "type": "se_atten_v2", "rcut": 4.0, "rcut_smth": 0.5, "sel": 40, "attn_layer": 0,
        "type_one_side": True, **SMALL}),
    # se_atten_v2, two layers, 7 elements, tebd_dim = ntypes (identity resnet), tebd bias,
    # scaling_factor, no normalisation, ln_eps, no tebd in the output
    "v2_l2_seven": (ALLOY / "AlCuAgAuNiPdPt_liquid", ALL7, {
        "type": "se_atten_v2", "rcut": 4.5, "rcut_smth": 1.0, "sel": 56, "attn_layer": 2,
        "tebd_dim": 7, "use_tebd_bias": True, "scaling_factor": 0.5, "normalize": False, "ln_eps": 1e-3,
        "concat_output_tebd": False, "activation_function": "gelu", **SMALL}),
}


def load_system(path: pathlib.Path, frames: list[int]):
    type_map = (path / "type_map.raw").read_text().split()
    atype = np.loadtxt(path / "type.raw", dtype=np.int64).reshape(-1)
    coord = np.load(path / "set.000/coord.npy")[frames].reshape(len(frames), -1, 3).astype(np.float64)
    box = np.load(path / "set.000/box.npy")[frames].reshape(len(frames), 3, 3).astype(np.float64)
    return type_map, atype, coord, box


def randomise(tree: dict, rng: np.random.Generator, set_davg_zero: bool) -> None:
    """Give the arrays a fresh model holds at trivial values random ones (in place)."""
    desc = tree["descriptor"]
    davg, dstd = desc["@variables"]["davg"], desc["@variables"]["dstd"]
    nt = davg.shape[0]
    avg_r = rng.uniform(0.05, 0.3, nt) * (0.0 if set_davg_zero else 1.0)
    std_r = rng.uniform(0.1, 0.3, nt)
    std_a = rng.uniform(0.05, 0.2, nt)
    davg[...] = 0.0
    davg[:, :, 0] = avg_r[:, None]
    dstd[:, :, 0] = std_r[:, None]
    dstd[:, :, 1:] = std_a[:, None, None]
    for layer in desc["attention_layers"]["attention_layers"]:
        ln = layer["attn_layer_norm"]["@variables"]
        ln["w"] = 1.0 + 0.2 * rng.standard_normal(ln["w"].shape)
        ln["b"] = 0.1 * rng.standard_normal(ln["b"].shape)
    fit = tree["fitting"]["@variables"]
    fit["bias_atom_e"] = rng.uniform(-3.0, -1.0, fit["bias_atom_e"].shape)
    tree["@variables"]["out_bias"] = rng.uniform(-0.5, 0.5, tree["@variables"]["out_bias"].shape)


def evaluate(dp: DeepPot, coord: np.ndarray, box, atype: np.ndarray) -> dict[str, np.ndarray]:
    nf = coord.shape[0]
    e, f, v, ae, _ = dp.eval(coord.reshape(nf, -1), None if box is None else box.reshape(nf, 9), atype, atomic=True)
    return {"energy": e.reshape(nf), "force": f.reshape(nf, -1, 3), "virial": v.reshape(nf, 3, 3),
            "atom_energy": ae.reshape(nf, -1)}


def main(outdir: str) -> None:
    out_root = pathlib.Path(outdir)
    for k, (name, (system, type_map, descriptor)) in enumerate(CASES.items()):
        torch.manual_seed(100 + k)
        rng = np.random.default_rng(100 + k)
        params = {"type_map": type_map, "descriptor": copy.deepcopy(descriptor), "fitting_net": dict(FIT)}
        model = get_model(copy.deepcopy(params)).to(torch.float64)
        tree = model.serialize()
        randomise(tree, rng, descriptor.get("set_davg_zero", descriptor["type"] != "se_atten_v2"))
        model = BaseModel.deserialize(copy.deepcopy(tree))
        out = out_root / name
        out.mkdir(parents=True, exist_ok=True)
        data = {"backend": "PyTorch", "pt_version": str(torch.__version__), "model": tree,
                "model_def_script": params, "@variables": {}}
        save_dp_model(str(out / "model.dp"), data)
        (out / "input.json").write_text(json.dumps(params, indent=1) + "\n")
        with tempfile.TemporaryDirectory() as tmp:
            pth = str(pathlib.Path(tmp) / "frozen.pth")
            deserialize_to_file(pth, copy.deepcopy(data))
            dp = DeepPot(pth)
            sys_map, atype_sys, coord, box = load_system(system, [0, 7])
            atype = np.array([type_map.index(sys_map[t]) for t in atype_sys])
            ref = {}
            r = evaluate(dp, coord, box, atype)
            ref.update({f"pbc_{key}": v for key, v in r.items()})
            ref.update(pbc_coord=coord, pbc_box=box, pbc_atype=atype)
            # open cluster: the atoms of frame 0 within 5 Å of atom 0 (unwrapped around it)
            d = coord[0] - coord[0, 0]
            frac = d @ np.linalg.inv(box[0])
            d = (frac - np.round(frac)) @ box[0]
            near = np.nonzero(np.linalg.norm(d, axis=1) < 5.0)[0]
            cc, tt = (coord[0, 0] + d[near])[None], atype[near]
            r = evaluate(dp, cc, None, tt)
            ref.update({f"nopbc_{key}": v for key, v in r.items()})
            ref.update(nopbc_coord=cc, nopbc_atype=tt)
            np.savez(out / "reference.npz", **ref)
            dpn = DeepPot(str(out / "model.dp"))  # DeePMD-kit's NumPy backend, as a cross-check
            rn = evaluate(dpn, coord, box, atype)
            worst = max(float(np.max(np.abs(rn[key] - ref[f"pbc_{key}"])) / max(1e-300, float(np.max(np.abs(ref[f"pbc_{key}"])))))
                        for key in ("energy", "force", "virial"))
        print(f"{name}: {type_map} {descriptor['type']} natoms {len(atype)} cluster {len(tt)} "
              f"E {ref['pbc_energy']}  numpy-vs-torchscript max rel diff {worst:.2e}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(pathlib.Path(__file__).resolve().parent))
