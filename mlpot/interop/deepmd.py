"""Import and export DeePMD-kit se_e2_a / se_e2_r energy models (``mlpot import-deepmd`` / ``export-deepmd``).

Formats read
------------
* ``.dp`` (also ``.hlo``): DeePMD-kit's backend-independent serialization as written by
  ``dp convert-backend model.pth model.dp``. An HDF5 file whose root attribute ``json`` holds the
  model tree (JSON); every array of the tree (under an ``@variables`` key) is replaced by the name of
  a root dataset (``/variable_0000``, ``/variable_0001``, … numbered in tree order).
* ``.yaml`` / ``.yml``: the same tree in YAML; an array is a mapping
  ``{"@class": "np.ndarray", "@is_variable": true, "@version": 1, "dtype": "float64", "value": [...]}``.
  Read with ``yaml.safe_load`` (no Python objects).
* ``.pt``: a DeePMD-kit PyTorch *training checkpoint* (``model.ckpt-N.pt``), read with
  ``torch.load(weights_only=True)`` (tensors and plain data only).
* ``.pth``: a DeePMD-kit PyTorch *frozen* (``dp --pt freeze``) or *compressed* (``dp --pt compress``)
  model, a TorchScript archive. Read as data only (:mod:`mlpot.interop.torchscript`: a restricted
  unpickler that knows tensors, storages and inert records of the scripted modules; any other Python
  global is refused before anything runs; the TorchScript code is never loaded). Its
  ``model_def_script`` (DeePMD-kit's input JSON) and ``atomic_model.*`` tensors (named as in a
  training checkpoint) give the model. A compressed model is compressed again by mlpot with DeePMD-kit's
  parameters (``min_nbor_dist``, ``compress_info`` strides / extrapolation / check frequency) and mlpot's
  tables are checked against the file's ``compress_data`` / ``type_embd_data``
  (:func:`apply_deepmd_compression`; measured: 2e-17 relative on the water se_e2_a model, ≤ 2e-15 on
  the bundled tiny se_e2_a (one- and two-sided) / se_atten_v2 models; a float32 model 1.8e-6 to
  1.3e-5, DeePMD-kit tabulating in float32).

No user object is ever unpickled. The tree (``model`` section) that is understood::

    model: {"@class": "Model", type: "standard", type_map, atom_exclude_types: [], pair_exclude_types: [],
            "@variables": {out_bias (1, ntypes, 1), out_std (1, ntypes, 1)},
            descriptor: {type: se_e2_a|se_e2_r, rcut, rcut_smth, sel, neuron, axis_neuron, resnet_dt,
                         type_one_side, set_davg_zero, activation_function, precision, exclude_types: [],
                         env_protection: 0, env_mat: {rcut, rcut_smth, protection: 0, use_exp_switch: false},
                         embeddings: NetworkCollection, "@variables": {davg, dstd (ntypes, nnei, 4|1)}},
            fitting: {type: ener, neuron, resnet_dt, activation_function, precision, numb_fparam: 0,
                      numb_aparam: 0, dim_case_embd: 0, mixed_types: false, nets: NetworkCollection,
                      "@variables": {bias_atom_e (ntypes, 1), ...}}}
    NetworkCollection: {ndim, ntypes, network_type, networks: [net, ...]}, net (ndim 1) = networks[t],
                       net (ndim 2, center c, neighbor t) = networks[c + t·ntypes]
    net: {layers: [{"@variables": {w (n_in, n_out), b (n_out,), idt (n_out,) | null},
                    activation_function, resnet, use_timestep, bias}, ...]}

The attention descriptors (``type: dpa1`` = se_atten, ``se_atten_v2``; :mod:`mlpot.descriptors.se_atten`)
are read from the layout of DeePMD-kit's ``DescrptDPA1.serialize``::

    descriptor: {type: dpa1|se_atten_v2, sel: [n], tebd_dim, tebd_input_mode (dpa1), attn, attn_layer, ...,
                 type_embedding: {ntypes, type_map, embedding: {layers: [{w (ntypes, tebd_dim), b | null}]}},
                 embeddings: NetworkCollection (ndim 0, one net), embeddings_strip (strip mode),
                 attention_layers: {attention_layers: [{attention_layer: {in_proj, out_proj},
                                                        attn_layer_norm: {eps, w, b}}, ...]},
                 "@variables": {davg, dstd (ntypes, sel, 4)}}
    fitting: {..., mixed_types: true, nets: NetworkCollection (ndim 0, one net)}

Anything else (another descriptor such as DPA-2/3 or hybrid, a dipole/polar/DOS/property
fitting, a spin/linear/ZBL model, frame or atomic parameters, excluded types, a compressed model
whose tables mlpot cannot rebuild) is refused with one :class:`~mlpot.errors.ModelError` line naming
what was found and where.

Mapping onto :class:`mlpot.model.EnergyModel`
---------------------------------------------
* ``descriptor.davg``/``dstd`` (ntypes, nnei, k) → ``descriptor.davg``/``dstd`` (ntypes, k): DeePMD
  tiles one row per center type over all nnei neighbor slots; the import checks that the rows are
  indeed slot-independent (otherwise the model cannot be represented and is refused).
* embedding layer ``w, b, idt`` → ``descriptor.embeddings.<t>`` (type_one_side) or ``<c>_<t>``
  ``.layers.<k>.{matrix, bias, idt}``; fitting net of type t → ``fitting.nets.<t>.layers.<k>``.
* ``fitting.energy_bias[t] = fitting.bias_atom_e[t, 0] + model.out_bias[0, t, 0]`` (DeePMD adds both;
  ``out_std`` is not used by energy models). Export writes the whole bias into ``out_bias`` and zeros
  into ``bias_atom_e``, with ``out_std = 1``.

DeePMD-kit behaviours that the import exposes (and that mlpot's own model reproduces)
-------------------------------------------------------------------------------------
Verified to 1e-10 relative in energy and 1e-9 eV/Å in forces against DeePMD-kit 3.2.0's own
``DeepPot`` on the bundled reference (``tests/data/deepmd_water_se_e2_a``):

1. *Empty neighbor slots.* DeePMD pads the neighbors of each type to ``sel[t]`` slots; an empty slot
   has a zero environment row *before* normalisation, so after it the row is ``−davg[c]/dstd[c]``
   (c = center type), and it is embedded and summed like a real neighbor. mlpot adds these
   ``sel[t] − n_t(i)`` padding contributions analytically (:mod:`mlpot.descriptors.se_e2_a`).
2. *Neighbor order.* DeePMD sorts neighbors by type (slot blocks of ``sel[0]``, ``sel[1]``, …) and
   within a type by distance; the descriptor is a sum over slots, so the order only matters when a
   type overflows ``sel`` (DeePMD then silently drops the farthest; mlpot raises a ModelError).
3. *Scaling.* ``A = (1/nnei) Σ_slots R̃ᵀ G`` with ``nnei = Σ_t sel[t]`` (not the number of real
   neighbors), ``D = Aᵀ A[:, :axis_neuron]``; se_e2_r: ``D = (1/5)(1/nnei) Σ_slots G``.
4. *Residual layers.* ``y = x + idt ⊙ tanh(x W + b)`` (or ``[x, x] + …`` when the width doubles);
   a timestep ``idt`` exists only where such a skip exists, initialised N(0.1, 0.001²) by DeePMD's
   PyTorch backend (mlpot: :mod:`mlpot.nn`).
5. *Learning rate.* DeePMD's default ``exp`` schedule is *stepped*:
   ``lr(t) = start_lr · r^⌊t / decay_steps⌋`` (``smooth: true`` gives ``r^(t/decay_steps)``);
   mlpot's :class:`mlpot.train.schedule.ExpDecayLR` is the stepped one (checked against the ``lr``
   column of DeePMD's own ``lcurve.out`` in the tests).
"""

from __future__ import annotations

import datetime
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from mlpot.errors import MlpotError, ModelError

#: the (canonical, registry) descriptor names whose weights this module maps; their aliases come
#: from :data:`mlpot.descriptors.DESCRIPTORS`
MAPPED_DESCRIPTORS = ("se_e2_a", "se_e2_r", "se_atten", "se_atten_v2")
#: suffixes of the files :func:`write_deepmd_file` writes
EXPORT_SUFFIXES = (".dp", ".hlo", ".yaml", ".yml")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_FITTING_KINDS = {
    "dipole": "a dipole model",
    "polar": "a polarizability model",
    "dos": "a DOS model",
    "property": "a property model",
    "ener": "an energy model",
}


# ----------------------------------------------------------------------------------------------- reading
def _describe_head(p: Path, head: bytes) -> str:
    shown = head[:16]
    return f"a file with suffix '{p.suffix or '(none)'}' starting with {shown!r}"


