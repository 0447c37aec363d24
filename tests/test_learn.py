"""``mlpot learn`` (issue 17): candidate selection against hand-computed deviations, the fingerprint,
the loop with a tiny model, EMT labels and two iterations (an interruption after the first round of
iteration 0, resumed without redoing its tasks; a labeller failing on some frames), and the bad
inputs (one line, exit 2, before any task runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write

from mlpot.cli import main
from mlpot.metrics import model_deviation
from mlpot.workflows.learn.select import (ACCURATE, CANDIDATE, FAILED, classify, counts, fingerprint_distance,
                                          outlier_members, pick_candidates, radial_fingerprint)


# ------------------------------------------------------------------------------------------ selection
def test_classification_against_hand_computed_deviations() -> None:
    """Two models, two atoms: member 1's force on atom 0 differs from member 0's by δ, so
    ε_0 = sqrt(mean over models |F − ⟨F⟩|²) = |δ|/2 and ε_F,max = |δ|/2 by hand."""
    deltas = np.array([0.02, 0.1, 0.3, 0.6, 2.0])  # eV/Å
    f0 = np.zeros((len(deltas), 2, 3))
    f1 = f0.copy()
    f1[:, 0, 0] = deltas * 0.6
    f1[:, 0, 1] = deltas * 0.8  # |δ| = deltas
    devi = model_deviation(np.zeros((2, len(deltas))), np.stack([f0, f1]), None, 2)
    np.testing.assert_allclose(devi[:, 3], deltas / 2, rtol=1e-12)
    cls = classify(devi[:, 3], lo=0.05, hi=0.3)  # ε = 0.01, 0.05, 0.15, 0.3, 1.0
    assert cls.tolist() == [ACCURATE, CANDIDATE, CANDIDATE, FAILED, FAILED]  # lo ≤ ε < hi: candidate
    assert counts(cls) == {"accurate": 1, "candidate": 2, "failed": 2}
    assert classify([np.nan, np.inf], 0.05, 0.3).tolist() == [FAILED, FAILED]


def test_picks_spread_over_trajectories_and_drop_duplicates() -> None:
    picked = pick_candidates([list(range(10)), list(range(10)), [0, 1]], 5, seed=3)
    per_traj = [sum(1 for t, _ in picked if t == k) for k in range(3)]
    assert per_traj == [2, 2, 1] and len(set(picked)) == 5
    assert picked == pick_candidates([list(range(10)), list(range(10)), [0, 1]], 5, seed=3)  # seeded
    assert len(pick_candidates([[0, 1], []], 10)) == 2  # fewer candidates than asked: all of them
    # near-duplicates: trajectory 0 holds the same structure three times and one distinct frame
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(0)
    other = base.copy()
    other.positions += rng.normal(0, 0.1, other.positions.shape)
    frames = [base, base.copy(), base.copy(), other]
    fps = [[radial_fingerprint(a.positions, a.cell.array, a.pbc, a.get_chemical_symbols()) for a in frames]]
    got = pick_candidates([[0, 1, 2, 3]], 4, seed=0, fingerprints=fps, tolerance=0.01)
    assert sorted(f for _, f in got if f != 3) in ([0], [1], [2]) and (0, 3) in got and len(got) == 2
    assert len(pick_candidates([[0, 1, 2, 3]], 4, seed=0, fingerprints=fps, tolerance=0.0)) == 4


def test_fingerprint_invariances() -> None:
    """The fingerprint ignores atom order and lattice translations, and sees a displacement."""
    at = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    at.positions += np.random.default_rng(1).normal(0, 0.05, at.positions.shape)
    fp = radial_fingerprint(at.positions, at.cell.array, at.pbc, at.get_chemical_symbols())
    perm = np.random.default_rng(2).permutation(len(at))
    shifted = at.positions[perm] + at.cell.array[0]
    fp2 = radial_fingerprint(shifted, at.cell.array, at.pbc, [at.get_chemical_symbols()[i] for i in perm])
    assert fingerprint_distance(fp, fp2) < 1e-12
    moved = at.positions.copy()
    moved[0] += [0.3, 0.0, 0.0]
    assert fingerprint_distance(fp, radial_fingerprint(moved, at.cell.array, at.pbc, at.get_chemical_symbols())) > 0.01


# ------------------------------------------------------------------------------------------ a tiny campaign
TRAIN = {
    "model": {"type_map": ["Cu"],
              "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 1.0, "sel": [24], "neuron": [4, 8],
                             "axis_neuron": 4},
              "fitting_net": {"neuron": [16, 16]}},
    "learning_rate": {"start_lr": 0.005, "stop_lr": 1e-4, "decay_steps": 10},
    "training": {"training_data": {"systems": ["placeholder"], "batch_size": 2}, "numb_steps": 20,
                 "disp_freq": 10, "save_freq": 20, "device": "cpu"},
}


def _emt(atoms):
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = atoms.copy()
    atoms.calc = EMT()
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
    return atoms


def campaign(tmp: Path, **over) -> Path:
    """The input of a tiny campaign in ``tmp``: 6 EMT frames of 32 Cu atoms, a 2-member ensemble,
    one NVT stage of 40 steps at 300 K, frames every 10 steps, the flaky EMT labeller."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        at = bulk("Cu", "fcc", a=3.61 * (0.99 + 0.004 * k), cubic=True).repeat((2, 2, 2))
        at.positions += rng.normal(0, 0.05, at.positions.shape)
        frames.append(_emt(at))
    write(tmp / "init.extxyz", frames)
    write(tmp / "fcc32.extxyz", bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2)))
    (tmp / "train.json").write_text(json.dumps(TRAIN))
    cfg = {"init_data": ["init.extxyz"], "training": "train.json", "ensemble_size": 2,
           "f_trust_lo": 1e-4, "f_trust_hi": 50.0, "candidates_per_iteration": 4, "duplicate_tolerance": 1e-6,
           "fine_tune": {"numb_steps": 10, "start_lr": 0.002, "start_pref_e": 0.5},
           "stages": [{"structures": ["fcc32.extxyz"], "ensemble": "nvt", "temperatures": [300], "steps": 40,
                       "traj_every": 10, "max_iterations": 2}],
           "max_iterations": 2, "accurate_target": 0.99,
           "labeller": {"calculator": "mlpot.workflows.learn.testing:FlakyEMT", "kwargs": {"every": 20},
                        "frames_per_task": 4},
           "output_dir": "out", "outlier_factor": None}
    cfg.update(over)
    path = tmp / "learn.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_loop_two_iterations_resume_and_failing_labels(tmp_path: Path) -> None:
    from mlpot.data.store import HDF5Store
    from mlpot.workflows.learn.config import load_learn_config
    from mlpot.workflows.learn.loop import run_learn

    cfg = load_learn_config(campaign(tmp_path))
    out = tmp_path / "out"
    # an interruption in the middle of iteration 0: after its train/explore/select round
    stopped = run_learn(cfg, progress=False, stop_after="iter.000/select", echo=lambda s: None)
    assert stopped == {"status": "stopped", "iteration": 0}
    first = {n: (out / "tasks" / "iter.000" / n / "DONE").read_text() for n in ("train.0", "train.1", "explore.000", "select")}
    assert not (out / "tasks" / "iter.000" / "label.000").exists()
    lines: list[str] = []
    data = run_learn(cfg, progress=False, echo=lines.append)
    # resumed: the finished tasks of iteration 0 were not run again (one start each in their logs)
    for n, done in first.items():
        folder = out / "tasks" / "iter.000" / n
        assert (folder / "DONE").read_text() == done
        assert (folder / "task.log").read_text().count("=== ") == 1, n
    recs = data["iterations"]
    assert [r["iteration"] for r in recs] == [0, 1] and data["status"] == "stage_max_iterations"
    assert recs[0]["tasks_reused"] >= 4
    # frames at steps 0, 10, 20, 30, 40 of one run; with f_trust_lo tiny every frame is a candidate
    for r in recs:
        assert r["n_frames"] == 5 and r["accurate"] + r["candidate"] + r["failed"] == 5
        assert r["picked"] == 4 and (r["f_trust_lo"], r["f_trust_hi"]) == (1e-4, 50.0)
    # the flaky labeller fails on steps that are multiples of 20: those frames are marked, the rest labelled
    sel0 = json.loads((out / "tasks" / "iter.000" / "select" / "result.json").read_text())
    steps = [p["step"] for p in sel0["picked"]]
    failed = [f["step"] for f in recs[0]["label_failed"]]
    assert sorted(failed) == sorted(s for s in steps if s % 20 == 0) and failed
    assert all("SCF not converged" in f["error"] for f in recs[0]["label_failed"])
    assert recs[0]["labelled"] == len(steps) - len(failed)
    # the dataset: init + the labels of both iterations, with provenance; labels equal EMT's own
    with HDF5Store(out / "data.h5") as store:
        names = store.names
        assert [n for n in names if n.startswith("init.")] and "it000.000" in names and "it001.000" in names
        view = store["it000.000"]
        prov = json.loads(view.origin)["mlpot_learn"]
        assert prov["iteration"] == 0 and prov["temperature_K"] == 300 and prov["ensemble"] == "nvt"
        assert sorted(prov["md_steps"]) == sorted(s for s in steps if s % 20)
        fr = view.read()
        assert fr.n_frames == recs[0]["labelled"]
        for k in range(fr.n_frames):
            from ase import Atoms

            at = Atoms("Cu32", positions=fr.positions[k], cell=fr.cells[k], pbc=True)
            at.calc = EMT()
            np.testing.assert_allclose(fr.energies[k], at.get_potential_energy(), atol=1e-10)
            np.testing.assert_allclose(fr.forces[k], at.get_forces(), atol=1e-10)
            np.testing.assert_allclose(fr.virials[k], -at.get_stress(voigt=False) * at.get_volume(), atol=1e-8)
    # iteration 1 trained on the grown data, fine-tuned from iteration 0's members
    assert recs[1]["training_frames"] == 6 + recs[0]["labelled"]
    assert all(t["init_model"] for t in recs[1]["train"]) and not any(t["init_model"] for t in recs[0]["train"])
    # the deviations recorded by the exploration are those of the two members on its frames (as read back
    # from traj.extxyz, whose positions carry 8 decimals: rtol 1e-6)
    from mlpot.data.io import read as read_data
    from mlpot.export import load_model
    from mlpot.metrics import system_model_deviation

    ex = json.loads((out / "tasks" / "iter.000" / "explore.000" / "result.json").read_text())
    models = [load_model(out / "tasks" / "iter.000" / f"train.{k}" / "train" / "model.pt") for k in range(2)]
    traj = read_data(ex["traj"], type_map=["Cu"])[0]
    np.testing.assert_allclose(system_model_deviation(models, traj)[:, 3], ex["max_devi_f"], rtol=1e-6)
    # outputs
    for f in ("results.json", "iterations.csv", "accurate_fraction.png", "deviation_hist.png", "models/model.1.pt"):
        assert (out / f).is_file(), f
    assert len(lines) == 3 and lines[-1].startswith("mlpot learn: NOT converged")
    # a third run of the same input reuses everything and writes the same records
    again = run_learn(cfg, progress=False, echo=lambda s: None)
    assert [r["labelled"] for r in again["iterations"]] == [r["labelled"] for r in recs]
    assert all(r["tasks_reused"] >= 4 for r in again["iterations"])


