"""Phonons of fcc Cu with phonopy through ``mlpot.DeepPotCalculator``, checked against finite differences.

    python examples/phonons.py [--out demo_out/phonons] [--steps 800] [--model MODEL.pt]

The reference here is **ASE's EMT potential, not DFT**: the script labels rattled and strained fcc Cu
cells (32 atoms) with EMT, trains a tiny se_e2_a model on them with ``mlpot train`` (a minute or two on
a CPU; ``--model`` skips the training and uses a frozen model of yours, type_map containing Cu), then

1. phonopy (finite displacements of 0.01 Å, ± each, in a 3×3×3 conventional supercell, 108 atoms) with
   the mlpot model as the force calculator → force constants → band structure along Γ–X–W–K–Γ–L,
   plotted in THz beside EMT's own bands (the same phonopy run with EMT as the calculator);
2. an independent check: the force constants Φ_{0α,jβ} = −∂F_jβ/∂u_0α by central differences of the
   calculator's forces, displacing two atoms of the supercell (one per inequivalent position of the
   conventional cell is not needed for fcc: one orbit; the second atom tests phonopy's symmetrisation),
   compared with phonopy's full force-constant matrix. They agree to ~1e-6 eV/Å² (both are central
   differences with the same step; what remains is rounding and phonopy's symmetrisation).

Needs phonopy (``pip install -e ".[phonons]"``) and matplotlib. Writes OUT/phonons.png (bands),
OUT/force_constants_check.txt, and the EMT data / training run under OUT/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

A_CU = 3.59  # Å, close to EMT's own fcc Cu lattice constant (the script relaxes it below)

# fcc primitive-cell coordinates (reciprocal basis of the primitive cell), the standard path
FCC_POINTS = {
    "Γ": [0.0, 0.0, 0.0],
    "X": [0.5, 0.0, 0.5],
    "W": [0.5, 0.25, 0.75],
    "K": [0.375, 0.375, 0.75],
    "L": [0.5, 0.5, 0.5],
}
FCC_PATH = [["Γ", "X", "W", "K", "Γ", "L"]]
FCC_PRIMITIVE = [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]  # conventional → primitive


# ----------------------------------------------------------------------------------------- phonopy
def to_phonopy(atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:],
                        scaled_positions=atoms.get_scaled_positions())


def to_ase(ph_atoms):
    from ase import Atoms

    return Atoms(symbols=ph_atoms.symbols, cell=ph_atoms.cell, scaled_positions=ph_atoms.scaled_positions, pbc=True)


def phonopy_run(unitcell, calc, supercell=(3, 3, 3), distance=0.01, primitive_matrix=FCC_PRIMITIVE):
    """A :class:`phonopy.Phonopy` with its full force constants computed from ``calc`` (an ASE calculator)."""
    from phonopy import Phonopy

    ph = Phonopy(to_phonopy(unitcell), supercell_matrix=np.diag(supercell), primitive_matrix=primitive_matrix)
    ph.generate_displacements(distance=distance, is_plusminus=True)
    forces = []
    for sc in ph.supercells_with_displacements:
        atoms = to_ase(sc)
        atoms.calc = calc
        forces.append(atoms.get_forces().copy())
    ph.forces = np.array(forces)
    ph.produce_force_constants(calculate_full_force_constants=True, show_drift=False)
    return ph


def fd_force_constants(supercell_atoms, calc, atoms_to_displace, h=0.01):
    """Φ[i, j, α, β] = −(F_jβ(u_iα=+h) − F_jβ(u_iα=−h)) / 2h for each i in ``atoms_to_displace``
    (eV/Å²), straight from the calculator's forces; returns an array (len(atoms_to_displace), N, 3, 3)."""
    n = len(supercell_atoms)
    out = np.zeros((len(atoms_to_displace), n, 3, 3))
    for k, i in enumerate(atoms_to_displace):
        for alpha in range(3):
            f = []
            for sign in (1.0, -1.0):
                atoms = supercell_atoms.copy()
                pos = atoms.get_positions()
                pos[i, alpha] += sign * h
                atoms.set_positions(pos)
                atoms.calc = calc
                f.append(atoms.get_forces().copy())
            out[k, :, alpha, :] = -(f[0] - f[1]) / (2 * h)
    return out


