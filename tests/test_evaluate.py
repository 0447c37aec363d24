"""`mlpot test` (dp test wording, metrics, detail files, parity plot) and model deviation
(`mlpot model-devi`, formula against a hand computation)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import DATA, small_water_atoms, water_frames, water_model_kw
from mlpot.errors import ModelError


MODEL_DEVI_HEADER = (
    "#       step         max_devi_v         min_devi_v         avg_devi_v"
    "         max_devi_f         min_devi_f         avg_devi_f             devi_e"
)


# ------------------------------------------------------------------------------------------ formula
def _hand_model_devi(e, f, v, n_atoms):
    """Model deviation written out with plain Python loops (independent of mlpot.metrics)."""
    m_models, n_frames = len(e), len(e[0])
    rows = []
    for fr in range(n_frames):
        eps = []
        for i in range(n_atoms):
            mean = [sum(f[m][fr][i][k] for m in range(m_models)) / m_models for k in range(3)]
            sq = [sum((f[m][fr][i][k] - mean[k]) ** 2 for k in range(3)) for m in range(m_models)]
            eps.append((sum(sq) / m_models) ** 0.5)
        sig = []
        for a in range(3):
            for b in range(3):
                vals = [v[m][fr][a][b] / n_atoms for m in range(m_models)]
                mu = sum(vals) / m_models
                sig.append((sum((x - mu) ** 2 for x in vals) / m_models) ** 0.5)
        ea = [e[m][fr] / n_atoms for m in range(m_models)]
        mu = sum(ea) / m_models
        devi_e = (sum((x - mu) ** 2 for x in ea) / m_models) ** 0.5
        avg_v = (sum(s * s for s in sig)) ** 0.5 / 3
        rows.append([max(sig), min(sig), avg_v, max(eps), min(eps), sum(eps) / n_atoms, devi_e])
    return np.array(rows)


def test_model_deviation_formula_vs_hand_computation():
    from mlpot.metrics import model_deviation

    rng = np.random.default_rng(42)
    m, fr, n = 3, 4, 5
    e = rng.normal(size=(m, fr)) * 3
    f = rng.normal(size=(m, fr, n, 3))
    v = rng.normal(size=(m, fr, 3, 3)) * 10
    got = model_deviation(e, f, v, n)
    np.testing.assert_allclose(got, _hand_model_devi(e.tolist(), f.tolist(), v.tolist(), n), rtol=1e-12)
    # identical models deviate by nothing
    same = model_deviation(np.repeat(e[:1], 3, 0), np.repeat(f[:1], 3, 0), np.repeat(v[:1], 3, 0), n)
    np.testing.assert_allclose(same, 0.0, atol=1e-14)
    # two models: sigma_F,i = |F1 - F2| / 2
    two = model_deviation(e[:2], f[:2], v[:2], n)
    np.testing.assert_allclose(two[:, 3], np.linalg.norm(f[0] - f[1], axis=-1).max(axis=1) / 2, rtol=1e-12)


def test_model_devi_cli_against_hand_computation(tiny_model, tmp_path, capsys):
    from ase.io import write

    from mlpot import DeepPotCalculator
    from mlpot.cli import main
    from mlpot.export import save_model

    models = [tiny_model(**water_model_kw(seed=s)) for s in (1, 2, 3)]
    paths = [str(save_model(mm, tmp_path / f"graph.{k:03d}.pt")) for k, mm in enumerate(models)]
    rng = np.random.default_rng(1)
    frames = []
    for k in range(3):
        a = small_water_atoms(2, seed=k)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        frames.append(a)
    traj = tmp_path / "traj.extxyz"
    write(traj, frames, format="extxyz")
    out = tmp_path / "model_devi.out"
    assert main(["model-devi", "-m", *paths, "-t", str(traj), "-o", str(out), "-f", "10", "--device", "cpu"]) == 0
    lines = out.read_text().splitlines()
    assert lines[1] == MODEL_DEVI_HEADER
    table = np.loadtxt(out)
    assert table.shape == (3, 8)
    np.testing.assert_array_equal(table[:, 0], [0, 10, 20])
    # reference: each model through the ASE calculator, deviation by hand
    e, f, v = [], [], []
    for mm in models:
        calc = DeepPotCalculator(mm)
        ek, fk, vk = [], [], []
        for a in frames:
            a = a.copy()
            a.calc = calc
            ek.append(a.get_potential_energy())
            fk.append(a.get_forces().tolist())
            vk.append(calc.results["virial"].tolist())
        e.append(ek), f.append(fk), v.append(vk)
    ref = _hand_model_devi(e, f, v, len(frames[0]))
    np.testing.assert_allclose(table[:, 1:], ref, rtol=2e-6, atol=1e-12)  # %19.6e in the file
    assert (table[:, 4] > 0).all()
    # fewer than two models, or different type maps: one clear error line, no output file
    assert main(["model-devi", "-m", paths[0], "-t", str(traj), "-o", str(tmp_path / "x.out")]) == 2
    other = str(save_model(tiny_model(**water_model_kw(type_map=("H", "O"))), tmp_path / "other.pt"))
    assert main(["model-devi", "-m", paths[0], other, "-t", str(traj), "-o", str(tmp_path / "x.out")]) == 2
    assert "differs from" in capsys.readouterr().err
    assert not (tmp_path / "x.out").exists()


# ------------------------------------------------------------------------------------------ mlpot test
@pytest.fixture(scope="module")
def chno_model(tiny_model, tmp_path_factory):
    from mlpot.data import io
    from mlpot.export import save_model

    mol = io.read_deepmd(DATA / "molecules_nopbc" / "C1H4O2").subset(slice(0, 20))
    model = tiny_model(**water_model_kw(type_map=("C", "H", "O"), stats_systems=[water_frames(2).with_type_map(["C", "H", "O"]), mol]))
    return model, save_model(model, tmp_path_factory.mktemp("test_cli") / "model.pt")


def _virial_system(tmp_path):
    """A small periodic system with energy, force and virial labels, written as a DeePMD npy dir."""
    from mlpot.data import io
    from mlpot.data.frames import LabeledFrames

    rng = np.random.default_rng(3)
    atoms = [small_water_atoms(2, seed=s) for s in (21, 22)]
    sysm = LabeledFrames(
        type_map=["O", "H"],
        atom_types=np.array([0 if s == "O" else 1 for s in atoms[0].get_chemical_symbols()]),
        positions=np.stack([a.positions for a in atoms]),
        cells=np.stack([a.cell[:] for a in atoms]),
        pbc=[True, True, True],
        energies=rng.normal(size=2) - 460.0,
        forces=rng.normal(size=(2, len(atoms[0]), 3)),
        virials=rng.normal(size=(2, 3, 3)),
    )
    d = tmp_path / "vir_sys"
    io.write_deepmd(sysm, d)
    return d


def _metric(text: str, label: str) -> list[float]:
    return [float(x) for x in re.findall(re.escape(label) + r"\s*: (\S+) eV", text)]


def _calc_predictions(model, system):
    from mlpot import DeepPotCalculator

    calc = DeepPotCalculator(model)
    e, f, v = [], [], []
    for k in range(system.n_frames):
        from ase import Atoms

        a = Atoms(symbols=system.symbols, positions=system.positions[k], cell=system.cells[k], pbc=system.pbc)
        a.calc = calc
        e.append(a.get_potential_energy())
        f.append(a.get_forces())
        v.append(calc.results["virial"])
    return np.array(e), np.array(f), np.array(v)


def test_mlpot_test_lines_detail_files_and_plot(chno_model, tmp_path, capsys):
    from mlpot.cli import main
    from mlpot.data import io

    model, path = chno_model
    water = DATA / "water" / "data_3"
    mol = DATA / "molecules_nopbc" / "C1H4O2"
    vir = _virial_system(tmp_path)
    detail = tmp_path / "out" / "detail"
    plot = tmp_path / "parity.png"
    argv = ["test", "-m", str(path), "-s", str(water), str(mol), str(vir), "-n", "2",
            "--detail-file", str(detail), "--plot", str(plot), "--device", "cpu"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    # dp test wording
    for line in ("Energy MAE         : ", "Energy RMSE        : ", "Energy MAE/Natoms  : ", "Energy RMSE/Natoms : ",
                 "Force  MAE         : ", "Force  RMSE        : ", "Virial RMSE/Natoms : ",
                 "# number of test data : 2 ", "# number of systems : 3"):
        assert line in text, line
    assert re.search(r"^Force  RMSE        : \d\.\d{6}e[+-]\d\d eV/A$", text, re.M)
    # independent reference: predictions through the ASE calculator, errors in numpy
    systems = [io.read_deepmd(p).subset(slice(0, 2)) for p in (water, mol, vir)]
    de, dea, df, dv, dva = [], [], [], [], []
    for k, s in enumerate(systems):
        e, f, v = _calc_predictions(model, s)
        n = s.n_atoms
        de.append(e - s.energies), dea.append((e - s.energies) / n), df.append((f - s.forces).ravel())
        assert _metric(text, "Energy RMSE/Natoms")[k] == pytest.approx(np.sqrt(np.mean(dea[-1] ** 2)), rel=1e-5)
        assert _metric(text, "Force  RMSE")[k] == pytest.approx(np.sqrt(np.mean(df[-1] ** 2)), rel=1e-5)
        assert _metric(text, "Force  MAE")[k] == pytest.approx(np.mean(np.abs(df[-1])), rel=1e-5)
        if s.virials is not None:
            dv.append((v - s.virials).ravel())
            dva.append(dv[-1] / n)
    # weighted averages (the 4th value of each line): over all frames / all force components
    assert _metric(text, "Energy RMSE")[3] == pytest.approx(np.sqrt(np.mean(np.concatenate(de) ** 2)), rel=1e-5)
    assert _metric(text, "Energy MAE/Natoms")[3] == pytest.approx(np.mean(np.abs(np.concatenate(dea))), rel=1e-5)
    assert _metric(text, "Energy RMSE/Natoms")[3] == pytest.approx(np.sqrt(np.mean(np.concatenate(dea) ** 2)), rel=1e-5)
    assert _metric(text, "Force  RMSE")[3] == pytest.approx(np.sqrt(np.mean(np.concatenate(df) ** 2)), rel=1e-5)
    # virials only from the one system that has them (printed there and in the average)
    assert _metric(text, "Virial RMSE") == pytest.approx([np.sqrt(np.mean(dv[0] ** 2))] * 2, rel=1e-5)
    assert _metric(text, "Virial MAE/Natoms") == pytest.approx([np.mean(np.abs(dva[0]))] * 2, rel=1e-5)
    # detail files: per-frame energies and per-atom forces, labels then predictions
    eout = np.loadtxt(detail.with_suffix(".e.out"))
    assert eout.shape == (6, 2)
    np.testing.assert_allclose(eout[:, 0], np.concatenate([s.energies for s in systems]))
    np.testing.assert_allclose(eout[:, 1], np.concatenate(de) + eout[:, 0], rtol=1e-12)
    epa = np.loadtxt(detail.with_suffix(".e_peratom.out"))
    np.testing.assert_allclose(epa, eout / np.repeat([s.n_atoms for s in systems], 2)[:, None], rtol=1e-12)
    fout = np.loadtxt(detail.with_suffix(".f.out"))
    assert fout.shape == (2 * (192 + 7 + 24), 6)
    np.testing.assert_allclose(fout[:, 3:] - fout[:, :3], np.concatenate(df).reshape(-1, 3), atol=1e-12)
    assert "data_fx data_fy data_fz pred_fx pred_fy pred_fz" in detail.with_suffix(".f.out").read_text()
    assert str(water) in detail.with_suffix(".e.out").read_text().splitlines()[0]
    assert np.loadtxt(detail.with_suffix(".v.out")).shape == (2, 18)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weighted_average_and_unknown_element(chno_model, tmp_path, capsys):
    from mlpot.data.frames import LabeledFrames
    from mlpot.metrics import predict, weighted_average

    errs = [{"rmse_f": (1.0, 30), "mae_f": (2.0, 30)}, {"rmse_f": (3.0, 10), "mae_f": (4.0, 10)}]
    avg = weighted_average(errs)
    assert avg["rmse_f"][0] == pytest.approx(np.sqrt((1 * 30 + 9 * 10) / 40))
    assert avg["mae_f"][0] == pytest.approx((2 * 30 + 4 * 10) / 40)
    model, _ = chno_model
    s = LabeledFrames(type_map=["N", "H"], atom_types=[0, 1], positions=np.array([[[0, 0, 0], [0, 0, 1.0]]]),
                      cells=np.zeros((1, 3, 3)), pbc=[False] * 3)
    with pytest.raises(ModelError, match=r"\['N'\] not in the model's type_map \['C', 'H', 'O'\]"):
        predict(model, s)


def test_predict_batches_agree(chno_model):
    """Frames evaluated one at a time or all in one batch give the same numbers."""
    from mlpot.metrics import predict

    model, _ = chno_model
    s = water_frames(3, "data_1").with_type_map(["C", "H", "O"])
    one = predict(model, s, batch_atoms=1)
    allb = predict(model, s, batch_atoms=10**6)
    for k in ("energy", "forces", "virial"):
        np.testing.assert_allclose(one[k], allb[k], rtol=1e-10, atol=1e-10)