def test_stage_trust_levels_reach_the_selection(tmp_path: Path) -> None:
    """A stage's own f_trust_lo / f_trust_hi replace the top-level ones in its select task (which
    classifies the frames) and in its record; a stage without them inherits the top-level levels."""
    from mlpot.workflows.learn.config import load_learn_config
    from mlpot.workflows.learn.loop import explore_tasks

    hot = {"structures": ["fcc32.extxyz"], "temperatures": [1200], "steps": 40, "f_trust_lo": 0.15}
    cold = {"structures": ["fcc32.extxyz"], "temperatures": [300], "steps": 40}
    cfg = load_learn_config(campaign(tmp_path, f_trust_lo=0.05, f_trust_hi=0.5, stages=[cold, hot]))
    assert cfg.trust(0) == (0.05, 0.5) and cfg.trust(1) == (0.15, 0.5)
    for stage, lo in ((0, 0.05), (1, 0.15)):
        tasks, _ = explore_tasks(cfg, 3, stage, ["a", "b"])
        sel = [t for t in tasks if t.name.endswith("/select")][0]
        assert (sel.params["f_trust_lo"], sel.params["f_trust_hi"]) == (lo, 0.5)


def test_outlier_members_against_hand_computed_medians() -> None:
    # member 2: 0.40 > 2 × median(0.10, 0.12, 0.11) = 0.22; member 3 (0.21) is not
    assert outlier_members([0.10, 0.12, 0.40, 0.21], 2.0) == [2]
    assert outlier_members([0.10, 0.12, 0.40, 0.21], 1.5) == [2, 3]   # 0.21 > 1.5 × median(0.10, 0.12, 0.40) = 0.18
    assert outlier_members([0.1, 0.1], 1.0) == []                       # equal: not above
    assert outlier_members([0.1, float("nan"), 0.1], 2.0) == [1]        # a diverged member
    assert outlier_members([0.1, 0.25], 2.0) == [1] and outlier_members([0.1, 0.19], 2.0) == []


