"""Readers and writers of mlpot.data.io: DeePMD npy/raw, extxyz/ASE, VASP OUTCAR; validation; atomic writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mlpot.data import io
from mlpot.data.frames import LabeledFrames
from mlpot.errors import DataError

EV_PER_A3_PER_GPA = 1.0 / 160.21766208


def _assert_same(a: LabeledFrames, b: LabeledFrames, rtol: float = 0.0, atol: float = 0.0) -> None:
    assert a.type_map == b.type_map
    np.testing.assert_array_equal(a.atom_types, b.atom_types)
    np.testing.assert_array_equal(a.pbc, b.pbc)
    for name in ("positions", "cells", "energies", "forces", "virials"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            if rtol == 0 and atol == 0:
                np.testing.assert_array_equal(x, y, err_msg=name)
            else:
                np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=name)


def _tiny(n_frames: int = 3, pbc: bool = True, seed: int = 0, symbols=("O", "H", "H")) -> LabeledFrames:
    rng = np.random.default_rng(seed)
    type_map = list(dict.fromkeys(symbols))
    n = len(symbols)
    v = rng.standard_normal((n_frames, 3, 3))
    cell = np.diag([5.0, 6.0, 7.0]) + 0.1 * rng.standard_normal((3, 3))
    return LabeledFrames(
        type_map=type_map,
        atom_types=[type_map.index(s) for s in symbols],
        positions=rng.uniform(0, 5, (n_frames, n, 3)),
        cells=np.broadcast_to(cell if pbc else np.zeros((3, 3)), (n_frames, 3, 3)),
        pbc=[pbc] * 3,
        energies=rng.standard_normal(n_frames) * 10 - 30,
        forces=rng.standard_normal((n_frames, n, 3)),
        virials=v + v.transpose(0, 2, 1),
        source="<tiny>",
    )


# ------------------------------------------------------------------------------- DeePMD npy / raw
def test_read_deepmd_water_matches_npy_files(water_dir: Path) -> None:
    s = io.read_deepmd(water_dir / "data_0")
    coord = np.load(water_dir / "data_0/set.000/coord.npy")
    assert s.type_map == ["O", "H"] and s.n_atoms == 192 and s.n_frames == coord.shape[0] == 80
    np.testing.assert_array_equal(s.positions, coord.astype(np.float64).reshape(80, 192, 3))
    np.testing.assert_array_equal(s.energies, np.load(water_dir / "data_0/set.000/energy.npy").astype(np.float64))
    np.testing.assert_array_equal(s.cells.reshape(80, 9), np.load(water_dir / "data_0/set.000/box.npy"))
    assert s.pbc.all() and s.virials is None
    assert (s.atom_types == 0).sum() == 64 and (s.atom_types == 1).sum() == 128


def test_read_deepmd_concatenates_sets_in_sorted_order(water_dir: Path) -> None:
    s = io.read_deepmd(water_dir / "data_1")
    f0 = np.load(water_dir / "data_1/set.000/force.npy").reshape(-1, 192, 3)
    f1 = np.load(water_dir / "data_1/set.001/force.npy").reshape(-1, 192, 3)
    assert s.n_frames == len(f0) + len(f1) == 160
    np.testing.assert_array_equal(s.forces, np.concatenate([f0, f1]).astype(np.float64))


def test_read_deepmd_nopbc_gives_zero_cells(data_dir: Path) -> None:
    s = io.read_deepmd(data_dir / "molecules_nopbc/C1H4O2")
    assert not s.pbc.any() and s.n_atoms == 7 and s.n_frames == 1562
    assert np.all(s.cells == 0)
    assert s.type_map == ["C", "H", "O"] and s.symbols.count("O") == 2 and s.symbols.count("H") == 4


def test_missing_type_map_raw_uses_given_names_or_type_k(tmp_path: Path, water_dir: Path) -> None:
    d = tmp_path / "sys"
    shutil.copytree(water_dir / "data_3", d)
    (d / "type_map.raw").unlink()
    assert io.read_deepmd(d).type_map == ["Type_0", "Type_1"]
    assert io.read_deepmd(d, type_map=["O", "H"]).type_map == ["O", "H"]


def test_type_map_remaps_indices(water_dir: Path) -> None:
    s = io.read_deepmd(water_dir / "data_3")
    r = io.read_deepmd(water_dir / "data_3", type_map=["H", "C", "O"])
    assert r.symbols == s.symbols and r.type_map == ["H", "C", "O"]
    np.testing.assert_array_equal(r.atom_types, np.where(s.atom_types == 0, 2, 0))


def test_deepmd_npy_roundtrip_exact_with_several_sets(tmp_path: Path) -> None:
    s = _tiny(n_frames=5)
    io.write_deepmd(s, tmp_path / "out", fmt="npy", set_size=2)
    assert sorted(p.name for p in (tmp_path / "out").glob("set.*")) == ["set.000", "set.001", "set.002"]
    _assert_same(io.read_deepmd(tmp_path / "out"), s)


def test_deepmd_raw_roundtrip_and_agrees_with_npy(tmp_path: Path, data_dir: Path) -> None:
    s = io.read_deepmd(data_dir / "molecules_nopbc/C4H3O1")
    io.write_deepmd(s, tmp_path / "raw", fmt="raw")
    assert (tmp_path / "raw/coord.raw").exists() and (tmp_path / "raw/nopbc").exists()
    assert not list((tmp_path / "raw").glob("set.*"))
    back = io.read(tmp_path / "raw")[0]
    _assert_same(back, s, rtol=1e-12, atol=1e-12)
    t = _tiny(pbc=True)
    io.write_deepmd(t, tmp_path / "raw2", fmt="raw")
    _assert_same(io.read_deepmd(tmp_path / "raw2"), t, rtol=1e-12, atol=1e-12)


def test_find_systems_and_load_systems(data_dir: Path) -> None:
    found = io.find_systems([data_dir / "molecules_nopbc", data_dir / "water/data_0"])
    assert [Path(p).name for p in found] == ["C1H4O2", "C3H3O4", "C4H3O1", "data_0"]
    systems = io.load_systems([data_dir / "water/data_0", data_dir / "molecules_nopbc/C4H3O1"])
    assert all(s.type_map == ["O", "H", "C"] for s in systems)
    assert systems[1].symbols == io.read_deepmd(data_dir / "molecules_nopbc/C4H3O1").symbols


# ------------------------------------------------------------------------------- extxyz / ASE
def test_extxyz_roundtrip_full_precision(tmp_path: Path) -> None:
    s = _tiny(n_frames=4)
    io.write(s, tmp_path / "a.xyz")
    (back,) = io.read(tmp_path / "a.xyz")
    _assert_same(back, s, rtol=1e-12, atol=1e-12)


def test_extxyz_nopbc_or_asymmetric_virial(tmp_path: Path) -> None:
    from dataclasses import replace

    s = _tiny(n_frames=2, pbc=False)
    io.write(s, tmp_path / "m.extxyz")
    (back,) = io.read(tmp_path / "m.extxyz")
    _assert_same(back, s, rtol=1e-12, atol=1e-12)
    t = _tiny(n_frames=2)
    t = replace(t, virials=t.virials + np.triu(np.ones((3, 3)), 1))  # not symmetric: kept as virial, not stress
    io.write(t, tmp_path / "t.extxyz")
    _assert_same(io.read(tmp_path / "t.extxyz")[0], t, rtol=1e-12, atol=1e-12)


def test_extxyz_mixed_compositions_split_in_file_order(tmp_path: Path) -> None:
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    def mk(symbols, e, seed):
        rng = np.random.default_rng(seed)
        a = Atoms(symbols, cell=np.eye(3) * 8, pbc=True)
        a.positions = rng.uniform(0, 4, (len(a), 3))
        a.calc = SinglePointCalculator(a, energy=e, forces=rng.standard_normal((len(a), 3)))
        return a

    frames = [mk("CH4", -1.0, 0), mk("H2O", -2.0, 1), mk("CH4", -3.0, 2), mk("H2O", -4.0, 3), mk("NH3", -5.0, 4)]
    ase.io.write(tmp_path / "mix.xyz", frames, format="extxyz")
    systems = io.read(tmp_path / "mix.xyz")
    assert [io.system_name(s) for s in systems] == ["C1H4", "H2O1", "N1H3"]
    assert [s.n_frames for s in systems] == [2, 2, 1]
    assert systems[0].type_map == ["C", "H", "O", "N"]  # order of first appearance in the file
    np.testing.assert_array_equal(systems[0].energies, [-1.0, -3.0])
    np.testing.assert_array_equal(systems[1].energies, [-2.0, -4.0])
    np.testing.assert_allclose(systems[1].forces[1], frames[3].get_forces(), rtol=0, atol=1e-8)  # ASE writes 8 decimals


@pytest.mark.parametrize("voigt", [True, False])
def test_ase_stress_to_virial(tmp_path: Path, voigt: bool) -> None:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    rng = np.random.default_rng(5)
    cell = np.array([[6.0, 0.3, 0.0], [0.2, 7.0, 0.1], [0.0, 0.4, 8.0]])
    a = Atoms("H2O", positions=rng.uniform(0, 4, (3, 3)), cell=cell, pbc=True)
    sym = rng.standard_normal((3, 3)) * 1e-3
    sym = sym + sym.T
    stress = sym if not voigt else np.array([sym[0, 0], sym[1, 1], sym[2, 2], sym[1, 2], sym[0, 2], sym[0, 1]])
    a.calc = SinglePointCalculator(a, energy=-3.0, forces=rng.standard_normal((3, 3)), stress=stress)
    write(tmp_path / "s.traj", a)
    (s,) = io.read(tmp_path / "s.traj")
    volume = abs(np.linalg.det(cell))
    np.testing.assert_allclose(s.virials[0], -sym * volume, rtol=1e-12, atol=1e-15)


def test_ase_db_and_traj(tmp_path: Path) -> None:
    from ase.db import connect
    from ase.io import write

    s = _tiny(n_frames=3)
    io.write(s, tmp_path / "a.xyz")
    atoms = __import__("ase.io").io.read(tmp_path / "a.xyz", index=":")
    write(tmp_path / "a.traj", atoms)
    with connect(tmp_path / "a.db") as db:
        for a in atoms:
            db.write(a)
    for name in ("a.traj", "a.db"):
        (back,) = io.read(tmp_path / name)
        _assert_same(back, s, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------- VASP
# Numbers read by hand from data/vasp/OUTCAR (VASP 5.4.4, 6 atoms O O H H H H, one ionic step):
#   line "free  energy   TOTEN  =       -28.34083468 eV"          -> the energy mlpot uses (free energy)
#   line "energy  without entropy=      -28.34083468  energy(sigma->0) =      -28.34083468"
#   TOTAL-FORCE block, atom 1: -0.719072  2.472756 -0.030872;  atom 4:  1.525263 -0.107359 -0.008087
#   "in kB      -0.51025    -0.88566    -0.66316    -0.30228     0.00958     0.00737" (xx yy zz xy yz zx),
#   which is -stress; and the "Total" line just above it, the same in eV (= virial):
#   "Total      -2.14971    -3.73130    -2.79389    -1.27352     0.04036     0.03106"
#   cell: 30 x 15 x 15 Å (volume 6750 Å^3).
OUTCAR_TOTEN = -28.34083468
OUTCAR_KB = np.array([-0.51025, -0.88566, -0.66316, -0.30228, 0.00958, 0.00737])
OUTCAR_TOTAL_EV = np.array([-2.14971, -3.73130, -2.79389, -1.27352, 0.04036, 0.03106])


def _voigt_vasp_to_3x3(v: np.ndarray) -> np.ndarray:
    xx, yy, zz, xy, yz, zx = v
    return np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]])


def test_outcar_against_hand_read_numbers(data_dir: Path) -> None:
    (s,) = io.read(data_dir / "vasp/OUTCAR")
    assert s.n_frames == 1 and s.symbols == ["O", "O", "H", "H", "H", "H"] and s.pbc.all()
    assert s.energies[0] == pytest.approx(OUTCAR_TOTEN, abs=1e-8)
    np.testing.assert_allclose(s.forces[0, 0], [-0.719072, 2.472756, -0.030872], atol=1e-6)
    np.testing.assert_allclose(s.forces[0, 3], [1.525263, -0.107359, -0.008087], atol=1e-6)
    volume = abs(np.linalg.det(s.cells[0]))
    assert volume == pytest.approx(6750.0, rel=1e-10)
    # virial = -stress * V, with -stress = the kB line (1 kB = 0.1 GPa)
    expected = _voigt_vasp_to_3x3(OUTCAR_KB) * 0.1 * EV_PER_A3_PER_GPA * volume
    np.testing.assert_allclose(s.virials[0], expected, rtol=1e-10, atol=1e-12)
    # and agrees with VASP's own "Total" line in eV to its printed precision
    np.testing.assert_allclose(s.virials[0], _voigt_vasp_to_3x3(OUTCAR_TOTAL_EV), atol=5e-5)


def test_outcar_energy_is_free_energy_toten(tmp_path: Path, data_dir: Path) -> None:
    text = (data_dir / "vasp/OUTCAR").read_text()
    old = "energy  without entropy=      -28.34083468  energy(sigma->0) =      -28.34083468"
    assert old in text
    f = tmp_path / "OUTCAR"
    f.write_text(text.replace(old, "energy  without entropy=      -28.10000000  energy(sigma->0) =      -28.20000000"))
    (s,) = io.read(f)
    assert s.energies[0] == pytest.approx(OUTCAR_TOTEN, abs=1e-10)


def test_outcar_to_npy_roundtrip_lossless(tmp_path: Path, data_dir: Path) -> None:
    (s,) = io.read(data_dir / "vasp/OUTCAR")
    io.write(s, tmp_path / "npy")
    _assert_same(io.read(tmp_path / "npy")[0], s)


# ------------------------------------------------------------------------------- validation
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def sysdir(tmp_path: Path, data_dir: Path) -> Path:
    return _copy(data_dir / "molecules_nopbc/C4H3O1", tmp_path / "sys")


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere.*not found"):
        io.read(tmp_path / "nothere")
    with pytest.raises(DataError, match="OUTCAR.*not found"):
        io.read(tmp_path / "OUTCAR")


def test_error_missing_coord(sysdir: Path) -> None:
    (sysdir / "set.000/coord.npy").unlink()
    with pytest.raises(DataError, match=r"coord\.npy.*'coord'.*not found"):
        io.read_deepmd(sysdir)


def test_error_missing_box_without_nopbc(sysdir: Path) -> None:
    (sysdir / "nopbc").unlink()
    with pytest.raises(DataError, match=r"box\.npy.*'box'.*nopbc"):
        io.read_deepmd(sysdir)


def test_error_unreadable_file(sysdir: Path) -> None:
    import os

    if os.geteuid() == 0:
        (sysdir / "set.000/energy.npy").write_bytes(b"garbage, not npy")
        with pytest.raises(DataError, match=r"energy\.npy.*'energy'.*numeric array"):
            io.read_deepmd(sysdir)
        return
    (sysdir / "set.000/energy.npy").chmod(0)
    with pytest.raises(DataError, match=r"energy\.npy.*not readable"):
        io.read_deepmd(sysdir)


def test_error_shape_mismatch_frames(sysdir: Path) -> None:
    e = np.load(sysdir / "set.000/energy.npy")
    np.save(sysdir / "set.000/energy.npy", e[:-1])
    with pytest.raises(DataError, match=r"energy\.npy.*expected 15 frames.*found 14"):
        io.read_deepmd(sysdir)


def test_error_atom_count_varies(sysdir: Path) -> None:
    f = np.load(sysdir / "set.000/force.npy")
    np.save(sysdir / "set.000/force.npy", f[:, :-3])
    with pytest.raises(DataError, match=r"force\.npy.*expected 24 columns.*found 21.*constant"):
        io.read_deepmd(sysdir)


def test_error_atom_count_varies_between_sets(tmp_path: Path) -> None:
    a, b = _tiny(2, symbols=("O", "H", "H")), _tiny(2, symbols=("O", "H", "H", "H"))
    io.write_deepmd(a, tmp_path / "a")
    io.write_deepmd(b, tmp_path / "b")
    shutil.copytree(tmp_path / "b/set.000", tmp_path / "a/set.001")
    with pytest.raises(DataError, match=r"set\.001/coord\.npy.*expected 9 columns.*found 12.*constant"):
        io.read_deepmd(tmp_path / "a")


def test_error_non_finite(sysdir: Path) -> None:
    c = np.load(sysdir / "set.000/coord.npy")
    c[3, 5] = np.nan
    np.save(sysdir / "set.000/coord.npy", c)
    with pytest.raises(DataError, match=r"coord\.npy.*'coord'.*finite.*nan.*\(3, 5\)"):
        io.read_deepmd(sysdir)


def test_error_type_index_out_of_range(sysdir: Path) -> None:
    (sysdir / "type.raw").write_text("0\n1\n1\n1\n2\n3\n0\n0\n")
    with pytest.raises(DataError, match=r"type\.raw.*expected indices in \[0, 3\).*found index 3"):
        io.read_deepmd(sysdir)


def test_error_non_integer_type(sysdir: Path) -> None:
    (sysdir / "type.raw").write_text("0\n1\nx\n")
    with pytest.raises(DataError, match=r"type\.raw.*integer"):
        io.read_deepmd(sysdir)


def test_error_non_positive_volume(tmp_path: Path) -> None:
    s = _tiny(2)
    io.write_deepmd(s, tmp_path / "s")
    box = np.load(tmp_path / "s/set.000/box.npy")
    box[1] = 0.0
    np.save(tmp_path / "s/set.000/box.npy", box)
    with pytest.raises(DataError, match=r"box\.npy.*positive cell volume.*frame 1"):
        io.read_deepmd(tmp_path / "s")


def test_error_bad_type_map(sysdir: Path, tmp_path: Path, data_dir: Path) -> None:
    from ase import Atoms

    (sysdir / "type_map.raw").write_text("C\nH\nH\n")
    with pytest.raises(DataError, match=r"type_map\.raw.*unique element names"):
        io.read_deepmd(sysdir)
    with pytest.raises(DataError, match=r"element\(s\) \['O'\] not in the type_map \['C', 'H'\]"):
        io.read_deepmd(data_dir / "molecules_nopbc/C4H3O1", type_map=["C", "H"])
    with pytest.raises(DataError, match=r"x\.xyz.*\['O'\] not in the given type_map \['H'\]"):
        io.frames_from_atoms([Atoms("OH2")], tmp_path / "x.xyz", type_map=["H"])


def test_error_bad_extxyz(tmp_path: Path) -> None:
    (tmp_path / "bad.xyz").write_text("3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nH 1 1\n")
    with pytest.raises(DataError, match=r"bad\.xyz.*could not read"):
        io.read(tmp_path / "bad.xyz")


def test_error_labels_missing_in_some_frames(tmp_path: Path) -> None:
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    a, b = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]]), Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.8]])
    a.calc = SinglePointCalculator(a, energy=-1.0)
    ase.io.write(tmp_path / "h2.xyz", [a, b])
    with pytest.raises(DataError, match=r"h2\.xyz.*'energies' of frame 1.*missing"):
        io.read(tmp_path / "h2.xyz")


def test_error_unknown_format(tmp_path: Path, water_dir: Path) -> None:
    with pytest.raises(DataError, match="format 'cif2'"):
        io.read(water_dir / "data_0", fmt="cif2")
    with pytest.raises(DataError, match="output format 'pdb'"):
        io.write(_tiny(), tmp_path / "x", fmt="pdb")


def test_error_no_systems_in_dir(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*DeePMD system directory"):
        io.find_systems([tmp_path / "empty"])


# ------------------------------------------------------------------------------- atomic writes
def test_npy_write_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _tiny(3)
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C mid-way
        return real_save(*a, **k)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        io.write_deepmd(s, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_npy_write_failure_keeps_previous_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = _tiny(2, seed=1), _tiny(4, seed=2)
    io.write_deepmd(old, tmp_path / "out")
    monkeypatch.setattr(np, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        io.write_deepmd(new, tmp_path / "out")
    monkeypatch.undo()
    _assert_same(io.read_deepmd(tmp_path / "out"), old)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_extxyz_write_failure_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _tiny(2, seed=1)
    io.write(old, tmp_path / "a.xyz")
    before = (tmp_path / "a.xyz").read_bytes()
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        io.write(_tiny(3, seed=2), tmp_path / "a.xyz")
    assert (tmp_path / "a.xyz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.xyz"]


def _vasprun_xml(steps: list[dict], cell: np.ndarray, symbols: list[str]) -> str:
    """A minimal vasprun.xml (the elements ASE's reader uses): atominfo, initial structure, kpoints,
    and one <calculation> per ionic step with energies, forces (eV/Å) and stress (kB, VASP's sign)."""
    def varray(name, rows):
        return f'<varray name="{name}">' + "".join("<v>" + " ".join(repr(float(x)) for x in r) + "</v>" for r in rows) + "</varray>"

    def structure(frac, name=None):
        attr = f' name="{name}"' if name else ""
        return f"<structure{attr}><crystal>{varray('basis', cell)}</crystal>{varray('positions', frac)}</structure>"

    atoms = "".join(f"<rc><c>{s}</c><c>1</c></rc>" for s in symbols)
    out = ['<?xml version="1.0" encoding="ISO-8859-1"?>', "<modeling>",
           '<kpoints><varray name="kpointlist"><v>0 0 0</v></varray><varray name="weights"><v>1.0</v></varray></kpoints>',
           '<parameters><i name="NELM">60</i></parameters>',
           f'<atominfo><atoms>{len(symbols)}</atoms><array name="atoms"><set>{atoms}</set></array></atominfo>',
           structure(steps[0]["frac"], "initialpos")]
    for st in steps:
        e = f'<energy><i name="e_fr_energy">{st["e_fr"]!r}</i><i name="e_wo_entrp">{st["e_0"]!r}</i><i name="e_0_energy">{st["e_0"]!r}</i></energy>'
        out.append(f"<calculation><scstep>{e}</scstep>{structure(st['frac'])}{varray('forces', st['forces'])}"
                   f"{varray('stress', st['stress_kb'])}{e}</calculation>")
    out.append("</modeling>")
    return "\n".join(out)


def test_vasprun_xml_all_ionic_steps(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    cell = np.array([[7.0, 0.0, 0.0], [0.5, 8.0, 0.0], [0.0, 0.3, 9.0]])
    symbols = ["O", "H", "H"]
    steps = []
    for k in range(3):
        kb = rng.standard_normal((3, 3)) * 5
        steps.append(dict(frac=rng.uniform(0, 1, (3, 3)), forces=rng.standard_normal((3, 3)),
                          stress_kb=kb + kb.T, e_fr=-14.0 - k, e_0=-14.5 - k))
    f = tmp_path / "vasprun.xml"
    f.write_text(_vasprun_xml(steps, cell, symbols))
    (s,) = io.read(f)
    assert s.n_frames == 3 and s.symbols == symbols
    volume = abs(np.linalg.det(cell))
    for k, st in enumerate(steps):
        assert s.energies[k] == st["e_fr"]  # the free energy, as for OUTCAR
        np.testing.assert_allclose(s.positions[k], st["frac"] @ cell, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s.forces[k], st["forces"], rtol=1e-12, atol=1e-12)
        # VASP's stress (kB) is -stress: virial = kB * 0.1 GPa * V
        np.testing.assert_allclose(s.virials[k], st["stress_kb"] * 0.1 * EV_PER_A3_PER_GPA * volume, rtol=1e-10, atol=1e-12)
    io.write(s, tmp_path / "npy")
    _assert_same(io.read(tmp_path / "npy")[0], s)
