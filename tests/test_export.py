"""Freeze / load: bit-identical round trip, metadata, safe loading (tampered, truncated, foreign files)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import small_water_atoms, water_model_config, water_model_kw
from mlpot.errors import ModelError
from mlpot.export import FORMAT_TAG, load_model, save_model


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model(**water_model_kw())


def _inputs(atoms):
    pos = torch.tensor(atoms.get_positions())
    types = torch.tensor([{"O": 0, "H": 1}[s] for s in atoms.get_chemical_symbols()])
    cell = torch.tensor(atoms.get_cell()[:]).reshape(1, 3, 3)
    pbc = torch.tensor(atoms.get_pbc()[None])
    return pos, types, cell, pbc


def _eval(model, atoms):
    from mlpot.model import evaluate

    pos, types, cell, pbc = _inputs(atoms)
    return evaluate(model, pos, types, cell, pbc)


def test_roundtrip_bit_identical_and_metadata(model, tmp_path):
    path = save_model(model, tmp_path / "m.pt", metadata={"training_config": {"model": model.get_config()}, "step": 7})
    loaded = load_model(path, device="cpu")
    assert not loaded.training
    atoms = small_water_atoms(2, triclinic=True)
    a, b = _eval(model, atoms), _eval(loaded, atoms)
    for key in ("energy", "atom_energy", "forces", "virial"):
        assert torch.equal(a[key], b[key]), key  # bit-identical
    meta = loaded.metadata
    assert meta["type_map"] == ["O", "H"]
    assert meta["rcut"] == pytest.approx(4.0)
    assert meta["precision"] == "float64"
    assert meta["model_config"] == json.loads(json.dumps(model.get_config()))
    assert meta["training_config"]["model"]["type_map"] == ["O", "H"]
    assert meta["step"] == 7
    from mlpot import __version__

    assert meta["mlpot_version"] == __version__
    # every tensor of the state_dict (weights, statistics, bias) came back unchanged
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the file holds only plain data: a weights-only load of the raw payload works
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT_TAG and isinstance(raw["metadata"], str)


def test_float32_precision_recorded(tiny_model, tmp_path):
    m32 = tiny_model(**water_model_kw(precision="float32"))
    loaded = load_model(save_model(m32, tmp_path / "m32.pt"), device="cpu")
    assert loaded.metadata["precision"] == "float32"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    atoms = small_water_atoms(2)
    from mlpot.model import evaluate

    pos, types, cell, pbc = _inputs(atoms)
    a = evaluate(m32, pos.float(), types, cell.float(), pbc)
    b = evaluate(loaded, pos.float(), types, cell.float(), pbc)
    assert torch.equal(a["forces"], b["forces"])


def test_mlpot_load_model_loads_a_saved_model(model, tmp_path):
    """``mlpot.load_model`` (the top-level export) reads what save_model wrote: the same weights and
    outputs, in eval mode, with the metadata, and refuses a foreign file with ModelError."""
    import mlpot

    path = save_model(model, tmp_path / "top.pt", metadata={"step": 3})
    loaded = mlpot.load_model(path, device="cpu")
    assert not loaded.training and loaded.metadata["step"] == 3
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    atoms = small_water_atoms(2)
    assert torch.equal(_eval(model, atoms)["forces"], _eval(loaded, atoms)["forces"])
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(ModelError, match="junk.pt"):
        mlpot.load_model(tmp_path / "junk.pt")


def test_import_mlpot_stays_light():
    code = "import sys, mlpot; print('torch' in sys.modules, 'ase' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ------------------------------------------------------------------------------------------ refusals
def _tamper(path: Path, out: Path, fn) -> Path:
    payload = torch.load(path, weights_only=True)
    fn(payload)
    torch.save(payload, out)
    return out


def test_tampered_tensor_refused(model, tmp_path):
    good = save_model(model, tmp_path / "m.pt")

    def bump(payload):
        name = sorted(k for k, v in payload["tensors"].items() if v.is_floating_point() and v.numel())[0]
        payload["tensors"][name] = payload["tensors"][name].clone()
        payload["tensors"][name].view(-1)[0] += 1e-12

    bad = _tamper(good, tmp_path / "tampered.pt", bump)
    with pytest.raises(ModelError, match=r"tampered\.pt.*digest mismatch"):
        load_model(bad, device="cpu")


def test_tampered_metadata_refused(model, tmp_path):
    good = save_model(model, tmp_path / "m.pt")

    def edit(payload):
        meta = json.loads(payload["metadata"])
        meta["rcut"] = 5.0
        payload["metadata"] = json.dumps(meta, sort_keys=True)

    with pytest.raises(ModelError, match="digest mismatch"):
        load_model(_tamper(good, tmp_path / "meta.pt", edit), device="cpu")


def test_flipped_byte_refused(model, tmp_path):
    good = save_model(model, tmp_path / "m.pt")
    data = bytearray(good.read_bytes())
    # flip one byte inside the largest tensor's data record (the middle of the archive)
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="flipped.pt"):
        load_model(bad, device="cpu")


def test_truncated_file_refused(model, tmp_path):
    good = save_model(model, tmp_path / "m.pt")
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"truncated\.pt': not a readable mlpot model file") as exc:
        load_model(bad, device="cpu")
    assert "\n" not in str(exc.value)


def test_random_and_foreign_files_refused(tmp_path):
    rnd = tmp_path / "random.bin"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelError, match="random.bin"):
        load_model(rnd)
    txt = tmp_path / "notes.txt"
    txt.write_text("not a model\n")
    with pytest.raises(ModelError, match="notes.txt"):
        load_model(txt)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        load_model(empty)
    with pytest.raises(ModelError, match="no such file"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(ModelError, match="is a directory"):
        load_model(tmp_path)
    # a plain-tensor archive without our tag (e.g. a training checkpoint) is named as such
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "config": "{}", "step": 1}, ckpt)
    with pytest.raises(ModelError, match="training checkpoint"):
        load_model(ckpt)
    newer = tmp_path / "newer.pt"
    torch.save({"format": FORMAT_TAG, "format_version": 99, "metadata": "{}", "tensors": {}, "digest": ""}, newer)
    with pytest.raises(ModelError, match="format version 99 is newer"):
        load_model(newer)


class _Evil:
    """Unpickling this creates a marker file (stands for arbitrary code execution)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_with_arbitrary_object_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    legacy = tmp_path / "evil.pkl"
    legacy.write_bytes(pickle.dumps({"format": FORMAT_TAG, "x": _Evil(str(marker))}, protocol=2))
    with pytest.raises(ModelError, match="evil.pkl"):
        load_model(legacy)
    zipped = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_TAG, "tensors": {}, "x": _Evil(str(marker))}, zipped)
    with pytest.raises(ModelError, match="evil.pt.*weights-only"):
        load_model(zipped)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ mlpot freeze
