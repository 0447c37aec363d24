"""examples/phonons.py: phonopy's force constants through mlpot.DeepPotCalculator equal central finite
differences of the calculator's forces (a small random se_e2_a on fcc Cu; skipped without phonopy)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("phonopy")
pytest.importorskip("ase")

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("phonons_example", ROOT / "examples" / "phonons.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_phonopy_force_constants_equal_finite_differences():
    from ase.build import bulk

    import mlpot
    from mlpot.testing import tiny_model

    ex = _example()
    model = tiny_model(type_map=("Cu",), sel=(24,), rcut=3.2, rcut_smth=2.0, seed=3)
    calc = mlpot.DeepPotCalculator(model)
    unit = bulk("Cu", "fcc", a=3.6, cubic=True)
    ph = ex.phonopy_run(unit, calc, supercell=(2, 2, 2))
    err, scale = ex.check_force_constants(ph, calc)
    assert scale > 1e-3, "the model should give non-zero force constants"
    assert err <= 1e-8 * max(scale, 1.0), (err, scale)
    # acoustic sum rule of the full matrix (translation invariance of the model's forces)
    fc = np.asarray(ph.force_constants)
    assert np.abs(fc.sum(axis=1)).max() < 1e-8 * max(scale, 1.0)
    # the band path runs and gives three acoustic branches at Γ near zero
    _, freq, ticks, labels = ex.bands(ph, npoints=5)
    assert labels[0] == "Γ" and len(ticks) == len(labels)
    assert np.abs(freq[0]).max() < 1e-3
