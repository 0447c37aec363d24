"""mlpot's HDF5 store: schema, lossless round trips, append safety, lazy frame access."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mlpot.data import io, store
from mlpot.data.frames import LabeledFrames
from mlpot.errors import DataError

from test_data_io import _assert_same, _tiny


def test_npy_hdf5_npy_roundtrip_exact(tmp_path: Path, data_dir: Path) -> None:
    src = io.load_systems([data_dir / "water/data_3", data_dir / "molecules_nopbc/C4H3O1"])
    store.write_hdf5(tmp_path / "d.h5", src)
    back = store.read_hdf5(tmp_path / "d.h5")
    for a, b in zip(src, back):
        _assert_same(a, b)
    io.write(back, tmp_path / "npy")
    assert sorted(p.name for p in (tmp_path / "npy").iterdir()) == ["C4H3O1", "data_3"]
    again = [io.read_deepmd(tmp_path / "npy/data_3"), io.read_deepmd(tmp_path / "npy/C4H3O1")]
    for a, b in zip(src, again):
        _assert_same(a, b)


def test_extxyz_hdf5_extxyz_roundtrip(tmp_path: Path) -> None:
    systems = [_tiny(3, seed=1), _tiny(2, seed=2, symbols=("C", "H", "H", "H", "H"))]
    systems = [s.with_type_map(io.common_type_map(systems)) for s in systems]
    io.write(systems, tmp_path / "a.xyz")
    first = io.read(tmp_path / "a.xyz")
    io.write(first, tmp_path / "a.h5")
    io.write(io.read(tmp_path / "a.h5"), tmp_path / "b.xyz")
    assert (tmp_path / "a.xyz").read_text() == (tmp_path / "b.xyz").read_text()
    for a, b in zip(systems, io.read(tmp_path / "b.xyz")):
        _assert_same(a, b, rtol=1e-12, atol=1e-12)


def test_schema_attributes_and_chunking(tmp_path: Path, water_dir: Path) -> None:
    s = io.read_deepmd(water_dir / "data_0")
    names = store.write_hdf5(tmp_path / "w.h5", [s, _tiny(2)])
    assert names == ["data_0", "O1H2"]
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert f.attrs["format"] == "mlpot-hdf5" and f.attrs["version"] == 1
        assert list(f.attrs["type_map"]) == ["O", "H"]
        assert json.loads(f.attrs["units"])["energy"] == "eV"
        g = f["systems/data_0"]
        assert list(g.attrs["type_map"]) == ["O", "H"] and g.attrs["pbc"].tolist() == [True] * 3
        assert g["positions"].shape == (80, 192, 3) and g["positions"].dtype == np.float64
        assert g["positions"].chunks is not None and g["positions"].chunks[0] < 80
        assert g["positions"].maxshape[0] is None
        assert "virials" not in g and "virials" in f["systems/O1H2"]


def test_lazy_subset_reads_only_requested_frames(tmp_path: Path, water_dir: Path, monkeypatch) -> None:
    s = io.read_deepmd(water_dir / "data_1")
    store.write_hdf5(tmp_path / "w.h5", s)
    with store.HDF5Store(tmp_path / "w.h5") as st:
        view = st["data_1"]
        assert (view.n_frames, view.n_atoms, len(st)) == (160, 192, 1)
        idx = [150, 3, 3, 77]
        sub = st.read("data_1", idx)
        _assert_same(sub, s.subset(idx))
        _assert_same(view.read(slice(10, 20, 3)), s.subset(slice(10, 20, 3)))
        # a lazy read asks h5py for the selected rows only, never the whole dataset
        seen = []
        real = h5py.Dataset.__getitem__
        monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda self, key: seen.append((self.name, key)) or real(self, key))
        view.read([5])
        assert all(not (isinstance(k, slice) and k == slice(None)) for n, k in seen if n.endswith("positions"))
        with pytest.raises(DataError, match=r"frame index.*\[0, 160\)"):
            view.read([160])
        with pytest.raises(DataError, match="system 'nope'"):
            st["nope"]


def test_append_adds_systems_and_keeps_old(tmp_path: Path) -> None:
    a, b = _tiny(2, seed=1), _tiny(3, seed=2)
    store.write_hdf5(tmp_path / "s.h5", a)
    names = store.write_hdf5(tmp_path / "s.h5", b, append=True)
    assert names == ["O1H2_1"]
    got = store.read_hdf5(tmp_path / "s.h5")
    _assert_same(got[0], a)
    _assert_same(got[1], b)
    store.write_hdf5(tmp_path / "new.h5", a, append=True)  # append to a missing file creates it
    _assert_same(store.read_hdf5(tmp_path / "new.h5")[0], a)
    with pytest.raises(DataError, match="already in the store"):
        store.write_hdf5(tmp_path / "s.h5", a, append=True, names=["O1H2"])


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_append_failure_leaves_original_intact(tmp_path: Path, monkeypatch, exc) -> None:
    a = _tiny(2, seed=1)
    store.write_hdf5(tmp_path / "s.h5", a)
    before = (tmp_path / "s.h5").read_bytes()
    real = store._write_system
    calls = {"n": 0}

    def failing(group, system):
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise exc("interrupted mid-write")
        real(group, system)

    monkeypatch.setattr(store, "_write_system", failing)
    with pytest.raises(exc):
        store.write_hdf5(tmp_path / "s.h5", [_tiny(2, seed=2), _tiny(2, seed=3)], append=True)
    with pytest.raises(exc):
        store.write_hdf5(tmp_path / "fresh.h5", [_tiny(2, seed=2), _tiny(2, seed=3)])
    assert (tmp_path / "s.h5").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]
    monkeypatch.undo()
    _assert_same(store.read_hdf5(tmp_path / "s.h5")[0], a)


def test_bad_store_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        store.HDF5Store(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match=r"junk\.h5.*expected an HDF5 file"):
        io.read(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(DataError, match=r"other\.h5.*'format'.*mlpot-hdf5"):
        store.read_hdf5(tmp_path / "other.h5")
    store.write_hdf5(tmp_path / "s.h5", _tiny(3))
    with h5py.File(tmp_path / "s.h5", "a") as f:
        e = f["systems/O1H2/energies"]
        e.resize((2,))
    with pytest.raises(DataError, match=r"energies: expected 3 frames.*found 2"):
        store.read_hdf5(tmp_path / "s.h5")
    shutil.copy(tmp_path / "s.h5", tmp_path / "nan.h5")
    with h5py.File(tmp_path / "nan.h5", "a") as f:
        del f["systems/O1H2/energies"]
        f["systems/O1H2/positions"][1, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"nan\.h5:O1H2.*'positions'.*finite"):
        store.read_hdf5(tmp_path / "nan.h5")


def test_store_system_types_follow_own_type_map(tmp_path: Path) -> None:
    a = _tiny(2, symbols=("O", "H", "H"))
    b = _tiny(2, symbols=("C", "O"))
    store.write_hdf5(tmp_path / "m.h5", [a, b])
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert list(f.attrs["type_map"]) == ["O", "H", "C"]
    got = io.read(tmp_path / "m.h5", type_map=["H", "C", "O"])
    assert got[0].symbols == a.symbols and got[1].symbols == b.symbols
    assert isinstance(got[0], LabeledFrames) and got[1].type_map == ["H", "C", "O"]
