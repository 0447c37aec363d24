"""Issue 16's first-hour rough edges: the H5MD trajectory `mlpot md` writes is readable by `mlpot convert`
and `mlpot model-devi` (which takes each frame's MD step), model-file loading messages, the real maximum
in a neighbor overflow, refusing to train over a previous run, progress bars, the parity plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from mlpot import cli


def _argon_h5md(path: Path, steps: int = 12, interval: int = 4) -> Path:
    """A short Lennard-Jones argon run written by md_engine's H5MD reporter (32 atoms, 0..steps)."""
    from md_engine import H5MDReporter, LennardJones, NoseHooverChain, Simulation, State

    atoms = bulk("Ar", "fcc", a=5.8, cubic=True).repeat((2, 2, 2))
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.1, atoms.positions.shape)
    st = State.from_atoms(atoms, temperature=100.0, seed=1, device="cpu")
    sim = Simulation(st, LennardJones(0.0104, 3.40, 8.0, smooth=True, ro=6.5), NoseHooverChain(5.0, 100.0, tau=200.0),
                     [H5MDReporter(path, interval)])
    sim.run(steps)
    return path


@pytest.fixture(scope="module")
def traj(tmp_path_factory) -> Path:
    return _argon_h5md(tmp_path_factory.mktemp("md") / "traj.h5")


# ------------------------------------------------------------------------------------------------ H5MD
def test_h5md_is_read_as_a_data_format(traj):
    from md_engine import read_h5md
    from mlpot.data import io

    assert io.guess_format(traj) == "h5md"
    (system,) = io.read(traj)
    ref = read_h5md(traj)
    assert system.n_frames == 4 and system.n_atoms == 32 and system.type_map == ["Ar"]
    np.testing.assert_array_equal(system.positions, ref["positions"])
    np.testing.assert_array_equal(system.cells, ref["cells"])
    assert system.pbc.tolist() == [True] * 3 and system.energies is None
    assert [a.tolist() for a in io.frame_steps(traj)] == [[0, 4, 8, 12]]


def test_convert_h5md_to_extxyz(traj, tmp_path, capsys):
    import ase.io

    out = tmp_path / "out.xyz"
    assert cli.main(["convert", str(traj), "-o", str(out)]) == 0
    frames = ase.io.read(out, index=":")
    assert len(frames) == 4 and frames[0].get_chemical_symbols() == ["Ar"] * 32
    from md_engine import read_h5md

    np.testing.assert_allclose(frames[-1].positions, read_h5md(traj)["positions"][-1], atol=1e-10)


def test_model_devi_reads_h5md_with_md_steps(traj, tmp_path):
    from mlpot.export import save_model
    from mlpot.testing import tiny_model

    paths = []
    for seed in (1, 2):
        p = tmp_path / f"m{seed}.pt"
        save_model(tiny_model(type_map=("Ar",), sel=(48,), seed=seed), p)
        paths.append(str(p))
    out = tmp_path / "model_devi.out"
    assert cli.main(["model-devi", "-m", *paths, "-s", str(traj), "-o", str(out), "-f", "100"]) == 0
    rows = np.loadtxt(out)
    assert rows[:, 0].astype(int).tolist() == [0, 4, 8, 12]  # the file's steps, not index x frequency
    assert np.all(rows[:, 4] > 0)


# ---------------------------------------------------------------------------------------- model files
ROOT = Path(__file__).resolve().parent.parent
MOLECULES = ROOT / "data" / "molecules_nopbc"


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "weights_only" not in err, err
    return err


@pytest.mark.parametrize("name", ["model.pth", "frozen_model.pb", "model.dp", "model.yaml"])
def test_deepmd_model_given_as_mlpot_model_points_to_import_deepmd(tmp_path, capsys, name):
    import torch

    from mlpot.errors import ModelError
    from mlpot.export import load_model

    p = tmp_path / name
    if name.endswith(".pth"):  # a TorchScript archive, as DeePMD-kit's `dp freeze` writes
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), p)
    elif name.endswith(".dp"):
        import h5py

        with h5py.File(p, "w") as f:
            f.attrs["backend"] = "DPModel"
    else:
        p.write_bytes(b"\x0a\x0cnot a graph" if name.endswith(".pb") else b"backend: DPModel\nmodel: {}\n")
    with pytest.raises(ModelError, match="import-deepmd") as exc:
        load_model(p, device="cpu")
    assert "DeePMD-kit" in str(exc.value) and "weights_only" not in str(exc.value)
    err = _one_line_error(capsys, ["test", "-m", str(p), "-s", str(MOLECULES / "C4H3O1")])
    assert "import-deepmd" in err and name in err