def read_deepmd_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a DeePMD-kit model file into its serialization tree (arrays as numpy).

    Returns the top-level dict (``model``, ``model_def_script``, ``software``, ``version``, …).
    Raises :class:`ModelError` (one line naming the file) for a missing, truncated or foreign file.
    """
    p = Path(path)
    where = f"DeePMD-kit model '{p}'"
    if not p.exists():
        raise ModelError(f"{where}: no such file")
    if p.is_dir():
        raise ModelError(f"{where}: is a directory, expected a .dp, .yaml or .pt model file")
    if p.stat().st_size == 0:
        raise ModelError(f"{where}: is empty")
    with open(p, "rb") as fh:
        head = fh.read(64)
    suffix = p.suffix.lower()
    if head.startswith(_HDF5_MAGIC):
        return _read_hdf5(p, where)
    if suffix in (".dp", ".hlo"):
        raise ModelError(
            f"{where}: not an HDF5 file (expected DeePMD-kit's .dp format, found {_describe_head(p, head)}); "
            "the file is truncated, corrupted or of another type"
        )
    if head.startswith(_ZIP_MAGIC) or suffix in (".pt", ".pth"):
        return _read_torch(p, where, head)
    if suffix in (".yaml", ".yml"):
        return _read_yaml(p, where)
    raise ModelError(
        f"{where}: not a DeePMD-kit model file: expected .dp (HDF5), .yaml or a PyTorch training checkpoint .pt, "
        f"found {_describe_head(p, head)}"
    )


def _map_variables(tree: Any, convert: Callable[[Any, str], Any], path: str = "", in_vars: bool = False) -> Any:
    """Copy of ``tree`` with every leaf below an ``@variables`` key passed through ``convert(leaf, path)``."""
    if isinstance(tree, dict):
        if in_vars and tree.get("@class") == "np.ndarray":
            return convert(tree, path)
        return {
            k: _map_variables(v, convert, f"{path}.{k}" if path else str(k), in_vars or k == "@variables")
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [_map_variables(v, convert, f"{path}[{i}]", in_vars) for i, v in enumerate(tree)]
    if in_vars and tree is not None:
        return convert(tree, path)
    return tree


def _read_hdf5(p: Path, where: str) -> dict[str, Any]:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            if "json" not in f.attrs:
                raise ModelError(f"{where}: an HDF5 file without the 'json' attribute; not a DeePMD-kit .dp model")
            raw = f.attrs["json"]
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            try:
                tree = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ModelError(f"{where}: attribute 'json' is not valid JSON ({exc})") from None
            if not isinstance(tree, dict):
                raise ModelError(f"{where}: attribute 'json' holds a {type(tree).__name__}, expected a JSON object")

            def load(name: Any, key: str) -> np.ndarray:
                if not isinstance(name, str) or name not in f:
                    raise ModelError(
                        f"{where}: {key} refers to dataset {name!r}, which the file does not hold (truncated or corrupted)"
                    )
                arr = np.asarray(f[name][()])
                if arr.dtype.kind not in "fiub":
                    raise ModelError(f"{where}: dataset {name} ({key}) has dtype {arr.dtype}, expected numbers")
                return arr.copy()

            return _map_variables(tree, load)
    except MlpotError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError/KeyError/... for damaged files
        reason = " ".join(str(exc).split())[:200]
        raise ModelError(
            f"{where}: cannot read the HDF5 file ({type(exc).__name__}: {reason}); it is truncated or corrupted"
        ) from None


def _read_yaml(p: Path, where: str) -> dict[str, Any]:
    import yaml

    try:
        with open(p, encoding="utf-8") as fh:
            tree = yaml.safe_load(fh)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ModelError(f"{where}: not valid YAML ({reason}); the file is truncated, corrupted or of another type") from None
    if not isinstance(tree, dict):
        raise ModelError(f"{where}: YAML holds a {type(tree).__name__}, expected a DeePMD-kit model mapping")

    def load(node: Any, key: str) -> np.ndarray:
        if isinstance(node, (int, float)) and not isinstance(node, bool):  # a plain number (min_nbor_dist)
            return np.asarray(node)
        if not (isinstance(node, dict) and node.get("@class") == "np.ndarray" and "value" in node):
            raise ModelError(f"{where}: {key}: expected an np.ndarray mapping (dtype, value), found {type(node).__name__}")
        try:
            dtype = np.dtype(str(node.get("dtype", "float64")))
            if dtype.kind not in "fiub":
                raise TypeError(f"dtype {dtype} is not numeric")
            return np.asarray(node["value"], dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{where}: {key}: bad array ({exc})") from None

    return _map_variables(tree, load)


def _read_torch(p: Path, where: str, head: bytes) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(
            f"{where}: not a readable PyTorch archive ({exc}); the file is truncated, corrupted or of another type "
            f"({_describe_head(p, head)})"
        ) from None
    from mlpot.interop.torchscript import is_script_archive

    if is_script_archive(names):
        return _read_script(p, where)
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        raise ModelError(
            f"{where}: a partial TorchScript archive (code/ or constants.pkl without the other), not a DeePMD-kit "
            f"frozen model; convert the original with 'dp convert-backend {p.name} model.dp' and import model.dp"
        )
    import torch

    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        reason = " ".join(str(exc).split())[:200]
        raise ModelError(
            f"{where}: refused by the weights-only loader ({type(exc).__name__}: {reason}); "
            "truncated, corrupted, or not a DeePMD-kit checkpoint"
        ) from None
    if isinstance(payload, dict) and payload.get("format") == "mlpot-model":
        raise ModelError(f"{where}: is an mlpot model file, not a DeePMD-kit model (it needs no import)")
    return _checkpoint_to_tree(payload, where)


# ------------------------------------------------------------ TorchScript frozen / compressed model → tree
def _read_script(p: Path, where: str) -> dict[str, Any]:
    """The serialization tree of a DeePMD-kit PyTorch frozen model (``dp --pt freeze``) or compressed
    model (``dp --pt compress``), a TorchScript archive read by :mod:`mlpot.interop.torchscript` (data
    only: its TorchScript code is never run). The module tree holds DeePMD-kit's input as the JSON
    string ``model_def_script`` and the weights under ``atomic_model.*`` with the names of a training
    checkpoint; a compressed model adds per embedding net ``compress_info`` ([lower, upper,
    extrapolate·upper, stride0, stride1, check_frequency]) and ``compress_data`` ([nspline, 6·ng]), the
    descriptor's ``type_embd_data`` (se_atten_v2 strip gate) and the model's ``min_nbor_dist`` (Å),
    returned as ``tree["deepmd_compression"]``."""
    import torch

    from mlpot.interop.torchscript import ScriptObject, read_script_archive, walk_tensors

    root = read_script_archive(p, where)
    state = root.state if isinstance(root.state, dict) else {}
    if not root.qualname.startswith("__torch__.deepmd.") or "model_def_script" not in state:
        raise ModelError(
            f"{where}: a TorchScript model that is not a DeePMD-kit model (root class "
            f"{root.qualname.removeprefix('__torch__.')}, no model_def_script); mlpot reads DeePMD-kit frozen/compressed "
            "models (dp freeze, dp compress), .dp/.yaml (from dp convert-backend) and training checkpoints .pt"
        )
    script = state["model_def_script"]
    try:
        params = json.loads(script) if isinstance(script, str) else None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: model_def_script is not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise ModelError(f"{where}: model_def_script holds a {type(params).__name__}, expected DeePMD-kit's model JSON object")
    tensors = dict(walk_tensors(root))
    sd: dict[str, Any] = {f"model.Default.{k}": v for k, v in tensors.items() if k.startswith("atomic_model.")}
    sd["_extra_state"] = {"model_params": params}
    tree = _checkpoint_to_tree({"model": sd}, where)
    tree["software"] = "deepmd-kit (PyTorch frozen model)"
    tree["backend"] = "pytorch (TorchScript)"
    if isinstance(tensors.get("min_nbor_dist"), torch.Tensor) and tensors["min_nbor_dist"].numel() == 1:
        tree["@variables"] = {"min_nbor_dist": tensors["min_nbor_dist"].detach().to(torch.float64).numpy()}
    am = state.get("atomic_model")
    desc = am.state.get("descriptor") if isinstance(am, ScriptObject) and isinstance(am.state, dict) else None
    dstate = desc.state if isinstance(desc, ScriptObject) and isinstance(desc.state, dict) else {}
    flags = {k: dstate.get(k) for k in ("compress", "geo_compress", "tebd_compress") if k in dstate}
    if flags.get("compress") is not True and flags.get("geo_compress") is not True:
        # uncompressed, or only DeePMD-kit's precomputed type-embedding table (tebd_compress, dpa1 with
        # attention layers: an exact function of the weights, which mlpot evaluates from the weights;
        # checked once on a dpa1 attn_layer 1 strip model: DeePMD-kit's numbers to 4e-16 relative)
        return tree
    import re

    # the tables live in the descriptor's block (se_a: .sea., se_atten: .se_atten.) or in the
    # descriptor itself (se_r)
    pattern = re.compile(r"^(atomic_model\.descriptor\.(?:\w+\.)?)compress_data\.\d+$")
    blocks = {m.group(1) for m in map(pattern.match, tensors) if m}
    if len(blocks) != 1:
        raise ModelError(f"{where}: a compressed model (descriptor {flags}) whose tables are in "
                         f"{sorted(blocks) or 'no block'}; expected one descriptor block with compress_data/compress_info")
    pre = blocks.pop()

    def numbered(name: str) -> list[np.ndarray]:
        keys = sorted((int(k[len(pre + name) + 1:]), k) for k in tensors
                      if k.startswith(pre + name + ".") and k[len(pre + name) + 1:].isdigit())
        if [i for i, _ in keys] != list(range(len(keys))):
            raise ModelError(f"{where}: the compressed model's {name} tables are numbered {[i for i, _ in keys]}")
        out = []
        for _, k in keys:
            t = tensors[k].detach()
            arr = t.to(torch.float64).numpy()
            if name == "compress_info" and t.dtype != torch.float64:
                # a float32 model stores its strides in float32: back to the decimal DeePMD-kit was given
                arr = np.array([float(np.format_float_positional(np.float32(v))) for v in arr])
            out.append(arr)
        return out

    r_min = tensors.get("min_nbor_dist")
    if r_min is None or r_min.numel() != 1:
        raise ModelError(f"{where}: a compressed model without its min_nbor_dist (expected a scalar tensor)")
    ted = tensors.get(pre + "type_embd_data")
    tree["deepmd_compression"] = {
        "flags": flags, "min_nbor_dist": float(r_min), "info": numbered("compress_info"), "data": numbered("compress_data"),
        "type_embd_data": None if ted is None else ted.detach().to(torch.float64).numpy(),
    }
    return tree


def apply_deepmd_compression(model, comp: dict[str, Any], where: str, rtol: float = 1e-10) -> dict[str, Any]:
    """Compress the imported ``model`` (in place) as DeePMD-kit compressed it: the same minimum
    neighbor distance (Å), stride, extrapolation factor and check frequency, read from the file's
    ``compress_info``; then check that mlpot's tables (rebuilt from the weights, float64
    coefficients) equal the file's ``compress_data`` (and ``type_embd_data``) to ``rtol`` relative to
    the table's largest value |G|: coefficient a_k compared as a_k·Δ^k (its share of G at the end of
    its interval of width Δ), since a4, a5 of any float64 tabulation carry noise ~ eps·|G|/Δ^k
    (float32 models: 1e-4, DeePMD-kit tabulates them in float32). Returns the comparison (max
    relative deviations). ModelError for a table set mlpot cannot rebuild or that differs from
    DeePMD-kit's (the file's tables are then inconsistent with its weights, or a DeePMD-kit
    tabulation rule changed)."""
    import torch

    desc = model.descriptor
    try:
        model.check_compressible(where)
    except ModelError as exc:
        raise ModelError(f"{where}: a DeePMD-kit compressed model, but mlpot cannot tabulate it: {exc}") from None
    infos, datas = comp["info"], comp["data"]
    keys = desc.table_keys()
    ntypes = len(model.type_map)
    if len(infos) != len(keys) or len(datas) != len(keys) or any(np.shape(i) != (6,) for i in infos):
        raise ModelError(f"{where}: {len(infos)} compress_info / {len(datas)} compress_data tables, expected {len(keys)} "
                         f"(one per embedding net) with 6 parameters each")
    # DeePMD-kit's table index: neighbor type t (type_one_side), else center c + t·ntypes (mlpot key "c_t")
    if getattr(desc, "type_one_side", False) or len(keys) == 1:
        order = list(range(len(keys)))
    else:
        order = [int(k.split("_")[0]) + int(k.split("_")[1]) * ntypes for k in keys]
    info0 = infos[0]
    step, stride1, check = float(info0[3]), float(info0[4]), int(round(float(info0[5])))
    extrapolate = float(info0[2]) / float(info0[1])
    for i, info in enumerate(infos):
        if abs(info[3] - step) > 1e-12 * step or abs(info[4] - stride1) > 1e-12 * stride1 or info[5] != info0[5] or \
                abs(info[2] / info[1] - extrapolate) > 1e-12 * extrapolate:
            raise ModelError(f"{where}: compress_info[{i}] = {info.tolist()} has other strides/extrapolation than "
                             f"compress_info[0] = {info0.tolist()}; mlpot tabulates all nets alike")
    if abs(stride1 - 10.0 * step) > 1e-12 * stride1:
        raise ModelError(f"{where}: compress_info strides {step:g} / {stride1:g}; mlpot's tables use stride1 = 10·step "
                         "(DeePMD-kit's rule for se_e2_a, se_e2_r, se_atten_v2)")
    model.compress(comp["min_nbor_dist"], step, extrapolate, check)
    max_dev = 0.0
    for key, j in zip(keys, order):
        mine_info = getattr(desc, f"compress_info_{key}").detach().to(torch.float64).numpy()
        theirs = infos[j]
        if not np.allclose(mine_info[:5], theirs[:5], rtol=1e-12, atol=1e-12):
            raise ModelError(
                f"{where}: table range of embedding net {key}: DeePMD-kit's compress_info[{j}] = {theirs.tolist()}, "
                f"mlpot's rule (min_nbor_dist {comp['min_nbor_dist']:.6g} Å, davg/dstd) gives {mine_info.tolist()}"
            )
        mine = getattr(desc, f"compress_data_{key}").detach().to(torch.float64).numpy()
        if mine.shape != datas[j].shape:
            raise ModelError(f"{where}: compress_data[{j}] has shape {datas[j].shape}, mlpot's table {mine.shape}")
        # compare a_k·Δ^k (coefficient k's contribution at the end of its interval of width Δ): a4, a5
        # carry rounding noise ~ eps·|G|/Δ^k in any float64 tabulation, harmless in G itself
        n0 = int(round((theirs[1] - theirs[0]) / step))
        width = np.where(np.arange(mine.shape[0]) < n0, step, stride1)
        powers = width[:, None, None] ** np.arange(6)[None, None, :]
        ng = mine.shape[1] // 6
        diff = np.abs(mine - datas[j]).reshape(-1, ng, 6) * powers
        scale = max(float(np.abs(datas[j].reshape(-1, ng, 6)[..., 0]).max()), 1e-300)
        max_dev = max(max_dev, float(diff.max()) / scale)
    ted = comp.get("type_embd_data")
    mine_ted = getattr(desc, "type_embd_data", None)
    if (ted is None) != (mine_ted is None):
        raise ModelError(f"{where}: the file {'has no' if ted is None else 'has a'} type_embd_data table, mlpot's "
                         f"{desc.type_name} {'needs' if ted is None else 'has none'}")
    max_dev_gate = 0.0
    if ted is not None:
        mt = mine_ted.detach().to(torch.float64).numpy()
        if mt.shape != ted.shape:
            raise ModelError(f"{where}: type_embd_data has shape {ted.shape}, mlpot's type-gate table {mt.shape}")
        max_dev_gate = float(np.abs(mt - ted).max()) / max(float(np.abs(ted).max()), 1e-300)
    # a float32 DeePMD-kit model tabulates in float32 (measured: 1.3e-5 from mlpot's float64 coefficients
    # on the water se_e2_a model); mlpot keeps its own float64-built tables, cast to float32
    tol = max(rtol, 1e-4) if desc.dtype != torch.float64 else rtol
    if max_dev > tol or max_dev_gate > tol:
        raise ModelError(
            f"{where}: mlpot's tables rebuilt from the model's weights differ from the file's compress_data by "
            f"{max_dev:.2e} (type_embd_data {max_dev_gate:.2e}) relative, more than {tol:g}; the file's tables do not "
            "belong to its weights"
        )
    return {"max_rel_dev_tables": max_dev, "max_rel_dev_type_table": max_dev_gate, "n_tables": len(keys)}


# --------------------------------------------------------------------------- PyTorch checkpoint → tree
def _checkpoint_to_tree(payload: Any, where: str) -> dict[str, Any]:
    """Rebuild the serialization tree of an se_e2_a/se_e2_r energy model from a DeePMD-kit PyTorch
    training checkpoint ({"model": state_dict with "_extra_state": {"model_params": ...}, ...})."""
    sd = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(sd, dict) or not isinstance(sd.get("_extra_state"), dict):
        found = f"keys {sorted(map(str, payload))[:6]}" if isinstance(payload, dict) else f"a {type(payload).__name__}"
        raise ModelError(f"{where}: not a DeePMD-kit PyTorch checkpoint (no model._extra_state), found {found}")
    params = sd["_extra_state"].get("model_params")
    if not isinstance(params, dict):
        raise ModelError(f"{where}: model._extra_state.model_params missing; not a DeePMD-kit PyTorch checkpoint")
    if "model_dict" in params:
        raise ModelError(f"{where}: a multi-task checkpoint (model_params.model_dict); import a single-task model")
    mtype = params.get("type", "standard")
    dcfg = params.get("descriptor", {})
    fcfg = params.get("fitting_net", {})
    _check_kinds(where, mtype, dcfg.get("type") if isinstance(dcfg, dict) else None,
                 fcfg.get("type", "ener") if isinstance(fcfg, dict) else None, "model_params")
    prefix = "model.Default.atomic_model."
    tensors = {k[len(prefix):]: v.detach().cpu().numpy() for k, v in sd.items()
               if k.startswith(prefix) and hasattr(v, "detach")}
    if not tensors:
        raise ModelError(f"{where}: no tensors under '{prefix}' in the checkpoint's model state")
    dkeys = [k for k in tensors if k.startswith("descriptor.") and k.endswith(".mean")]
    if len(dkeys) != 1:
        raise ModelError(f"{where}: cannot locate the descriptor statistics (found {dkeys})")
    dpre = dkeys[0][: -len("mean")]

    def get(name: str) -> np.ndarray:
        if name not in tensors:
            raise ModelError(f"{where}: checkpoint tensor 'model.Default.atomic_model.{name}' missing")
        return tensors[name]

    def collection(pre: str, activation: str, fitting: bool) -> dict[str, Any]:
        idx = sorted({int(k[len(pre):].split(".")[0]) for k in tensors if k.startswith(pre)})
        nets = []
        for i in range(len(idx)):
            nl = sorted({int(k[len(f"{pre}{i}.layers."):].split(".")[0]) for k in tensors if k.startswith(f"{pre}{i}.layers.")})
            layers = []
            for k in range(len(nl)):
                lp = f"{pre}{i}.layers.{k}."
                last = fitting and k == len(nl) - 1
                idt = tensors.get(lp + "idt")
                layers.append({
                    "activation_function": "none" if last else activation,
                    "resnet": not last, "bias": True, "use_timestep": idt is not None,
                    "@variables": {"w": get(lp + "matrix"), "b": get(lp + "bias"), "idt": idt},
                })
            nets.append({"layers": layers})
        return {"networks": nets}

    ntypes = len(params.get("type_map", []))
    if _is_mixed_types(dcfg.get("type")):
        return _atten_checkpoint_to_tree(params, dcfg, fcfg, dpre, tensors, get, collection)
    emb = collection(dpre + "filter_layers.networks.", dcfg.get("activation_function", "tanh"), False)
    emb["ndim"] = 1 if len(emb["networks"]) == ntypes else 2
    desc = dict(dcfg)
    desc.pop("seed", None)
    desc["type_one_side"] = emb["ndim"] == 1
    desc["embeddings"] = emb
    desc["@variables"] = {"davg": get(dpre + "mean"), "dstd": get(dpre + "stddev")}
    fit = {k: v for k, v in fcfg.items() if k != "seed"}
    fit["nets"] = collection("fitting_net.filter_layers.networks.", fcfg.get("activation_function", "tanh"), True)
    fit["nets"]["ndim"] = 1
    fit["@variables"] = {"bias_atom_e": get("fitting_net.bias_atom_e")}
    model = {k: v for k, v in params.items() if k not in ("descriptor", "fitting_net")}
    model.update(type="standard", descriptor=desc, fitting=fit, **{"@variables": {"out_bias": get("out_bias")}})
    return {"model": model, "model_def_script": params, "software": "deepmd-kit (PyTorch checkpoint)"}


def _atten_checkpoint_to_tree(params: dict, dcfg: dict, fcfg: dict, dpre: str, tensors: dict, get, collection) -> dict:
    """The serialization tree of a dpa1 / se_atten_v2 energy model from its training-checkpoint tensors
    (``descriptor.se_atten.*``, ``descriptor.type_embedding.*``, ``fitting_net.*``): the layout of
    ``DescrptDPA1.serialize`` that :func:`_load_atten_descriptor` reads. Hyperparameters come from
    the checkpoint's ``model_params`` (normalised by DeePMD-kit's argcheck at training time)."""
    act = dcfg.get("activation_function", "tanh")
    desc = {k: v for k, v in dcfg.items() if k != "seed"}
    sel = desc.get("sel")
    desc["sel"] = [int(sel)] if isinstance(sel, int) else sel
    desc["embeddings"] = collection(dpre + "filter_layers.networks.", act, False)
    if any(k.startswith(dpre + "filter_layers_strip.networks.") for k in tensors):
        desc["embeddings_strip"] = collection(dpre + "filter_layers_strip.networks.", act, False)
    layers = []
    n_layers = len({k[len(dpre + "dpa1_attention.attention_layers."):].split(".")[0] for k in tensors
                    if k.startswith(dpre + "dpa1_attention.attention_layers.")})
    for i in range(n_layers):
        lp = f"{dpre}dpa1_attention.attention_layers.{i}."
        proj = {name: {"activation_function": "none", "resnet": False, "bias": True, "use_timestep": False,
                       "@variables": {"w": get(f"{lp}attention_layer.{name}.matrix"),
                                      "b": get(f"{lp}attention_layer.{name}.bias"), "idt": None}}
                for name in ("in_proj", "out_proj")}
        ln_eps = dcfg.get("ln_eps")
        layers.append({"attention_layer": {"num_heads": 1, "bias": True, **proj},
                       "attn_layer_norm": {"eps": 1e-5 if ln_eps is None else ln_eps,
                                           "@variables": {"w": get(f"{lp}attn_layer_norm.matrix"),
                                                          "b": get(f"{lp}attn_layer_norm.bias")}}})
    desc["attention_layers"] = {"attention_layers": layers}
    tpre = "descriptor.type_embedding.embedding.embedding_net.layers.0."
    desc["type_embedding"] = {"ntypes": len(params.get("type_map", [])), "use_econf_tebd": dcfg.get("use_econf_tebd", False),
                              "embedding": {"layers": [{
                                  "activation_function": "Linear", "resnet": True, "use_timestep": False,
                                  "bias": tpre + "bias" in tensors,
                                  "@variables": {"w": get(tpre + "matrix"), "b": tensors.get(tpre + "bias"), "idt": None}}]}}
    desc["@variables"] = {"davg": get(dpre + "mean"), "dstd": get(dpre + "stddev")}
    fit = {k: v for k, v in fcfg.items() if k != "seed"}
    fit["nets"] = collection("fitting_net.filter_layers.networks.", fcfg.get("activation_function", "tanh"), True)
    fit["nets"]["ndim"] = 0
    fit["mixed_types"] = True
    fit["@variables"] = {"bias_atom_e": get("fitting_net.bias_atom_e")}
    model = {k: v for k, v in params.items() if k not in ("descriptor", "fitting_net")}
    model.update(type="standard", descriptor=desc, fitting=fit, **{"@variables": {"out_bias": get("out_bias")}})
    return {"model": model, "model_def_script": params, "software": "deepmd-kit (PyTorch checkpoint)"}


def _is_mixed_types(name: Any) -> bool:
    """Whether descriptor ``name`` is a type-embedding (mixed-types) descriptor such as se_atten."""
    from mlpot.descriptors import DESCRIPTORS

    return name in DESCRIPTORS and bool(getattr(DESCRIPTORS[name], "mixed_types", False))


# ------------------------------------------------------------------------------------ tree → EnergyModel
def _check_kinds(where: str, mtype: Any, dtype: Any, ftype: Any, root: str = "model") -> None:
    if mtype not in ("standard", None):
        raise ModelError(
            f"{where}: model type {mtype!r} ({root}.type) is not supported; mlpot imports only standard energy "
            "models with an se_e2_a or se_e2_r descriptor"
        )
    from mlpot.descriptors import DESCRIPTORS

    if dtype not in DESCRIPTORS or DESCRIPTORS.canonical(dtype) not in MAPPED_DESCRIPTORS:
        raise ModelError(
            f"{where}: descriptor {dtype!r} ({root}.descriptor.type) is not supported by mlpot; "
            "supported: se_e2_a, se_e2_r, se_atten (dpa1), se_atten_v2"
        )
    if ftype != "ener":
        kind = _FITTING_KINDS.get(str(ftype), f"fitting {ftype!r}")
        fit_key = "fitting_net" if root == "model_params" else "fitting"
        raise ModelError(
            f"{where}: {kind} ({root}.{fit_key}.type = {ftype!r}) is not supported; mlpot imports energy models only"
        )


class _Tree:
    """Typed access into the serialization tree with key paths in every error message."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, msg: str) -> ModelError:
        return ModelError(f"{self.where}: {msg}")

    def get(self, d: dict, key: str, path: str, kind: Any = None, default: Any = ...) -> Any:
        if not isinstance(d, dict) or key not in d:
            if default is not ...:
                return default
            raise self.fail(f"missing key '{path}.{key}' (truncated file or not a DeePMD-kit model?)")
        value = d[key]
        if kind is not None and not isinstance(value, kind):
            raise self.fail(f"'{path}.{key}' is a {type(value).__name__}, expected {getattr(kind, '__name__', kind)}")
        return value

    def array(self, d: dict, key: str, path: str, shape: Optional[tuple] = None, optional: bool = False) -> Optional[np.ndarray]:
        value = self.get(self.get(d, "@variables", path, dict), key, f"{path}.@variables", default=None)
        if value is None:
            if optional:
                return None
            raise self.fail(f"missing array '{path}.@variables.{key}'")
        arr = np.asarray(value)
        if shape is not None and tuple(arr.shape) != tuple(shape):
            raise self.fail(f"'{path}.@variables.{key}' has shape {tuple(arr.shape)}, expected {tuple(shape)}")
        return arr


