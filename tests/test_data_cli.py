"""`mlpot convert` and `mlpot neighbor-stat`: end to end, errors as one line + exit status 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlpot import cli
from mlpot.data import io, store
from mlpot.data.neighbor_stat import neighbor_stat

from test_data_io import _assert_same, _tiny

ROOT = Path(__file__).resolve().parent.parent
MINE = ("convert", "neighbor-stat")


@pytest.fixture
def main(monkeypatch):
    """mlpot.cli.main with only this area's subcommands registered (isolated from other modules)."""
    monkeypatch.setattr(cli, "COMMANDS", {k: v for k, v in cli.COMMANDS.items() if k in MINE})
    return cli.main


# ----------------------------------------------------------------------------------- convert
def test_convert_npy_outcar_to_hdf5_and_back(main, tmp_path: Path, data_dir: Path, capsys) -> None:
    rc = main(["convert", str(data_dir / "water/data_3"), str(data_dir / "vasp/OUTCAR"), "-o", str(tmp_path / "all.h5")])
    assert rc == 0 and "wrote 2 system(s), 81 frame(s)" in capsys.readouterr().out
    got = store.read_hdf5(tmp_path / "all.h5")
    _assert_same(got[0], io.read_deepmd(data_dir / "water/data_3"))
    _assert_same(got[1], io.read(data_dir / "vasp/OUTCAR")[0])
    assert main(["convert", str(tmp_path / "all.h5"), "-o", str(tmp_path / "npy")]) == 0
    assert sorted(p.name for p in (tmp_path / "npy").iterdir()) == ["O2H4", "data_3"]
    _assert_same(io.read_deepmd(tmp_path / "npy/O2H4"), got[1])
    assert main(["convert", str(tmp_path / "npy/O2H4"), "-o", str(tmp_path / "raw"), "--format", "deepmd/raw"]) == 0
    assert (tmp_path / "raw/coord.raw").exists()
    _assert_same(io.read_deepmd(tmp_path / "raw"), got[1], rtol=1e-12, atol=1e-12)


def test_convert_type_map_and_extxyz_and_append(main, tmp_path: Path, data_dir: Path) -> None:
    mol = data_dir / "molecules_nopbc/C4H3O1"
    assert main(["convert", str(mol), "-o", str(tmp_path / "m.xyz"), "--type-map", "H", "O", "C", "N"]) == 0
    (s,) = io.read(tmp_path / "m.xyz", type_map=["H", "O", "C", "N"])
    ref = io.read_deepmd(mol)
    assert s.symbols == ref.symbols and s.type_map == ["H", "O", "C", "N"]
    np.testing.assert_allclose(s.forces, ref.forces, rtol=1e-12, atol=1e-12)
    assert main(["convert", str(tmp_path / "m.xyz"), "-o", str(tmp_path / "m.h5")]) == 0
    assert main(["convert", str(tmp_path / "m.xyz"), "-o", str(tmp_path / "m.h5"), "--append"]) == 0
    with store.HDF5Store(tmp_path / "m.h5") as st:
        name = io.system_name(ref)  # formula in order of appearance of the atoms
        assert st.names == [name, f"{name}_1"]
    assert main(["convert", str(tmp_path / "m.h5"), "-o", str(tmp_path / "d")]) == 0
    _assert_same(io.read_deepmd(tmp_path / f"d/{name}_1").with_type_map(ref.type_map), ref, rtol=1e-12, atol=1e-12)