def test_non_model_files_are_one_line_without_torch_advice(tmp_path, capsys):
    import pickle

    import torch

    txt = tmp_path / "notes.txt"
    txt.write_text("hello\n")
    pkl = tmp_path / "obj.pt"
    pkl.write_bytes(pickle.dumps(Path("x")))  # a pickle of an arbitrary Python object
    zipped = tmp_path / "objects.pt"
    torch.save({"callable": Path("x")}, zipped)  # a torch archive with a non-tensor object
    for p, words in ((txt, "text file"), (pkl, "pickle"), (zipped, "torch archive")):
        err = _one_line_error(capsys, ["test", "-m", str(p), "-s", str(MOLECULES / "C4H3O1")])
        assert p.name in err and words in err and "mlpot freeze" in err, err
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "config": "{}", "step": 1}, ckpt)
    err = _one_line_error(capsys, ["test", "-m", str(ckpt), "-s", str(MOLECULES / "C4H3O1")])
    assert "training checkpoint" in err and "mlpot freeze" in err


def _tiny_train_input(tmp_path: Path, steps: int = 2) -> Path:
    import json

    cfg = {
        "model": {"type_map": ["C", "H", "O"],
                  "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [4, 6, 4],
                                 "neuron": [4, 8], "axis_neuron": 4, "seed": 1},
                  "fitting_net": {"neuron": [8, 8], "seed": 1}},
        "learning_rate": {"start_lr": 0.005, "stop_lr": 1e-4, "decay_steps": 5},
        "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(MOLECULES / "C4H3O1")], "batch_size": 2},
                     "numb_steps": steps, "seed": 7, "disp_freq": 1, "save_freq": 1, "device": "cpu"},
    }
    p = tmp_path / "in.json"
    p.write_text(json.dumps(cfg))
    return p


def test_restart_from_a_frozen_model_says_init_model(tmp_path, capsys):
    from mlpot.export import save_model
    from mlpot.testing import tiny_model

    frozen = tmp_path / "model.pt"
    save_model(tiny_model(type_map=("C", "H", "O"), sel=(4, 6, 4)), frozen)
    err = _one_line_error(capsys, ["train", str(_tiny_train_input(tmp_path)), "-o", str(tmp_path / "out"), "-q",
                                   "--restart", str(frozen)])
    assert "frozen model" in err and "--init-model" in err and "model.pt" in err


# ------------------------------------------------------------------------------------ neighbor overflow
def test_neighbor_overflow_names_the_largest_count():
    """Three frames: frame 1 holds the densest atom; the message names it and its count, not the first
    offending atom (frame 0), and keeps the existing wording."""
    import re

    import torch

    from mlpot.errors import ModelError
    from mlpot.model import evaluate
    from mlpot.testing import tiny_model

    rng = np.random.default_rng(3)
    cell = np.eye(3) * 12.0
    n = 40
    frames = [rng.uniform(0, 12.0, (n, 3)) for _ in range(3)]
    frames[1][:12] = 6.0 + rng.normal(0, 0.6, (12, 3))  # a dense cluster in frame 1
    types = np.zeros(n, dtype=int)
    model = tiny_model(type_map=("O", "H"), sel=(3, 4), rcut=3.0)
    counts = []
    for pos in frames:
        d = np.linalg.norm((pos[:, None] - pos[None]) - 12.0 * np.round((pos[:, None] - pos[None]) / 12.0), axis=-1)
        counts.append(((d < 3.0) & (d > 0)).sum(1))
    fr = int(np.argmax([c.max() for c in counts]))
    assert fr == 1 and counts[0].max() > 3  # frame 0 overflows too, with fewer neighbors
    pos = torch.tensor(np.concatenate(frames))
    t = torch.tensor(np.tile(types, 3))
    fi = torch.repeat_interleave(torch.arange(3), n)
    cells = torch.tensor(np.stack([cell] * 3))
    with pytest.raises(ModelError, match=r"frame \d+, atom \d+ has \d+ neighbors of 'O'.*raise sel\[0\]") as exc:
        evaluate(model, pos, t, cells, [True] * 3, frame_index=fi)
    msg = str(exc.value)
    m = re.search(r"frame (\d+), atom (\d+) has (\d+) neighbors", msg)
    assert int(m.group(1)) == 1 and int(m.group(3)) == counts[1].max() and counts[1][int(m.group(2))] == counts[1].max()
    assert f"raise sel[0] to at least {counts[1].max()}" in msg and "\n" not in msg


# ------------------------------------------------------------------------------ a previous training run
def test_train_into_a_previous_run_refuses_unless_overwrite_or_restart(tmp_path, capsys):
    inp = _tiny_train_input(tmp_path, steps=2)
    out = tmp_path / "out"
    assert cli.main(["train", str(inp), "-o", str(out), "-q", "--no-freeze"]) == 0
    first = (out / "lcurve.out").read_text()
    err = _one_line_error(capsys, ["train", str(inp), "-o", str(out), "-q", "--no-freeze"])
    assert "previous training" in err and "lcurve.out" in err and "--overwrite" in err and "--restart" in err
    assert (out / "lcurve.out").read_text() == first  # untouched
    assert cli.main(["train", str(inp), "-o", str(out), "-q", "--no-freeze", "--overwrite"]) == 0
    assert (out / "lcurve.out").read_text() == first  # same seed: the same run again
    assert cli.main(["train", str(inp), "-o", str(out), "-q", "--no-freeze", "--steps", "3",
                     "--restart", str(out / "model.ckpt.pt")]) == 0
    assert len((out / "lcurve.out").read_text().splitlines()) == len(first.splitlines()) + 1