#: keys of the serialization tree that hold weights or serialization bookkeeping, not hyperparameters
_TREE_ONLY = {
    "descriptor": {"@class", "@version", "@variables", "embeddings", "env_mat", "type_map", "ntypes",
                   "embeddings_strip", "attention_layers", "type_embedding"},
    "fitting": {"@class", "@version", "@variables", "nets", "var_name", "ntypes", "dim_descrpt", "type_map"},
}


def model_config_from_tree(tree: dict[str, Any], where: str = "DeePMD-kit model"):
    """The :class:`~mlpot.config.model.ModelConfig` of a serialization tree; checks support (the
    neutral-value table of :mod:`mlpot.config.deepmd_compat` is the one list of refused features)."""
    from mlpot.config.base import validate
    from mlpot.config.deepmd_compat import NEUTRAL, apply_tables
    from mlpot.config.model import ModelConfig
    from mlpot.errors import ConfigError

    t = _Tree(where)
    m = t.get(tree, "model", "", dict)
    d = t.get(m, "descriptor", "model", dict)
    f = t.get(m, "fitting", "model", dict)
    _check_kinds(where, m.get("type", "standard"), d.get("type"), f.get("type", "ener"))
    type_map = t.get(m, "type_map", "model", list)
    if not type_map or not all(isinstance(x, str) for x in type_map):
        raise t.fail(f"'model.type_map' = {type_map!r}, expected a list of element names")
    for key, kind in (("rcut", (int, float)), ("rcut_smth", (int, float)), ("sel", list), ("neuron", list)):
        t.get(d, key, "model.descriptor", kind)  # hyperparameters a stored model always records
    if d["type"] in ("se_e2_a", "se_a"):
        t.get(d, "axis_neuron", "model.descriptor", int)
    desc = {k: v for k, v in d.items() if k not in _TREE_ONLY["descriptor"]}
    desc.setdefault("type_one_side", d["type"] in ("se_e2_r", "se_r"))
    fit = {k: v for k, v in f.items() if k not in _TREE_ONLY["fitting"]}
    from mlpot.descriptors import DESCRIPTORS

    if getattr(DESCRIPTORS.get(d["type"]).obj, "mixed_types", False):
        # one fitting net for all types: what DeePMD-kit always builds for a type-embedding descriptor
        if fit.pop("mixed_types", True) is not True:
            raise t.fail("'model.fitting.mixed_types' = false, expected true for a descriptor with type embedding")
    data = {"type_map": list(type_map), "descriptor": desc, "fitting_net": fit}
    data.update({k: m[k] for k in NEUTRAL["model"] if k in m})
    from pydantic import ValidationError

    from mlpot.config.base import format_error

    try:
        apply_tables("env_mat", dict(d.get("env_mat") or {}))
    except ValidationError as exc:
        raise t.fail(str(format_error(exc, prefix=("model", "descriptor", "env_mat")))) from None
    try:
        cfg = validate(ModelConfig, data, prefix=("model",))
    except ConfigError as exc:  # name the tree's key: its fitting section is "fitting"
        raise t.fail(str(exc).replace("model.fitting_net", "model.fitting")) from None
    return cfg


