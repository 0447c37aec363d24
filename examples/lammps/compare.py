"""Compare LAMMPS's step-0 energy, per-atom energies, forces and virial (written by in.lammps with 17 significant
digits) with mlpot.DeepPotCalculator at the same positions, and print the differences.

    python compare.py MODEL.pt OUTDIR [OUTDIR ...] [--type-map O H] [--write-reference REF.npz]

OUTDIR holds step0.dump and step0.json from one `lmp -in in.lammps -var out OUTDIR` run (and log.lammps, whose
last "Loop time" line gives the NVE run's speed). MODEL is the mlpot model that was exported to LAMMPS.
LAMMPS virial (eV) = compute pressure NULL virial (bar) * volume / nktv2p, LAMMPS order xx yy zz xy xz yz.
--write-reference writes LAMMPS's numbers (not mlpot's) for tests/test_lammps_reference.py; with several OUTDIRs,
REF may contain {np} (the run's rank count, from log.lammps), e.g. reference_np{np}.npz.
Exit status 1 when a difference exceeds --tol (relative for energy and virial, eV/Å for forces).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re

import numpy as np


def read_step0(outdir: str | pathlib.Path, type_map: list[str]) -> dict:
    """LAMMPS's step 0: positions (Å), cell (3, 3) Å, symbols, energy and per-atom energies (eV), forces (eV/Å),
    virial (3, 3) eV. Atoms sorted by LAMMPS id."""
    d = pathlib.Path(outdir)
    lines = (d / "step0.dump").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS"))
    cols = lines[start].split()[2:]
    rows = np.array([line.split() for line in lines[start + 1:] if line.strip()], dtype=np.float64)
    c = {name: rows[:, k] for k, name in enumerate(cols)}
    order = np.argsort(c["id"])
    meta = json.loads((d / "step0.json").read_text())
    xlo, xhi, ylo, yhi, zlo, zhi, xy, xz, yz = meta["box"]
    cell = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]])
    pxx, pyy, pzz, pxy, pxz, pyz = meta["pvir"]
    virial = np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]]) * meta["vol"] / meta["nktv2p"]
    types = c["type"][order].astype(np.int64)
    return {
        "positions": np.stack([c["x"], c["y"], c["z"]], axis=1)[order],
        "origin": np.array([xlo, ylo, zlo]),
        "cell": cell,
        "lammps_type": types,
        "symbols": np.array([type_map[t - 1] for t in types]),
        "energy": np.float64(meta["energy"]),
        "atom_energy": c["c_peatom"][order],
        "forces": np.stack([c["fx"], c["fy"], c["fz"]], axis=1)[order],
        "virial": virial,
    }


def mlpot_results(model, ref: dict) -> dict:
    """mlpot.DeepPotCalculator at LAMMPS's positions and cell (CPU)."""
    from ase import Atoms

    from mlpot import DeepPotCalculator

    atoms = Atoms(symbols=list(ref["symbols"]), positions=ref["positions"], cell=ref["cell"], pbc=True)
    atoms.calc = DeepPotCalculator(model, device="cpu")
    e = atoms.get_potential_energy()
    return {"energy": e, "atom_energy": atoms.get_potential_energies(), "forces": atoms.get_forces(),
            "virial": atoms.calc.results["virial"]}


def differences(ref: dict, got: dict) -> dict:
    """|ΔE|, ΔE/|E|, max |ΔF|, max |F|, max |ΔE_i|, max |ΔW|, ‖ΔW‖/‖W‖ (Frobenius)."""
    de = abs(float(got["energy"]) - float(ref["energy"]))
    dw = got["virial"] - ref["virial"]
    return {
        "dE": de, "dE_rel": de / abs(float(ref["energy"])),
        "dF_max": float(np.abs(got["forces"] - ref["forces"]).max()), "F_max": float(np.abs(ref["forces"]).max()),
        "dEi_max": float(np.abs(got["atom_energy"] - ref["atom_energy"]).max()),
        "dW_max": float(np.abs(dw).max()), "dW_rel": float(np.linalg.norm(dw) / np.linalg.norm(ref["virial"])),
    }


def loop_time(outdir: str | pathlib.Path):
    """(seconds, nprocs, nsteps, natoms) of the last 'Loop time' line of OUTDIR/log.lammps, or None."""
    log = pathlib.Path(outdir) / "log.lammps"
    if not log.exists():
        return None
    hits = re.findall(r"Loop time of (\S+) on (\d+) procs for (\d+) steps with (\d+) atoms", log.read_text())
    if not hits:
        return None
    t, p, n, a = hits[-1]
    return float(t), int(p), int(n), int(a)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="the mlpot model (mlpot freeze / import-deepmd) that was exported to LAMMPS")
    ap.add_argument("outdirs", nargs="+", help="folders with step0.dump, step0.json (and log.lammps)")
    ap.add_argument("--type-map", nargs="+", default=["O", "H"], help="element of LAMMPS type 1, 2, ... (O H)")
    ap.add_argument("--write-reference", metavar="REF.npz", help="save LAMMPS's step 0 for the CI test")
    ap.add_argument("--tol", type=float, default=1e-10)
    args = ap.parse_args()
    ok = True
    for outdir in args.outdirs:
        ref = read_step0(outdir, args.type_map)
        d = differences(ref, mlpot_results(args.model, ref))
        lt = loop_time(outdir)
        nprocs = lt[1] if lt else 0
        print(f"{outdir} ({nprocs} MPI rank{'s' if nprocs != 1 else ''}): LAMMPS vs mlpot.DeepPotCalculator at step 0")
        print(f"  energy      E = {float(ref['energy']):.12f} eV   |dE| = {d['dE']:.2e} eV   rel {d['dE_rel']:.2e}")
        print(f"  forces      max |dF| = {d['dF_max']:.2e} eV/A   (max |F| = {d['F_max']:.3g} eV/A)")
        print(f"  atom energy max |dE_i| = {d['dEi_max']:.2e} eV")
        print(f"  virial      max |dW| = {d['dW_max']:.2e} eV   rel (Frobenius) {d['dW_rel']:.2e}")
        if lt:
            t, p, n, a = lt
            print(f"  NVE run     {n} steps in {t:.3f} s: {1e3 * t / n:.2f} ms/step, {1e6 * t / (n * a):.1f} us/atom-step")
        ok &= d["dE_rel"] <= args.tol and d["dF_max"] <= args.tol and d["dW_rel"] <= args.tol
        if args.write_reference:
            path = pathlib.Path(args.write_reference.format(np=nprocs))
            np.savez(path, positions=ref["positions"], cell=ref["cell"], lammps_type=ref["lammps_type"],
                     symbols=ref["symbols"], energy=ref["energy"], atom_energy=ref["atom_energy"],
                     forces=ref["forces"], virial=ref["virial"], nprocs=nprocs)
            print(f"  wrote {path}")
    print("agreement within", args.tol, "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