def check_force_constants(ph, calc, atoms_to_displace=(0, -1), h=0.01):
    """Max |Φ_phonopy − Φ_fd| and max |Φ| over the rows of ``atoms_to_displace`` (eV/Å²)."""
    sc = to_ase(ph.supercell)
    idx = [i % len(sc) for i in atoms_to_displace]
    fd = fd_force_constants(sc, calc, idx, h=h)
    fc = np.asarray(ph.force_constants)[idx]
    return float(np.abs(fc - fd).max()), float(np.abs(fd).max())


def bands(ph, npoints=51):
    """(distances, frequencies THz, label positions, labels) along the fcc path."""
    from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

    paths = [[FCC_POINTS[p] for p in seg] for seg in FCC_PATH]
    labels = [p for seg in FCC_PATH for p in seg]
    qpoints, connections = get_band_qpoints_and_path_connections(paths, npoints=npoints)
    ph.run_band_structure(qpoints, path_connections=connections, labels=labels)
    bs = ph.band_structure
    dist = np.concatenate(bs.distances)
    freq = np.concatenate(bs.frequencies)  # THz (phonopy's default units for eV and Å)
    ticks = [seg[0] for seg in bs.distances] + [bs.distances[-1][-1]]
    return dist, freq, ticks, labels


# ---------------------------------------------------------------------------------- EMT training data
def emt_frames(n_frames=60, seed=0, a=A_CU):
    """Rattled (σ = 0.01–0.05 Å) and, every third frame, isotropically strained (±1 %) 2×2×2 conventional
    fcc Cu cells (32 atoms), labelled with EMT."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 2, 2))
        if k % 3 == 0:
            atoms.set_cell(atoms.cell[:] * (1.0 + rng.uniform(-0.01, 0.01)), scale_atoms=True)
        atoms.positions += rng.normal(0.0, rng.uniform(0.01, 0.05), atoms.positions.shape)
        atoms.calc = EMT()
        e = atoms.get_potential_energy()
        f = atoms.get_forces()
        virial = -atoms.get_stress(voigt=False) * atoms.get_volume()
        frames.append((atoms.positions.copy(), atoms.cell[:].copy(), e, f.copy(), virial))
    return frames


def write_deepmd(frames, path: Path):
    """DeePMD npy system (one type, Cu)."""
    path.mkdir(parents=True, exist_ok=True)
    n = len(frames[0][0])
    (path / "type.raw").write_text("0\n" * n)
    (path / "type_map.raw").write_text("Cu\n")
    s = path / "set.000"
    s.mkdir(exist_ok=True)
    np.save(s / "coord.npy", np.array([fr[0].reshape(-1) for fr in frames]))
    np.save(s / "box.npy", np.array([fr[1].reshape(-1) for fr in frames]))
    np.save(s / "energy.npy", np.array([fr[2] for fr in frames]))
    np.save(s / "force.npy", np.array([fr[3].reshape(-1) for fr in frames]))
    np.save(s / "virial.npy", np.array([fr[4].reshape(-1) for fr in frames]))


def train_input(steps: int) -> dict:
    return {
        "model": {
            "type_map": ["Cu"],
            "descriptor": {"type": "se_e2_a", "sel": [96], "rcut": 6.0, "rcut_smth": 2.0,
                           "neuron": [8, 16, 32], "axis_neuron": 4, "resnet_dt": False, "seed": 1},
            "fitting_net": {"neuron": [32, 32, 32], "resnet_dt": True, "seed": 1},
        },
        "learning_rate": {"type": "exp", "start_lr": 5e-3, "stop_lr": 1e-5, "decay_steps": max(1, steps // 20)},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1,
                 "start_pref_v": 0.02, "limit_pref_v": 1},
        "training": {
            "training_data": {"systems": ["emt_cu/train"], "batch_size": 1},
            "validation_data": {"systems": ["emt_cu/valid"], "batch_size": 1, "numb_btch": 4},
            "numb_steps": steps, "seed": 1, "disp_freq": max(1, steps // 10), "save_freq": steps, "device": "cpu",
        },
    }


def train_model(out: Path, steps: int) -> Path:
    """EMT frames → DeePMD npy → ``mlpot train`` (a subprocess, as a user would run it) → OUT/cu_emt.pt."""
    frames = emt_frames(72)
    write_deepmd(frames[:60], out / "emt_cu" / "train")
    write_deepmd(frames[60:], out / "emt_cu" / "valid")
    (out / "cu_se_e2_a.json").write_text(json.dumps(train_input(steps), indent=2))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, "-m", "mlpot", "train", str(out / "cu_se_e2_a.json"), "-o", str(out / "train"),
           "--overwrite", "-q"]
    print("training a tiny se_e2_a on EMT Cu:", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, env=env)
    model = out / "cu_emt.pt"
    subprocess.run([sys.executable, "-m", "mlpot", "freeze", "-c", str(out / "train" / "model.ckpt.pt"), "-o", str(model)],
                   check=True, env=env)
    subprocess.run([sys.executable, "-m", "mlpot", "test", "-m", str(model), "-s", str(out / "emt_cu" / "valid")],
                   check=True, env=env)
    return model


def emt_lattice_constant() -> float:
    """EMT's equilibrium fcc Cu lattice constant (Å), by a parabola through E(a)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    a = np.linspace(3.55, 3.65, 11)
    e = []
    for x in a:
        at = bulk("Cu", "fcc", a=x, cubic=True)
        at.calc = EMT()
        e.append(at.get_potential_energy())
    c = np.polyfit(a, e, 2)
    return float(-c[1] / (2 * c[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out/phonons", help="output folder")
    parser.add_argument("--model", default=None, help="a frozen mlpot model with Cu in its type_map (skips training)")
    parser.add_argument("--steps", type=int, default=800, help="training steps of the tiny EMT model")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        import phonopy  # noqa: F401
    except ImportError:
        print("phonons.py needs phonopy: pip install phonopy  (or pip install -e '.[phonons]')", file=sys.stderr)
        return 1
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.build import bulk
    from ase.calculators.emt import EMT

    import mlpot

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else train_model(out, args.steps)

    a = emt_lattice_constant()
    print(f"EMT fcc Cu lattice constant: {a:.4f} Å")
    unit = bulk("Cu", "fcc", a=a, cubic=True)
    calc = mlpot.DeepPotCalculator(str(model), device=args.device)

    ph_ml = phonopy_run(unit, calc)
    ph_emt = phonopy_run(unit, EMT())
    err, scale = check_force_constants(ph_ml, calc)
    err_emt, scale_emt = check_force_constants(ph_emt, EMT())
    report = (
        f"force constants, phonopy vs central finite differences of the calculator (h = 0.01 Å, supercell atoms 0 and -1):\n"
        f"  mlpot model: max |dPhi| = {err:.3e} eV/Å^2 (max |Phi| = {scale:.3f})\n"
        f"  EMT:         max |dPhi| = {err_emt:.3e} eV/Å^2 (max |Phi| = {scale_emt:.3f})\n"
    )
    print(report, end="")
    (out / "force_constants_check.txt").write_text(report)

    d_ml, f_ml, ticks, labels = bands(ph_ml)
    d_emt, f_emt, _, _ = bands(ph_emt)
    fmax = max(f_ml.max(), f_emt.max())
    print(f"highest frequency: mlpot {f_ml.max():.3f} THz, EMT {f_emt.max():.3f} THz; "
          f"at X: mlpot {np.sort(f_ml[50])} THz, EMT {np.sort(f_emt[50])} THz")

    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    ax.plot(d_emt, f_emt, color="0.55", lw=2.2, ls="--")
    ax.plot(d_ml, f_ml, color="C0", lw=1.3)
    ax.plot([], [], color="0.55", lw=2.2, ls="--", label="EMT (reference)")
    ax.plot([], [], color="C0", lw=1.3, label=f"mlpot se_e2_a ({model.name})")
    for t in ticks:
        ax.axvline(t, color="0.85", lw=0.8, zorder=0)
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.set_xticks(ticks)
    ax.set_xticklabels([("Γ" if lab == "Γ" else lab) for lab in labels])
    ax.set_xlim(ticks[0], ticks[-1])
    ax.set_ylim(min(0.0, f_ml.min() - 0.1), 1.15 * fmax)
    ax.set_xlabel("wave vector (fcc path)")
    ax.set_ylabel("frequency (THz)")
    ax.set_title(f"fcc Cu phonons, phonopy 3×3×3 supercell, a = {a:.3f} Å")
    ax.legend(loc="upper left", frameon=False, ncol=2)
    png = out / "phonons.png"
    fig.savefig(png, dpi=130)
    print(f"band structure: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