def model_from_tree(tree: dict[str, Any], where: str = "DeePMD-kit model", device: Any = None):
    """Build an :class:`mlpot.model.EnergyModel` holding the weights and statistics of a DeePMD-kit
    serialization tree (see the module docstring). Raises :class:`ModelError`."""
    import torch

    from mlpot.model import EnergyModel

    t = _Tree(where)
    cfg = model_config_from_tree(tree, where)
    try:
        model = EnergyModel.from_config(cfg, device="cpu")
    except MlpotError as exc:
        raise t.fail(f"cannot build the equivalent mlpot model: {exc}") from None
    m, d, f = tree["model"], tree["model"]["descriptor"], tree["model"]["fitting"]
    ntypes = len(cfg.type_map)
    mixed = bool(getattr(model.descriptor, "mixed_types", False))
    sel = cfg.descriptor.sel
    if mixed:
        nnei = int(sel)
    else:
        if not isinstance(sel, list) or len(sel) != ntypes:
            raise t.fail(f"'model.descriptor.sel' = {sel!r}, expected {ntypes} entries (one per type)")
        nnei = sum(sel)
    k = 1 if cfg.descriptor.type == "se_e2_r" else 4
    state = model.state_dict()
    new: dict[str, np.ndarray] = {}

    for name in ("davg", "dstd"):
        arr = t.array(d, name, "model.descriptor", (ntypes, nnei, k))
        if not np.array_equal(arr, np.broadcast_to(arr[:, :1, :], arr.shape)):
            raise t.fail(
                f"'model.descriptor.@variables.{name}' differs between neighbor slots; mlpot keeps one row per "
                "center type (DeePMD-kit's own statistics are slot-independent)"
            )
        new[f"descriptor.{name}"] = arr[:, 0, :]

    def load_layers(layers: Any, npath: str, base_prefix: str) -> None:
        """The layers of one DeePMD-kit network (list of Layer trees) into mlpot's ``<base_prefix>.layers.<j>``."""
        mine = sorted({int(n[len(base_prefix) + 8:].split(".")[0]) for n in state if n.startswith(f"{base_prefix}.layers.")})
        if not isinstance(layers, list) or len(layers) != len(mine):
            got = len(layers) if isinstance(layers, list) else type(layers).__name__
            raise t.fail(f"'{npath}.layers' has {got} layers, expected {len(mine)}")
        for j, layer in enumerate(layers):
            load_layer(layer, f"{npath}.layers[{j}]", f"{base_prefix}.layers.{j}")

    def load_layer(layer: Any, lpath: str, base: str) -> None:
        if not isinstance(layer, dict):
            raise t.fail(f"'{lpath}' is a {type(layer).__name__}, expected a layer")
        if layer.get("bias", True) is False:
            raise t.fail(f"'{lpath}.bias' = false (a layer without bias) is not supported by mlpot")
        mod = model.get_submodule(base)
        act = str(layer.get("activation_function", mod.activation_function)).lower()
        if act != mod.activation_function and not ({act, mod.activation_function} <= {"none", "linear"}):
            raise t.fail(f"'{lpath}.activation_function' = {act!r}, expected {mod.activation_function!r}")
        if bool(layer.get("resnet", mod.resnet)) != mod.resnet:
            raise t.fail(f"'{lpath}.resnet' = {layer.get('resnet')!r}, expected {mod.resnet!r}")
        new[f"{base}.matrix"] = t.array(layer, "w", lpath, tuple(state[f"{base}.matrix"].shape))
        new[f"{base}.bias"] = t.array(layer, "b", lpath).reshape(-1)
        idt = t.array(layer, "idt", lpath, optional=True)
        has_idt = f"{base}.idt" in state
        if (idt is not None) != has_idt:
            raise t.fail(
                f"'{lpath}.@variables.idt' is {'present' if idt is not None else 'absent'} but the layer "
                f"({mod.n_in}→{mod.n_out}, resnet_dt={'true' if has_idt else 'false'}) "
                f"{'has' if has_idt else 'has no'} timestep"
            )
        if idt is not None:
            new[f"{base}.idt"] = idt.reshape(-1)

    def load_collection(coll: Any, path: str, keys: list[str], prefix: str, ndim: int) -> None:
        if not isinstance(coll, dict):
            raise t.fail(f"'{path}' is a {type(coll).__name__}, expected a network collection")
        got_ndim = coll.get("ndim", ndim)
        if got_ndim != ndim:
            raise t.fail(f"'{path}.ndim' = {got_ndim}, expected {ndim} for this model")
        nets = t.get(coll, "networks", path, list)
        if len(nets) != len(keys):
            raise t.fail(f"'{path}.networks' holds {len(nets)} networks, expected {len(keys)}")
        for i, key in enumerate(keys):
            npath = f"{path}.networks[{i}]"
            if nets[i] is None:
                raise t.fail(f"'{npath}' is empty (excluded type pair); not supported by mlpot")
            load_layers(t.get(nets[i], "layers", npath, list), npath, f"{prefix}.{key}" if key else prefix)

    if mixed:
        _load_atten_descriptor(t, model, d, state, new, load_layers, load_layer, load_collection)
        load_collection(t.get(f, "nets", "model.fitting"), "model.fitting.nets", ["0"], "fitting.nets", 0)
    else:
        tos = cfg.descriptor.type_one_side
        if tos:
            emb_keys = [str(tt) for tt in range(ntypes)]
        else:  # DeePMD's flat index of the (center c, neighbor t) net is c + t·ntypes
            emb_keys = [f"{idx % ntypes}_{idx // ntypes}" for idx in range(ntypes * ntypes)]
        load_collection(t.get(d, "embeddings", "model.descriptor"), "model.descriptor.embeddings", emb_keys,
                        "descriptor.embeddings", 1 if tos else 2)
        load_collection(t.get(f, "nets", "model.fitting"), "model.fitting.nets", [str(tt) for tt in range(ntypes)],
                        "fitting.nets", 1)

    bias = t.array(f, "bias_atom_e", "model.fitting").reshape(-1).astype(np.float64)
    if bias.shape != (ntypes,):
        raise t.fail(f"'model.fitting.@variables.bias_atom_e' has {bias.size} values, expected {ntypes}")
    out_bias = t.array(m, "out_bias", "model", optional=True)
    if out_bias is not None:
        if out_bias.shape != (1, ntypes, 1):
            raise t.fail(f"'model.@variables.out_bias' has shape {out_bias.shape}, expected (1, {ntypes}, 1)")
        bias = bias + out_bias[0, :, 0]
    new["fitting.energy_bias"] = bias

    for name, arr in new.items():
        ref = state[name]
        if tuple(arr.shape) != tuple(ref.shape):
            raise t.fail(f"array for mlpot '{name}' has shape {tuple(arr.shape)}, expected {tuple(ref.shape)}")
        if not np.all(np.isfinite(arr)):
            raise t.fail(f"array for mlpot '{name}' holds NaN or Inf")
        state[name] = torch.as_tensor(np.ascontiguousarray(arr)).to(ref.dtype)
    untouched = sorted(n for n in state if n not in new and n != "descriptor.sel")
    if untouched:  # a mapping gap would leave random weights in the model: never silently
        raise t.fail(f"no DeePMD-kit array for mlpot parameters {untouched[:4]}")
    model.load_state_dict(state, strict=True)
    model.eval()
    if device is not None:
        model = model.to(device)
    return model



