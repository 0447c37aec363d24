"""``mlpot import-deepmd`` of DeePMD-kit PyTorch frozen / compressed models (TorchScript ``.pth``), read
as data without running anything: the imported model is compressed like DeePMD-kit's and gives
DeePMD-kit's numbers; crafted or foreign archives are refused before anything executes.

Reference: tests/data/deepmd_compressed (tiny float64 se_e2_a (one- and two-sided) and se_atten_v2
attn_layer 0 models, 1 training step, ``dp --pt compress -s 0.1`` (0.2 two-sided); energies, forces and virials from DeePMD-kit 3.2.0's
``DeepPot`` with its compiled tabulation ops, see make_reference.py there). deepmd-kit is not needed.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mlpot.errors import ModelError
from mlpot.interop.deepmd import import_deepmd
from mlpot.model import evaluate

DATA = Path(__file__).resolve().parent / "data" / "deepmd_compressed"
CASES = ["se_e2_a", "se_atten_v2", "se_e2_a_two_side"]


def _eval(model, ref: dict) -> dict[str, np.ndarray]:
    n, nat = ref["coord"].shape[:2]
    out = evaluate(model, ref["coord"].reshape(-1, 3), np.tile(ref["atype"], n), ref["box"], [True] * 3,
                   frame_index=np.repeat(np.arange(n), nat), outputs=("energy", "forces", "virial"))
    g = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return {"energy": g(out["energy"]), "force": g(out["forces"]).reshape(n, nat, 3), "virial": g(out["virial"]).reshape(n, 3, 3)}


@pytest.mark.parametrize("case", CASES)
def test_compressed_import_gives_deepmd_kit_numbers(case: str, tmp_path: Path, capsys) -> None:
    """CLI import → mlpot model file that is compressed (tables rebuilt from the weights equal to the
    file's to 1e-14) and reproduces DeePMD-kit's compressed DeepPot: E to 1e-10 relative, F to 1e-10 eV/Å,
    virial to 1e-9 eV, on 3 water frames (192 atoms, PBC)."""
    from mlpot.cli import main
    from mlpot.export import load_model

    out = tmp_path / "x.pt"
    assert main(["import-deepmd", str(DATA / case / "compressed.pth"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "compressed as DeePMD-kit compressed it" in printed and "re-tabulated" in printed
    model = load_model(out, device="cpu")
    assert model.compressed
    rec = model.descriptor.compression
    step = 0.2 if case == "se_e2_a_two_side" else 0.1  # as make_reference.py compressed them
    assert rec["step"] == pytest.approx(step) and rec["extrapolate"] == pytest.approx(5.0)
    assert model.metadata["compression"]["step"] == pytest.approx(step)
    assert len(rec["tables"]) == {"se_e2_a": 2, "se_atten_v2": 1, "se_e2_a_two_side": 4}[case]
    comp = model.metadata["imported_from"]["compressed"]
    assert comp["max_rel_dev_tables"] < 1e-14 and comp["max_rel_dev_type_table"] < 1e-14
    ref = dict(np.load(DATA / case / "reference.npz"))
    got = _eval(model, ref)
    assert np.all(np.abs(got["energy"] - ref["energy"]) <= 1e-10 * np.abs(ref["energy"]))
    assert np.abs(got["force"] - ref["force"]).max() <= 1e-10
    assert np.abs(got["virial"] - ref["virial"]).max() <= 1e-9
    # the comparison is not vacuous: DeePMD-kit's own compression moved the numbers by more than that
    assert np.abs(ref["force"] - ref["force_plain"]).max() > 1e-12


def test_frozen_uncompressed_pth_import(tmp_path: Path) -> None:
    """A plain `dp --pt freeze` model: imported uncompressed; DeePMD-kit's numbers of the frozen model;
    `mlpot compress --step 0.1` of it (no --min-distance: DeePMD-kit's is kept) gives DeePMD-kit's
    compressed numbers."""
    model = import_deepmd(DATA / "se_e2_a" / "frozen.pth", device="cpu")
    assert not model.compressed and "compressed" not in model.metadata["imported_from"]
    # DeePMD-kit's training neighbor statistic is kept, so that `mlpot compress` needs no --min-distance
    from mlpot.interop.torchscript import read_script_archive

    r_min = float(read_script_archive(DATA / "se_e2_a" / "frozen.pth", "x").state["min_nbor_dist"])
    assert 0.5 < r_min < 1.2 and model.min_nbor_dist == r_min
    ref = dict(np.load(DATA / "se_e2_a" / "reference.npz"))
    got = _eval(model, ref)
    assert np.all(np.abs(got["energy"] - ref["energy_plain"]) <= 1e-10 * np.abs(ref["energy_plain"]))
    assert np.abs(got["force"] - ref["force_plain"]).max() <= 1e-10
    assert np.abs(got["virial"] - ref["virial_plain"]).max() <= 1e-9
    from mlpot.compress import compress_file
    from mlpot.export import load_model, save_model

    save_model(model, tmp_path / "plain.pt", metadata=model.metadata)
    compress_file(tmp_path / "plain.pt", tmp_path / "c.pt", step=0.1)
    got = _eval(load_model(tmp_path / "c.pt", device="cpu"), ref)
    assert np.all(np.abs(got["energy"] - ref["energy"]) <= 1e-10 * np.abs(ref["energy"]))
    assert np.abs(got["force"] - ref["force"]).max() <= 1e-10


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy the zip ``src`` to ``dst`` with ``change(name, bytes) -> bytes`` applied to every entry."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, change(item.filename, zin.read(item.filename)))


def test_tables_that_do_not_belong_to_the_weights_are_refused(tmp_path: Path) -> None:
    src = DATA / "se_e2_a" / "compressed.pth"
    ng = 8

    def perturb(name: str, raw: bytes) -> bytes:  # the storages of compress_data: (nspline, 6·ng) float64
        if "/data/" in name and len(raw) % (6 * ng * 8) == 0 and len(raw) >= 100 * 6 * ng * 8:
            arr = np.frombuffer(raw, dtype="<f8").copy()
            arr[6 * ng * 20] *= 1.0 + 1e-6  # a0 of channel 0, interval 20
            return arr.tobytes()
        return raw

    bad = tmp_path / "tampered.pth"
    _rewrite(src, bad, perturb)
    with pytest.raises(ModelError, match="differ from the file's compress_data") as exc:
        import_deepmd(bad, device="cpu")
    assert "\n" not in str(exc.value) and "tampered.pth" in str(exc.value)


class _Evil:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.sentinel}",)


def _script_like_zip(path: Path, payload: bytes) -> None:
    """A zip laid out like a TorchScript archive (data.pkl, constants.pkl, code/) around ``payload``."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
        zf.writestr("archive/code/__torch__/m.py", "class M(Module):\n  pass\n")
        zf.writestr("archive/byteorder", "little")


@pytest.mark.parametrize("where", ["root", "nested"])
def test_malicious_pickle_is_refused_without_executing(where: str, tmp_path: Path, capsys) -> None:
    """A data.pkl calling os.system (at the root, or inside the state of a __torch__ module) is refused
    by name before anything runs: the sentinel file is never created; the CLI prints one line, exit 2."""
    from mlpot.cli import main

    sentinel = tmp_path / "pwned"
    if where == "root":
        payload = pickle.dumps(_Evil(sentinel), protocol=2)
    else:  # a __torch__ object whose state holds the call
        evil = pickle.dumps({"model_def_script": "{}", "x": _Evil(sentinel)}, protocol=2)
        buf = io.BytesIO()
        buf.write(b"\x80\x02c__torch__.deepmd.pt.model.model.ener_model\nEnergyModel\n)\x81")
        buf.write(evil[2:-1])  # the dict, without its PROTO header and STOP
        buf.write(b"b.")  # BUILD, STOP
        payload = buf.getvalue()
    path = tmp_path / "evil.pth"
    _script_like_zip(path, payload)
    with pytest.raises(ModelError) as exc:
        import_deepmd(path, device="cpu")
    msg = str(exc.value)
    assert "system" in msg and "refused without executing" in msg and "evil.pth" in msg and "\n" not in msg
    assert not sentinel.exists()
    assert main(["import-deepmd", str(path), "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "system" in err and not (tmp_path / "x.pt").exists()
    assert not sentinel.exists()


def test_foreign_torchscript_refused(tmp_path: Path, capsys) -> None:
    import torch

    from mlpot.cli import main

    p = tmp_path / "linear.pth"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(p))
    with pytest.raises(ModelError, match="not a DeePMD-kit model") as exc:
        import_deepmd(p, device="cpu")
    assert "Linear" in str(exc.value)
    assert main(["import-deepmd", str(p), "-o", str(tmp_path / "x.pt")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_damaged_archives_refused(tmp_path: Path) -> None:
    src = DATA / "se_e2_a" / "compressed.pth"
    cut = tmp_path / "cut.pth"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated"):
        import_deepmd(cut, device="cpu")
    no_storage = tmp_path / "nostorage.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(no_storage, "w") as zout:
        for item in zin.infolist():
            if not item.filename.endswith("/data/3"):
                zout.writestr(item.filename, zin.read(item.filename))
    with pytest.raises(ModelError, match=r"storage '.*data/3' named by data.pkl is missing") as exc:
        import_deepmd(no_storage, device="cpu")
    assert "\n" not in str(exc.value) and "nostorage.pth" in str(exc.value)