# ------------------------------------------------------------------------------------------- progress
class _Tty:
    """A terminal-like stream (isatty True) that keeps what is written."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("no descriptor")


def test_progress_bar_terminal_quiet_and_zero_columns(monkeypatch):
    import io
    import os
    import shutil

    from mlpot.progress import NullBar, progress_bar

    assert isinstance(progress_bar(10, stream=io.StringIO()), NullBar)  # a log file: no bar
    assert isinstance(progress_bar(10, stream=_Tty(), quiet=True), NullBar)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(0, 0): os.terminal_size((0, 0)))
    tty = _Tty()
    with progress_bar(5, desc="test", stream=tty) as bar:
        for _ in range(5):
            bar.update(1)
        bar.refresh()
    assert "5/5" in tty.text and "test" in tty.text and "frame/s" in tty.text and "|" in tty.text


@pytest.mark.parametrize("command", ["test", "model-devi", "convert", "neighbor-stat"])
def test_long_commands_have_quiet_and_a_progress_bar(command, monkeypatch, tmp_path, capsys):
    import sys

    import mlpot.progress as prog

    calls = []
    real = prog.progress_bar

    def spy(total, **kw):
        calls.append((total, kw))
        return real(total, **kw)

    monkeypatch.setattr(prog, "progress_bar", spy)
    from mlpot.export import save_model
    from mlpot.testing import tiny_model

    model = tmp_path / "m.pt"
    save_model(tiny_model(type_map=("C", "H", "O"), sel=(8, 12, 8)), model)
    model2 = tmp_path / "m2.pt"
    save_model(tiny_model(type_map=("C", "H", "O"), sel=(8, 12, 8), seed=3), model2)
    data = str(MOLECULES / "C4H3O1")
    argv = {"test": ["test", "-m", str(model), "-s", data, "-n", "0"],
            "model-devi": ["model-devi", "-m", str(model), str(model2), "-s", data, "-o", str(tmp_path / "md.out")],
            "convert": ["convert", data, "-o", str(tmp_path / "c.xyz")],
            "neighbor-stat": ["neighbor-stat", "-s", data, "-r", "4"]}[command]
    assert cli.main(argv + ["-q"]) == 0
    assert calls and calls[-1][1]["quiet"] is True
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert cli.main(argv) == 0
    assert calls[-1][1]["quiet"] is False and calls[-1][0] >= 1
    if command != "convert":
        assert "frame" in sys.stderr.text and "/s" in sys.stderr.text  # the bar: count, rate, ETA


# ----------------------------------------------------------------------------------------- parity plot
def _parity_data(n_frames: int = 40, n_atoms: int = 192, seed: int = 0):
    from mlpot.plot import ParityData

    rng = np.random.default_rng(seed)
    e_ref = -155.4 + 0.004 * rng.normal(size=n_frames)  # absolute energies per atom, a narrow range
    f_ref = rng.normal(0, 1.2, n_frames * n_atoms * 3)
    d = ParityData.empty()
    d.e_ref.append(e_ref)
    d.e_pred.append(e_ref + 0.0008 * rng.normal(size=n_frames))
    d.f_ref.append(f_ref)
    d.f_pred.append(f_ref + 0.08 * rng.normal(size=f_ref.size))
    return d


def test_parity_plot_absolute_energies_force_density_and_titles(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.collections import PolyCollection

    from mlpot.plot import parity_figure, parity_plot

    fig = parity_figure(_parity_data(), title="model.pt")
    fig.canvas.draw()
    e_ax, f_ax = fig.axes[0], fig.axes[1]
    assert e_ax.get_title() == "energy per atom" and f_ax.get_title() == "force components"
    for axis in (e_ax.xaxis, e_ax.yaxis):
        assert axis.get_offset_text().get_text() == ""  # no "+1.554e2" offset
        labels = [t.get_text().replace("\u2212", "-") for t in axis.get_ticklabels() if t.get_text()]
        assert labels and all(lab.startswith("-155.") for lab in labels), labels
    assert any(isinstance(c, PolyCollection) for c in f_ax.collections)  # hexbin density
    # the figure title sits above every panel title (no collision)
    r = fig.canvas.get_renderer()
    sup = fig._suptitle.get_window_extent(r)
    for ax in (e_ax, f_ax):
        assert sup.y0 >= ax.title.get_window_extent(r).y1 - 0.5
    out = parity_plot(tmp_path / "parity.png", _parity_data(), title="model.pt")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