def _load_atten_descriptor(t: "_Tree", model, d: dict, state: dict, new: dict, load_layers, load_layer, load_collection) -> None:
    """The arrays of a DeePMD-kit dpa1 / se_atten_v2 descriptor tree into ``new`` (mlpot names, see
    :mod:`mlpot.descriptors.se_atten`): type embedding, embedding net(s), attention layers."""
    desc = model.descriptor
    path = "model.descriptor"
    te = t.get(d, "type_embedding", path, dict)
    te_path = f"{path}.type_embedding"
    if te.get("use_econf_tebd", False):
        raise t.fail(f"'{te_path}.use_econf_tebd' = true (electronic-configuration type embedding) is not supported by mlpot")
    nt = te.get("ntypes", desc.ntypes)
    if nt != desc.ntypes:
        raise t.fail(f"'{te_path}.ntypes' = {nt}, expected {desc.ntypes} (the length of model.type_map)")
    te_map, model_map = te.get("type_map"), list(model.type_map)
    if te_map is not None and list(te_map) != model_map:
        missing = [e for e in model_map if e not in list(te_map)]
        raise t.fail(f"'{te_path}.type_map' = {list(te_map)}, expected model.type_map {model_map}"
                     + (f" (no type embedding for {missing})" if missing else " (another order)"))
    net = t.get(te, "embedding", te_path, dict)
    layers = t.get(net, "layers", f"{te_path}.embedding", list)
    if len(layers) != 1:
        raise t.fail(f"'{te_path}.embedding.layers' has {len(layers)} layers, expected 1 (neuron [tebd_dim])")
    lpath = f"{te_path}.embedding.layers[0]"
    act = str(layers[0].get("activation_function", "linear")).lower()
    if act not in ("linear", "none"):
        raise t.fail(f"'{lpath}.activation_function' = {act!r}, expected 'Linear'")
    if bool(layers[0].get("resnet", True)) is not True or layers[0].get("use_timestep", False):
        raise t.fail(f"'{lpath}': expected a residual layer without timestep (DeePMD-kit's type embedding)")
    new["descriptor.type_embedding.matrix"] = t.array(layers[0], "w", lpath, (desc.ntypes, desc.tebd_dim))
    b = t.array(layers[0], "b", lpath, optional=True)
    if (b is not None) != (desc.type_embedding.bias is not None):
        raise t.fail(f"'{lpath}.@variables.b' is {'present' if b is not None else 'absent'}, but use_tebd_bias = "
                     f"{str(desc.use_tebd_bias).lower()}")
    if b is not None:
        new["descriptor.type_embedding.bias"] = b.reshape(-1)
    load_collection(t.get(d, "embeddings", path), f"{path}.embeddings", [""], "descriptor.embedding_net", 0)
    if desc.mode == "strip":
        load_collection(t.get(d, "embeddings_strip", path), f"{path}.embeddings_strip", [""], "descriptor.embedding_net_strip", 0)
    elif d.get("embeddings_strip") is not None:
        raise t.fail(f"'{path}.embeddings_strip' is present but tebd_input_mode is 'concat'")
    att = t.get(d, "attention_layers", path, dict)
    att_path = f"{path}.attention_layers"
    layers = t.get(att, "attention_layers", att_path, list)
    if len(layers) != desc.attn_layer:
        raise t.fail(f"'{att_path}.attention_layers' holds {len(layers)} layers, expected attn_layer = {desc.attn_layer}")
    for i, layer in enumerate(layers):
        lp = f"{att_path}.attention_layers[{i}]"
        inner = t.get(layer, "attention_layer", lp, dict)
        heads = inner.get("num_heads", 1)
        if heads != 1:
            raise t.fail(f"'{lp}.attention_layer.num_heads' = {heads}, expected 1")
        smooth = inner.get("smooth", desc.smooth)
        if bool(smooth) != desc.smooth:
            raise t.fail(f"'{lp}.attention_layer.smooth' = {smooth!r}, expected {desc.smooth} (smooth_type_embedding)")
        if inner.get("bias", True) is not True:
            raise t.fail(f"'{lp}.attention_layer.bias' = false is not supported by mlpot")
        for proj in ("in_proj", "out_proj"):
            load_layer(t.get(inner, proj, f"{lp}.attention_layer", dict), f"{lp}.attention_layer.{proj}",
                       f"descriptor.attention.{i}.{proj}")
        ln = t.get(layer, "attn_layer_norm", lp, dict)
        eps = ln.get("eps", desc.ln_eps)
        if abs(float(eps) - desc.ln_eps) > 1e-15 * max(1.0, desc.ln_eps):
            raise t.fail(f"'{lp}.attn_layer_norm.eps' = {eps}, expected ln_eps = {desc.ln_eps}")
        ng = desc.neuron[-1]
        new[f"descriptor.attention.{i}.layer_norm.matrix"] = t.array(ln, "w", f"{lp}.attn_layer_norm", (ng,))
        new[f"descriptor.attention.{i}.layer_norm.bias"] = t.array(ln, "b", f"{lp}.attn_layer_norm", (ng,))