def test_outlier_member_is_retrained_and_the_better_attempt_explores(tmp_path: Path) -> None:
    """With factor 1 the worse of two members is an outlier by construction: it is retrained once from
    scratch with a new seed; the attempt with the lower training-data force RMSE (checked here
    through the ASE calculator on every stored frame) is the member the exploration uses."""
    from ase import Atoms

    from mlpot.calculator import DeepPotCalculator
    from mlpot.data.store import HDF5Store
    from mlpot.workflows.learn.config import load_learn_config
    from mlpot.workflows.learn.loop import run_learn

    cfg = load_learn_config(campaign(tmp_path, outlier_factor=1.0, outlier_retries=1, max_iterations=1))
    out = tmp_path / "out"
    lines: list[str] = []
    data = run_learn(cfg, progress=False, echo=lines.append)
    rec = data["iterations"][0]
    assert len(rec["retrained"]) == 1
    r = rec["retrained"][0]
    k = r["member"]
    it0 = out / "tasks" / "iter.000"
    first = json.loads((it0 / f"train.{k}" / "result.json").read_text())
    retry = json.loads((it0 / f"train.{k}.retry1" / "result.json").read_text())
    other = json.loads((it0 / f"train.{1 - k}" / "result.json").read_text())
    assert retry["seed"] != first["seed"] and retry["init_model"] is None
    assert r["data_rmse_f"] == first["data_rmse_f"] > other["data_rmse_f"]
    assert r["data_rmse_f_new"] == retry["data_rmse_f"]
    # the training-data force RMSE recomputed independently (ASE calculator, frame by frame)
    for res in (first, retry, other):
        sq, n = 0.0, 0
        with HDF5Store(out / "data.h5") as store:
            for name in res["systems"]:
                fr = store.read(name)
                calc = DeepPotCalculator(res["model"], device="cpu")
                for j in range(fr.n_frames):
                    at = Atoms("Cu32", positions=fr.positions[j], cell=fr.cells[j], pbc=True)
                    at.calc = calc
                    sq += float(np.sum((at.get_forces() - fr.forces[j]) ** 2))
                    n += fr.forces[j].size
        assert res["data_rmse_f"] == pytest.approx(np.sqrt(sq / n), rel=1e-10)
    best = f"iter.000/train.{k}.retry1" if retry["data_rmse_f"] < first["data_rmse_f"] else f"iter.000/train.{k}"
    ex = json.loads((it0 / "explore.000" / "task.json").read_text())
    members = ex["params"]["members"]
    assert members[k] == best and members[1 - k] == f"iter.000/train.{1 - k}"
    assert any(f"member {k} retrained" in line for line in lines)
    assert Path(data["final_models"][k]).read_bytes() == (out / "tasks" / best / "train" / "model.pt").read_bytes()
    # a re-run decides the same and reruns nothing
    again = run_learn(cfg, progress=False, echo=lambda s: None)
    assert again["iterations"][0]["retrained"] == rec["retrained"]
    assert (it0 / f"train.{k}.retry1" / "task.log").read_text().count("=== ") == 1


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("over, words", [
    ({"f_trust_lo": 0.3, "f_trust_hi": 0.3}, ["f_trust_lo", "below f_trust_hi"]),
    ({"labeller": {"calculator": "ase.calculators.nonexistent:Calc"}}, ["labeller.calculator", "cannot import"]),
    ({"labeller": {"calculator": "ase.calculators.emt:NoSuch"}}, ["labeller.calculator", "NoSuch"]),
    ({"labeller": {"calculator": "mlpot.workflows.learn.testing:EnergyOnly"}}, ["labeller.calculator", "forces"]),
    ({"labeller": {"calculator": "mlpot.workflows.learn.testing:ForcesClaimed", "check_on_start": True}},
     ["labeller", "gives no forces"]),
    ({"stages": [{"structures": ["ag.extxyz"], "temperatures": [300], "steps": 10}]},
     ["stages[0].structures[0]", "['Ag']", "type_map ['Cu']"]),
    ({"stages": [{"structures": ["fcc32.extxyz"], "temperatures": [300], "pressures": [1000], "steps": 10}]},
     ["stages[0]", "nvt stage has no pressure"]),
    ({"stages": [{"structures": ["fcc32.extxyz"], "temperatures": [300], "steps": 10},
                 {"structures": ["fcc32.extxyz"], "temperatures": [900], "steps": 10, "f_trust_lo": 60.0}]},
     ["stages[1]", "f_trust_lo (60.0 eV/Å) must be below f_trust_hi (50.0 eV/Å)"]),
])
def test_bad_input_one_line_exit_2_before_any_task(tmp_path: Path, capsys: pytest.CaptureFixture, over: dict,
                                                   words: list[str]) -> None:
    write(tmp_path / "ag.extxyz", bulk("Ag", "fcc", a=4.09, cubic=True))
    path = campaign(tmp_path, **over)
    assert main(["learn", str(path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mlpot learn: error:"), err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out" / "tasks").exists()


def test_label_task_marks_failed_frames_and_journals(tmp_path: Path) -> None:
    """The label task on its own: a frame whose calculation raises is marked failed, the others are
    EMT's labels; a re-run of the task reads its journal instead of recomputing."""
    from mlpot.workflows.learn.tasks import label

    frames = []
    for step in (10, 20, 30):
        at = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        at.positions += np.random.default_rng(step).normal(0, 0.05, at.positions.shape)
        at.info["step"] = step
        frames.append(at)
    write(tmp_path / "candidates.extxyz", frames)
    params = {"select": "s", "indices": [0, 1, 2], "calculator": "mlpot.workflows.learn.testing:FlakyEMT",
              "kwargs": {"every": 20}, "stress": True}
    deps = {"s": {"candidates_file": str(tmp_path / "candidates.extxyz")}}
    res = label(params, tmp_path, deps)["frames"]
    assert [r["ok"] for r in res] == [True, False, True]
    assert "SCFNotConverged" in res[1]["error"]
    ref = read(tmp_path / "candidates.extxyz", index=2)
    ref.calc = EMT()
    np.testing.assert_allclose(res[2]["forces"], ref.get_forces(), atol=1e-12)
    journal = json.loads((tmp_path / "labels.journal.json").read_text())
    journal["0"]["energy"] = 123.0  # a journalled frame is not recomputed
    (tmp_path / "labels.journal.json").write_text(json.dumps(journal))
    assert label(params, tmp_path, deps)["frames"][0]["energy"] == 123.0


def test_append_labels_once_and_refuses_other_labels(tmp_path: Path) -> None:
    """A re-run finding an iteration's labels in data.h5 skips the append when they are the same
    frames and stops with one error when they are not (the input changed after the append)."""
    from mlpot.data.frames import LabeledFrames
    from mlpot.data.store import HDF5Store, write_hdf5
    from mlpot.errors import ConfigError
    from mlpot.workflows.learn.loop import append_labels, labelled_systems, systems_before

    at = bulk("Cu", "fcc", a=3.61, cubic=True)
    init = LabeledFrames(type_map=["Cu"], atom_types=np.zeros(4, int), positions=at.positions[None],
                         cells=at.cell.array[None], pbc=[True] * 3, energies=[0.0], forces=np.zeros((1, 4, 3)))
    store = tmp_path / "data.h5"
    write_hdf5(store, [init], names=["init.000"])
    images = []
    for k in range(2):
        a = at.copy()
        a.positions += 0.01 * (k + 1)
        images.append(a)
    write(tmp_path / "c.extxyz", images)
    sel = {"candidates_file": str(tmp_path / "c.extxyz"),
           "picked": [{"run": 0, "frame": 3, "step": 30, "max_devi_f": 0.1}, {"run": 0, "frame": 4, "step": 40, "max_devi_f": 0.2}]}
    points = [{"structure": "x", "ensemble": "nvt", "temperature_K": 300.0, "pressure_bar": None}]

    def labels(e0: float) -> list:
        return [{"index": i, "ok": True, "energy": e0 + i, "forces": np.zeros((4, 3)).tolist(), "virial": None}
                for i in range(2)]

    systems, names = labelled_systems(0, 0, sel, labels(-1.0), points, ["Cu"])
    assert names == ["it000.000"] and append_labels(store, 0, systems, names)
    assert not append_labels(store, 0, systems, names)  # the same labels again: nothing written
    with HDF5Store(store) as s:
        assert s.names == ["init.000", "it000.000"] and s["it000.000"].n_frames == 2
        assert json.loads(s["it000.000"].origin)["mlpot_learn"]["md_steps"] == [30, 40]
    assert systems_before(["init.000", "it000.000", "it001.000"], 1) == ["init.000", "it000.000"]
    other, _ = labelled_systems(0, 0, sel, labels(-2.0), points, ["Cu"])
    with pytest.raises(ConfigError, match="other labels of iteration 0"):
        append_labels(store, 0, other, names)


def test_partial_outputs_of_other_params_are_not_continued(tmp_path: Path) -> None:
    """A task folder re-used by a task whose params changed (another hash in task.json) starts again:
    the label journal of the old params is dropped."""
    from mlpot.workflows.learn.tasks import label

    at = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    at.positions += np.random.default_rng(0).normal(0, 0.05, at.positions.shape)
    write(tmp_path / "candidates.extxyz", [at])
    params = {"select": "s", "indices": [0], "calculator": "ase.calculators.emt:EMT", "kwargs": {}, "stress": False}
    deps = {"s": {"candidates_file": str(tmp_path / "candidates.extxyz")}}
    (tmp_path / "task.json").write_text(json.dumps({"hash": "a"}))
    e = label(params, tmp_path, deps)["frames"][0]["energy"]
    journal = json.loads((tmp_path / "labels.journal.json").read_text())
    assert journal["task_hash"] == "a"
    journal["0"]["energy"] = 123.0
    (tmp_path / "labels.journal.json").write_text(json.dumps(journal))
    assert label(params, tmp_path, deps)["frames"][0]["energy"] == 123.0  # same task: continued
    (tmp_path / "task.json").write_text(json.dumps({"hash": "b"}))
    assert label(params, tmp_path, deps)["frames"][0]["energy"] == pytest.approx(e, abs=1e-12)  # other params: redone
