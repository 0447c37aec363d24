"""Units and physical constants. mlpot works in eV, Å, fs (MD step), ps (output), amu, K, bar.

Values are CODATA 2018, as used by ASE (``ase.units``); written out here so that the kernels do not
import ASE.
"""

from __future__ import annotations

#: Boltzmann constant, eV/K.
KB_EV_PER_K: float = 8.617333262e-5
#: 1 eV/Å³ in bar.
EV_PER_A3_TO_BAR: float = 1.602176634e6
#: 1 bar in eV/Å³.
BAR_TO_EV_PER_A3: float = 1.0 / EV_PER_A3_TO_BAR
#: amu·Å²/fs² in eV: kinetic energy ½ m v² with m in amu and v in Å/fs is in these units.
AMU_A2_PER_FS2_TO_EV: float = 1.66053906660e-27 * 1e-20 / 1e-30 / 1.602176634e-19
#: acceleration from force: a [Å/fs²] = F [eV/Å] / m [amu] * FORCE_TO_ACC.
FORCE_TO_ACC: float = 1.0 / AMU_A2_PER_FS2_TO_EV
#: 1 kBar in eV/Å³ (1 kBar = 0.1 GPa = 1000 bar); VASP prints stresses in kBar.
KBAR_TO_EV_PER_A3: float = 1e3 * BAR_TO_EV_PER_A3
