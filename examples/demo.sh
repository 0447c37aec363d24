#!/usr/bin/env bash
# The main job, end to end on the bundled DFT water (CPU, a few minutes on 2 cores):
#   DFT npy -> HDF5 dataset -> neighbor statistics -> train se_e2_a -> freeze -> test (RMSEs, parity plot)
#   -> learning curve -> ASE Langevin MD with the calculator -> compress the shipped model
#   (data/models/water_se_e2_a.pt, trained longer; the quick model is not stable in MD) -> md_engine NVT
#   MD with it for 10 ps (MD_STEPS=2000: 1 ps) -> model deviation quick vs shipped model on that trajectory.
# Everything lands in demo_out/ (override with OUT=...).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-demo_out}
# Small models and batch 1: one thread per process is faster than contending threads on small CPUs.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
step() { printf '\n==> %s\n' "$*"; }

step "1. Convert the bundled DFT water (DeePMD npy, 4 systems) into one HDF5 dataset"
mlpot convert data/water/data_0 data/water/data_1 data/water/data_2 data/water/data_3 -o "$OUT/water.h5"

step "2. Neighbor statistics within 6 Å (sets the descriptor's sel)"
mlpot neighbor-stat -s data/water/data_0 --rcut 6.0

step "3. Train a small se_e2_a model on data_0-2 (validation: data_3)"
mlpot train examples/water_se_e2_a.json -o "$OUT/train" --overwrite   # a rerun of the demo replaces its run

step "4. Freeze the final checkpoint into one model file"
mlpot freeze -c "$OUT/train/model.ckpt.pt" -o "$OUT/model.pt"

step "5. Test on the validation system data_3 (dp test wording), parity plot"
mlpot test -m "$OUT/model.pt" -s data/water/data_3 --detail-file "$OUT/test/detail" --plot "$OUT/parity.png"

step "6. Learning curve"
mlpot plot "$OUT/train/lcurve.out" -o "$OUT/lcurve.png"

step "7. ASE Langevin MD (300 K, 0.5 fs) of the 192-atom water box through mlpot.DeepPotCalculator"
python examples/ase_md_water.py --model "$OUT/model.pt" --steps 100

step "8. Compress the shipped model (tabulated embedding nets; same numbers to ~1e-12, faster MD)"
# the shipped model predates the recorded minimum neighbor distance: -s gives its training data
mlpot compress data/models/water_se_e2_a.pt -o demo_out/water_se_e2_a_compressed.pt \
    -s data/water/data_0 data/water/data_1 data/water/data_2

MD_STEPS=${MD_STEPS:-20000}   # 10 ps of 0.5 fs; make demo QUICK=1 (MD_STEPS=2000) for 1 ps
step "9. md_engine NVT MD (CSVR, 300 K) of the same box for $MD_STEPS steps of 0.5 fs with the shipped model"
# The quick model of step 3 trains for 1,500 steps only and is not stable in MD (it heats up and two
# atoms collide near step 1,200); the shipped model was trained longer: data/models/README.md.
MD_OUT=demo_out/md_10ps   # the output_dir of examples/md_water_10ps.yaml (../demo_out/md_10ps from examples/; not moved by OUT=...)
rm -rf "$MD_OUT"          # a rerun of the demo replaces its MD run
mlpot md examples/md_water_10ps.yaml --steps "$MD_STEPS"

step "10. Model deviation between the quick model and the shipped model on that trajectory (a reliability hint)"
mlpot model-devi -m "$OUT/model.pt" data/models/water_se_e2_a.pt -s "$MD_OUT/traj.h5" -o "$OUT/model_devi.out" -q
awk '!/^#/ && NF >= 7 { n++; s += $5; if ($5 > m) m = $5 }
     END { if (n) printf "max_devi_f over %d frames: mean %.3f eV/A, largest %.3f eV/A (DP-GEN trusts < ~0.10-0.15 eV/A)\n", n, s / n, m }' \
    "$OUT/model_devi.out"
echo "(a large deviation says the quick model disagrees with the shipped one on these structures: it is not yet converged)"

step "Done. Outputs:"
ls -1 "$OUT"
echo "Pictures: parity plot $OUT/parity.png, learning curve $OUT/lcurve.png (the shipped model's: data/models/parity.png, data/models/lcurve.png)"
echo "MD: thermo log $MD_OUT/thermo.csv, trajectory $MD_OUT/traj.h5 (+ traj.xyz, extxyz, for OVITO/VMD); model deviation: $OUT/model_devi.out"