def import_deepmd(path: str | os.PathLike, device: Any = None):
    """Read a DeePMD-kit model file (.dp, .yaml, PyTorch checkpoint .pt, frozen / compressed .pth) into an
    mlpot EnergyModel; a compressed one comes back compressed (:func:`apply_deepmd_compression`, its
    comparison in ``metadata["imported_from"]["compressed"]``)."""
    tree = read_deepmd_file(path)
    where = f"DeePMD-kit model '{Path(path)}'"
    model = model_from_tree(tree, where, "cpu" if tree.get("deepmd_compression") else device)
    info = deepmd_source_info(tree, path)
    r_min = (tree.get("@variables") or {}).get("min_nbor_dist")
    if r_min is not None and np.size(r_min) == 1 and np.isfinite(float(r_min)) and 0.0 < float(r_min) < float(model.rcut):
        # DeePMD-kit's neighbor statistics of the training data (Å): what `mlpot compress` needs
        model.min_nbor_dist = float(r_min)
    if tree.get("deepmd_compression"):
        info["compressed"] = apply_deepmd_compression(model, tree["deepmd_compression"], where)
        if device is not None:
            model = model.to(device)
    model.metadata = {"imported_from": info}
    return model


def deepmd_source_info(tree: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """Provenance recorded in the mlpot model file's metadata."""
    return {
        "file": os.fspath(path),
        "software": str(tree.get("software", "deepmd-kit")),
        "version": str(tree.get("version", "unknown")),
        "backend": str(tree.get("backend", "unknown")),
        "time": str(tree.get("time", "")),
    }


# ------------------------------------------------------------------------------------ EnergyModel → tree
def _np(t) -> np.ndarray:
    return t.detach().to("cpu").numpy().copy()


def _layer_tree(layer, precision: str) -> dict[str, Any]:
    return {
        "@class": "Layer",
        "@version": 2,
        "bias": True,
        "use_timestep": layer.idt is not None,
        "activation_function": "none" if layer.activation_function in ("none", "linear") else layer.activation_function,
        "resnet": bool(layer.resnet),
        "precision": precision,
        "trainable": True,
        "@variables": {
            "w": _np(layer.matrix),
            "b": _np(layer.bias),
            "idt": None if layer.idt is None else _np(layer.idt),
        },
    }


def model_to_tree(model) -> dict[str, Any]:
    """DeePMD-kit's serialization tree of an mlpot EnergyModel (the inverse of :func:`model_from_tree`),
    laid out as DeePMD-kit 3.x writes it so that ``dp convert-backend`` can rebuild the model."""
    from mlpot import __version__
    from mlpot.nn import precision_name

    cfg = model.get_config()
    dcfg, fcfg = cfg["descriptor"], cfg["fitting_net"]
    desc, fit = model.descriptor, model.fitting
    ntypes = len(model.type_map)
    dprec, fprec = precision_name(desc.dtype), precision_name(fit.dtype)
    is_a = dcfg["type"] == "se_e2_a"
    nnei = int(dcfg["sel"]) if isinstance(dcfg["sel"], int) else int(sum(dcfg["sel"]))

    def emb_tree(net) -> dict[str, Any]:
        return {
            "@class": "EmbeddingNetwork", "@version": 2, "in_dim": 1, "neuron": list(dcfg["neuron"]),
            "activation_function": dcfg["activation_function"], "resnet_dt": bool(dcfg["resnet_dt"]),
            "bias": True, "precision": dprec, "layers": [_layer_tree(ly, dprec) for ly in net.layers],
        }

    mixed = bool(getattr(desc, "mixed_types", False))
    type_map = list(model.type_map)
    if mixed:
        descriptor = _atten_descriptor_tree(desc, type_map, dprec)
    elif dcfg["type_one_side"]:
        nets = [emb_tree(desc.embedding(-1, tt)) for tt in range(ntypes)]
        ndim = 1
    else:
        nets = [emb_tree(desc.embedding(idx % ntypes, idx // ntypes)) for idx in range(ntypes * ntypes)]
        ndim = 2
    if not mixed:
        descriptor = _se_descriptor_tree(desc, dcfg, type_map, dprec, nets, ndim, nnei, is_a)
    dim_descrpt = int(desc.dim_out)
    fnets = [{
        "@class": "FittingNetwork", "@version": 1, "in_dim": dim_descrpt, "out_dim": 1, "neuron": list(fcfg["neuron"]),
        "activation_function": fcfg["activation_function"], "resnet_dt": bool(fcfg["resnet_dt"]),
        "precision": fprec, "bias_out": True,
        "layers": [_layer_tree(ly, fprec) for ly in fit.nets[str(tt)].layers],
    } for tt in range(1 if mixed else ntypes)]
    return _finish_tree(model, cfg, dcfg, fcfg, descriptor, fnets, fprec, mixed, is_a)


def _se_descriptor_tree(desc, dcfg: dict, type_map: list, dprec: str, nets: list, ndim: int, nnei: int, is_a: bool) -> dict:
    ntypes = len(type_map)
    descriptor = {
        "@class": "Descriptor", "type": dcfg["type"], "@version": 2,
        "rcut": float(dcfg["rcut"]), "rcut_smth": float(dcfg["rcut_smth"]), "sel": [int(s) for s in dcfg["sel"]],
        "neuron": list(dcfg["neuron"]),
    }
    if is_a:
        descriptor["axis_neuron"] = int(dcfg["axis_neuron"])
    descriptor.update({
        "resnet_dt": bool(dcfg["resnet_dt"]), "set_davg_zero": bool(dcfg["set_davg_zero"]),
        "activation_function": dcfg["activation_function"], "precision": dprec,
        "embeddings": {"@class": "NetworkCollection", "@version": 1, "ndim": ndim, "ntypes": ntypes,
                       "network_type": "embedding_network", "networks": nets},
        "env_mat": {"rcut": float(dcfg["rcut"]), "rcut_smth": float(dcfg["rcut_smth"]), "protection": 0.0,
                    "use_exp_switch": False},
        "exclude_types": [], "env_protection": 0.0,
        "@variables": {
            "davg": np.ascontiguousarray(np.broadcast_to(_np(desc.davg)[:, None, :], (ntypes, nnei, desc.davg.shape[1]))),
            "dstd": np.ascontiguousarray(np.broadcast_to(_np(desc.dstd)[:, None, :], (ntypes, nnei, desc.dstd.shape[1]))),
        },
        "type_map": type_map, "trainable": True, "type_one_side": bool(dcfg["type_one_side"]), "spin": None,
    })
    return descriptor


def _net_tree(net, in_dim: int, neuron: list, activation: str, resnet_dt: bool, precision: str) -> dict[str, Any]:
    return {
        "@class": "EmbeddingNetwork", "@version": 2, "in_dim": int(in_dim), "neuron": list(neuron),
        "activation_function": activation, "resnet_dt": bool(resnet_dt), "bias": True, "precision": precision,
        "layers": [_layer_tree(ly, precision) for ly in net.layers],
    }


def _atten_descriptor_tree(desc, type_map: list, prec: str) -> dict[str, Any]:
    """DeePMD-kit 3.2's serialization of a dpa1 / se_atten_v2 descriptor (``DescrptDPA1.serialize``)."""
    ntypes, nnei, ng = len(type_map), int(desc.nnei), int(desc.neuron[-1])
    tebd_in = desc.tebd_dim * (1 if desc.type_one_side else 2)

    def collection(net, in_dim: int) -> dict[str, Any]:
        return {"@class": "NetworkCollection", "@version": 1, "ndim": 0, "ntypes": ntypes,
                "network_type": "embedding_network",
                "networks": [_net_tree(net, in_dim, desc.neuron, desc.activation_function, desc.resnet_dt, prec)]}

    common = {"nnei": nnei, "embed_dim": ng, "hidden_dim": desc.attn, "dotr": desc.attn_dotr, "do_mask": False,
              "scaling_factor": desc.scaling_factor, "normalize": desc.normalize, "temperature": desc.temperature}
    layers = []
    for layer in desc.attention:
        projections = {}
        for name in ("in_proj", "out_proj"):
            tree = _layer_tree(getattr(layer, name), prec)
            tree["activation_function"] = "none"
            projections[name] = tree
        layers.append({
            **common, "trainable_ln": desc.trainable_ln, "ln_eps": desc.ln_eps, "precision": prec,
            "attention_layer": {**common, "num_heads": 1, "bias": True, "smooth": desc.smooth, "precision": prec,
                                **projections},
            "attn_layer_norm": {"@class": "LayerNorm", "@version": 1, "eps": desc.ln_eps, "trainable": desc.trainable_ln,
                                "precision": prec, "@variables": {"w": _np(layer.layer_norm.matrix),
                                                                  "b": _np(layer.layer_norm.bias)}},
        })
    te = desc.type_embedding
    type_embedding = {
        "@class": "EmbeddingNetwork", "@version": 2, "in_dim": ntypes, "neuron": [desc.tebd_dim],
        "activation_function": "Linear", "resnet_dt": False, "bias": te.bias is not None, "precision": prec,
        "layers": [{"@class": "Layer", "@version": 2, "bias": te.bias is not None, "use_timestep": False,
                    "activation_function": "Linear", "resnet": True, "precision": prec, "trainable": True,
                    "@variables": {"w": _np(te.matrix), "b": None if te.bias is None else _np(te.bias), "idt": None}}],
    }
    out = {
        "@class": "Descriptor", "type": "dpa1" if desc.type_name == "se_atten" else "se_atten_v2", "@version": 2,
        "rcut": desc.rcut, "rcut_smth": desc.rcut_smth, "sel": [nnei], "ntypes": ntypes, "neuron": list(desc.neuron),
        "axis_neuron": desc.axis_neuron, "tebd_dim": desc.tebd_dim,
    }
    if desc.type_name == "se_atten":
        out["tebd_input_mode"] = desc.mode
    out.update({
        "set_davg_zero": desc.set_davg_zero, "attn": desc.attn, "attn_layer": desc.attn_layer, "attn_dotr": desc.attn_dotr,
        "attn_mask": False, "activation_function": desc.activation_function, "resnet_dt": desc.resnet_dt,
        "scaling_factor": desc.scaling_factor, "normalize": desc.normalize, "temperature": desc.temperature,
        "trainable_ln": desc.trainable_ln, "ln_eps": desc.ln_eps,
    })
    if desc.type_name == "se_atten":
        out["smooth_type_embedding"] = desc.smooth
    out.update({
        "type_one_side": desc.type_one_side, "concat_output_tebd": desc.concat_output_tebd, "use_econf_tebd": False,
        "use_tebd_bias": desc.use_tebd_bias, "type_map": list(type_map), "precision": prec,
        "embeddings": collection(desc.embedding_net, 1 + tebd_in if desc.mode == "concat" else 1),
        "attention_layers": {"@class": "NeighborGatedAttention", "@version": 1, "layer_num": desc.attn_layer,
                             **common, "trainable_ln": desc.trainable_ln, "ln_eps": desc.ln_eps, "precision": prec,
                             "attention_layers": layers},
        "env_mat": {"rcut": desc.rcut, "rcut_smth": desc.rcut_smth, "protection": 0.0, "use_exp_switch": False},
        "type_embedding": {"@class": "TypeEmbedNet", "@version": 2, "ntypes": ntypes, "neuron": [desc.tebd_dim],
                           "resnet_dt": False, "precision": prec, "activation_function": "Linear", "trainable": True,
                           "padding": True, "use_econf_tebd": False, "use_tebd_bias": desc.use_tebd_bias,
                           "type_map": list(type_map), "embedding": type_embedding},
        "exclude_types": [], "env_protection": 0.0,
        "@variables": {
            "davg": np.ascontiguousarray(np.broadcast_to(_np(desc.davg)[:, None, :], (ntypes, nnei, 4))),
            "dstd": np.ascontiguousarray(np.broadcast_to(_np(desc.dstd)[:, None, :], (ntypes, nnei, 4))),
        },
        "trainable": True, "spin": None,
    })
    if desc.mode == "strip":
        out["embeddings_strip"] = collection(desc.embedding_net_strip, tebd_in)
    return out


def _finish_tree(model, cfg: dict, dcfg: dict, fcfg: dict, descriptor: dict, fnets: list, fprec: str, mixed: bool,
                 is_a: bool) -> dict[str, Any]:
    from mlpot import __version__

    fit = model.fitting
    ntypes = len(model.type_map)
    type_map = list(model.type_map)
    dim_descrpt = int(model.descriptor.dim_out)
    fdtype = np.float64 if fprec == "float64" else np.float32
    fitting = {
        "@class": "Fitting", "@version": 4, "var_name": "energy", "ntypes": ntypes, "dim_descrpt": dim_descrpt,
        "neuron": list(fcfg["neuron"]), "resnet_dt": bool(fcfg["resnet_dt"]), "numb_fparam": 0, "numb_aparam": 0,
        "dim_case_embd": 0, "default_fparam": None, "activation_function": fcfg["activation_function"],
        "precision": fprec, "mixed_types": mixed,
        "nets": {"@class": "NetworkCollection", "@version": 1, "ndim": 0 if mixed else 1, "ntypes": ntypes,
                 "network_type": "fitting_network", "networks": fnets},
        "rcond": None, "exclude_types": [],
        "@variables": {"bias_atom_e": np.zeros((ntypes, 1), dtype=fdtype), "case_embd": None, "fparam_avg": None,
                       "fparam_inv_std": None, "aparam_avg": None, "aparam_inv_std": None},
        "type_map": type_map, "tot_ener_zero": False, "trainable": [True] * (len(fcfg["neuron"]) + 1),
        "layer_name": None, "use_aparam_as_mask": False, "spin": None, "type": "ener", "dim_out": 1, "atom_ener": [],
    }
    energy_bias = _np(fit.energy_bias).astype(np.float64).reshape(1, ntypes, 1)
    model_tree = {
        "type_map": type_map, "atom_exclude_types": [], "pair_exclude_types": [], "rcond": None,
        "preset_out_bias": None,
        "@variables": {"out_bias": energy_bias, "out_std": np.ones((1, ntypes, 1), dtype=np.float64)},
        "@class": "Model", "@version": 2, "type": "standard", "descriptor": descriptor, "fitting": fitting,
    }
    def_desc = {k: v for k, v in dcfg.items() if k != "seed"}
    def_desc.update(trainable=True, exclude_types=[], env_protection=0.0)
    if not is_a and not mixed:
        def_desc.pop("type_one_side", None)
    def_fit = {"type": "ener", "neuron": list(fcfg["neuron"]), "resnet_dt": bool(fcfg["resnet_dt"]),
               "precision": fprec, "activation_function": fcfg["activation_function"], "numb_fparam": 0,
               "numb_aparam": 0, "trainable": True, "rcond": None, "atom_ener": [], "use_aparam_as_mask": False}
    return {
        "software": "mlpot",
        "version": __version__,
        "time": str(datetime.datetime.now(tz=datetime.timezone.utc)),
        "backend": "mlpot",
        "model": model_tree,
        "model_def_script": {"type_map": type_map, "descriptor": def_desc, "fitting_net": def_fit,
                             "type": "standard", "pair_exclude_types": [], "atom_exclude_types": []},
        "@variables": {},
    }


# ----------------------------------------------------------------------------------------------- writing
def write_deepmd_file(tree: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a serialization tree as ``.dp``/``.hlo`` (HDF5) or ``.yaml``/``.yml``, atomically."""
    from mlpot.atomic_io import atomic_path

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ModelError(f"output '{p}': unknown DeePMD-kit model suffix '{p.suffix}'; expected one of {', '.join(EXPORT_SUFFIXES)}")
    if suffix in (".dp", ".hlo"):
        import h5py

        with atomic_path(p) as tmp, h5py.File(tmp, "w") as f:
            counter = [0]

            def store(arr: Any, key: str) -> str:
                name = f"variable_{counter[0]:04d}"
                counter[0] += 1
                f.create_dataset(name, data=np.asarray(arr))
                return f"/{name}"

            f.attrs["json"] = json.dumps(_map_variables(tree, store), separators=(",", ":"))
    else:
        import yaml

        def as_yaml(arr: Any, key: str) -> dict[str, Any]:
            arr = np.asarray(arr)
            return {"@class": "np.ndarray", "@is_variable": True, "@version": 1, "dtype": arr.dtype.name,
                    "value": arr.tolist()}

        text = yaml.safe_dump(_map_variables(tree, as_yaml))
        with atomic_path(p) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
    return p


def export_deepmd(model, path: str | os.PathLike) -> Path:
    """Write an mlpot EnergyModel as a DeePMD-kit ``.dp`` or ``.yaml`` model (then
    ``dp convert-backend model.dp model.pth`` gives a DeePMD-kit PyTorch model)."""
    return write_deepmd_file(model_to_tree(model), path)


__all__ = [
    "read_deepmd_file", "model_config_from_tree", "model_from_tree", "import_deepmd", "model_to_tree",
    "write_deepmd_file", "export_deepmd", "deepmd_source_info", "apply_deepmd_compression", "MAPPED_DESCRIPTORS",
    "EXPORT_SUFFIXES",
]
