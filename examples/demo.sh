#!/usr/bin/env bash
# The main job, end to end on the bundled DFT water (CPU, a few minutes on 2 cores):
#   DFT npy -> HDF5 dataset -> neighbor statistics -> train se_e2_a -> freeze -> test (RMSEs, parity plot)
#   -> learning curve -> ASE Langevin MD with the calculator -> md_engine NVT MD.
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

step "8. md_engine NVT MD of the same box with the frozen model"
if [ "$OUT" = demo_out ]; then
  mlpot md examples/md_water_nvt.yaml   # its paths are relative to examples/: ../demo_out/model.pt
else  # the example names ../demo_out/: a copy next to the outputs, its paths relative to $OUT
  sed -e "s|\.\./data/|$PWD/data/|" -e "s|\.\./demo_out/|./|" examples/md_water_nvt.yaml > "$OUT/md_water_nvt.yaml"
  mlpot md "$OUT/md_water_nvt.yaml"
fi

step "Done. Outputs:"
ls -1 "$OUT"
echo "parity plot: $OUT/parity.png   learning curve: $OUT/lcurve.png   MD: $OUT/md/"