def test_convert_errors_are_one_line_exit_2(main, tmp_path: Path, data_dir: Path, capsys) -> None:
    assert main(["convert", str(tmp_path / "missing"), "-o", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing: system path not found" in err[0] and "Traceback" not in err[0]
    bad = tmp_path / "bad"
    io.write_deepmd(_tiny(2), bad)
    np.save(bad / "set.000/energy.npy", np.array([1.0, np.inf]))
    assert main(["convert", str(bad), "-o", str(tmp_path / "out.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "energy.npy: field 'energy': expected finite values" in err[0]
    assert not (tmp_path / "out.h5").exists()
    assert main(["convert", str(data_dir / "molecules_nopbc/C4H3O1"), "-o", str(tmp_path / "y.h5"), "--type-map", "C", "H"]) == 2
    assert "not in the type_map" in capsys.readouterr().err


def test_cli_subprocess_no_traceback(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mlpot", "convert", str(tmp_path / "nope.xyz"), "-o", str(tmp_path / "o.h5")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"mlpot convert: error: {tmp_path / 'nope.xyz'}: system path not found"


# ----------------------------------------------------------------------------------- neighbor-stat
def _reference_stat(s, frames, rcut: float):
    """Minimum-image brute force in numpy (valid: cubic 12.44 Å box > 2·rcut): min distance and
    per-frame max neighbor count of each type."""
    L = s.cells[0, 0, 0]
    assert np.allclose(s.cells, np.diag([L] * 3)) and L > 2 * rcut
    mins, counts = [], []
    for f in frames:
        x = s.positions[f]
        d = x[None] - x[:, None]
        d -= L * np.round(d / L)
        r = np.sqrt((d**2).sum(-1))
        np.fill_diagonal(r, np.inf)
        mins.append(r.min())
        counts.append([int((r[:, s.atom_types == t] < rcut).sum(1).max()) for t in range(len(s.type_map))])
    return np.array(mins), np.array(counts)


def test_neighbor_stat_water_matches_reference(water_dir: Path) -> None:
    # reference over the whole training data (data_0..2, 320 frames): at most 38 O, 72 H within 6 Å; 0.885 Å
    systems = io.load_systems([water_dir / f"data_{k}" for k in range(3)])
    refs = [_reference_stat(s, range(s.n_frames), 6.0) for s in systems]
    assert np.max([m.min() for m, _ in refs]) > 0 and min(m.min() for m, _ in refs) == pytest.approx(0.885, abs=5e-4)
    np.testing.assert_array_equal(np.max([c.max(0) for _, c in refs], axis=0), [38, 72])
    # mlpot's neighbor_stat on the few frames where the extremes occur (full data is slow with a brute-force list)
    picked = []
    for s, (m, c) in zip(systems, refs):
        idx = sorted({int(np.argmin(m)), int(np.argmax(c[:, 0])), int(np.argmax(c[:, 1]))})
        if m.min() < 0.8855 or c[:, 0].max() == 38 or c[:, 1].max() == 72:
            picked.append((s.subset(idx), m[idx].min(), c[idx].max(0)))
    sub = [p[0] for p in picked]
    stat = neighbor_stat(sub, 6.0, device="cpu")
    assert stat.min_dist == pytest.approx(min(p[1] for p in picked), rel=1e-12)
    assert stat.min_dist == pytest.approx(0.885, abs=5e-4)
    np.testing.assert_array_equal(stat.max_nbor, [38, 72])
    np.testing.assert_array_equal(stat.max_nbor, np.max([p[2] for p in picked], axis=0))
    assert "max nbor size: [38 72]" in stat.format()


def test_neighbor_stat_nopbc_molecules_brute_force(data_dir: Path) -> None:
    systems = io.load_systems([data_dir / "molecules_nopbc"])
    stat = neighbor_stat(systems, 2.0, device="cpu", max_frames=20)
    table = np.zeros((3, 3), dtype=int)
    mn = np.inf
    for s in systems:
        x = s.positions[:20]
        r = np.linalg.norm(x[:, None] - x[:, :, None], axis=-1)
        r[:, np.arange(s.n_atoms), np.arange(s.n_atoms)] = np.inf
        mn = min(mn, r.min())
        for ci in range(3):
            for tj in range(3):
                if (s.atom_types == ci).any():
                    n = (r[:, s.atom_types == ci][:, :, s.atom_types == tj] < 2.0).sum(-1)
                    table[ci, tj] = max(table[ci, tj], n.max())
    np.testing.assert_array_equal(stat.table, table)
    np.testing.assert_array_equal(stat.max_nbor, table.max(0))
    assert stat.min_dist == pytest.approx(mn, rel=1e-12)


def test_neighbor_stat_cli(main, water_dir: Path, capsys) -> None:
    assert main(["neighbor-stat", "-s", str(water_dir / "data_1"), "--rcut", "6", "--max-frames", "2",
                 "--type-map", "O", "H"]) == 0
    out = capsys.readouterr().out
    s = io.read_deepmd(water_dir / "data_1")
    m, c = _reference_stat(s, range(2), 6.0)
    assert f"max nbor size: [{c.max(0)[0]} {c.max(0)[1]}]" in out
    assert float(re.search(r"min nbor dist: ([0-9.]+)", out).group(1)) == pytest.approx(m.min(), abs=1e-6)
    assert main(["neighbor-stat", "-s", str(water_dir / "data_1"), "--rcut", "-1"]) == 2
    assert "rcut: expected a positive cutoff" in capsys.readouterr().err