def test_freeze_cli_from_checkpoint(model, tmp_path, capsys):
    from mlpot.cli import main

    config = {"model": model.get_config(), "training": {"numb_steps": 10}}
    ckpt = tmp_path / "train" / "model.ckpt.pt"
    ckpt.parent.mkdir()
    torch.save({"model": model.state_dict(), "config": json.dumps(config), "step": 10}, ckpt)
    out = tmp_path / "frozen.pt"
    assert main(["freeze", "-c", str(ckpt), "-o", str(out)]) == 0
    assert "frozen.pt" in capsys.readouterr().out
    loaded = load_model(out, device="cpu")
    assert loaded.metadata["training_config"]["training"]["numb_steps"] == 10
    assert loaded.metadata["step"] == 10
    atoms = small_water_atoms(2)
    a, b = _eval(model, atoms), _eval(loaded, atoms)
    assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["forces"], b["forces"])
    # the training directory works too (newest checkpoint in it)
    assert main(["freeze", "-c", str(ckpt.parent), "-o", str(tmp_path / "frozen2.pt")]) == 0
    # a frozen model is not a checkpoint; a missing checkpoint is one clear line
    assert main(["freeze", "-c", str(out), "-o", str(tmp_path / "x.pt")]) == 2
    assert main(["freeze", "-c", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "already a frozen model" in err and "nope.pt': no such file" in err
    assert not (tmp_path / "x.pt").exists()


def test_model_config_roundtrip_builds_same_architecture():
    from mlpot.model import EnergyModel

    cfg = water_model_config()
    m = EnergyModel.from_config(cfg)
    m2 = EnergyModel.from_config(m.get_config())
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in m2.state_dict().items()}
