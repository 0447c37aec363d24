"""The MD input is documented key by key (README and ``mlpot md --help-config``), the progress bar
shows T, E and P, and a neighbor overflow during a run says what it usually means."""

from __future__ import annotations

import subprocess
import sys

from mlpot.errors import ModelError
from md_engine.config import MDConfig, ParallelConfig, describe_keys
from md_engine.simulation import _explain

from conftest import ROOT, argon_lj


def _all_keys() -> list[str]:
    keys = [k for k in MDConfig.model_fields if k != "comment"]
    keys += [f"parallel.{k}" for k in ParallelConfig.model_fields if k != "comment"]
    return keys


def test_every_md_key_is_in_the_readme_and_help_config():
    readme = (ROOT / "README.md").read_text()
    out = subprocess.run([sys.executable, "-m", "mlpot", "md", "--help-config"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    described = {k for k, _, _ in describe_keys()}
    for key in _all_keys():
        assert key in described
        assert f"| `{key}` |" in readme, f"README lacks the MD key {key}"
        assert f"| `{key}` |" in out.stdout
    # every key states a meaning, and the potential keys of the built-in potentials are there too
    assert all(text for _, _, text in describe_keys())
    for key in ("potential.lj.epsilon", "potential.lj.cutoff", "potential.model.file"):
        assert f"| `{key}` |" in readme and key in described


def test_md_without_input_is_one_line_error():
    out = subprocess.run([sys.executable, "-m", "mlpot", "md"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--help-config" in out.stderr
    assert "Traceback" not in out.stderr


def test_overflow_during_md_says_exploding():
    exc = ModelError("neighbor overflow: frame 0, atom 3 has 60 neighbors of 'H' (type 1) within rcut=6.0 Å")
    assert "exploding" not in _explain(exc, 0)  # before the run: a sel problem
    msg = _explain(exc, 120)
    assert "exploding" in msg and "time step" in msg and msg.startswith("neighbor overflow")
    assert _explain(ModelError("other failure"), 120) == "other failure"


def test_progress_bar_shows_temperature_energy_pressure():
    from md_engine import Simulation
    from md_engine.integrators import CSVR
    from md_engine.structure import state_from_atoms
    from mlpot.testing import argon_atoms

    state = state_from_atoms(argon_atoms(), temperature=60.0, seed=1, device="cpu")
    sim = Simulation(state, argon_lj(8.5, None, False), CSVR(2.0, 60.0, 100.0, seed=1))
    sim.run(5)
    text = sim._bar_text()
    assert text.startswith("T ") and " K, E " in text and " eV, P " in text and text.endswith("ns/day")
    t = float(text.split()[1])
    assert 0 < t < 1000
