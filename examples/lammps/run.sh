#!/usr/bin/env bash
# An mlpot model in LAMMPS, end to end (CPU; README "Running in LAMMPS"):
#   1. builds DeePMD-kit 3.2.0 + LAMMPS (+ mlpot) in its own venv, examples/lammps/.dpenv (git-ignored; ~6 GB,
#      2-4 min; done once, skipped when it exists)
#   2. trains a tiny float64 se_e2_a model (train.json, 50 steps) unless MODEL=path/to/model.pt is given
#   3. mlpot export-deepmd -> dp convert-backend -> lmp on 1 and 2 MPI ranks (in.lammps: step 0 + NVE_STEPS NVE steps)
#   4. compare.py: LAMMPS's step-0 energy / per-atom energies / forces / virial vs mlpot.DeepPotCalculator
# Usage:  examples/lammps/run.sh                      # everything into examples/lammps/out/
#         MODEL=demo_out/model.pt OUT=/tmp/lmp NVE_STEPS=200 examples/lammps/run.sh
# Extra compare.py arguments are passed through, e.g. --write-reference 'tests/data/lammps_water/reference_np{np}.npz'
set -euo pipefail
CALLER=$PWD                               # compare.py's paths (e.g. --write-reference) are relative to it
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DPENV=${DPENV:-$HERE/.dpenv}
OUT=$(mkdir -p "${OUT:-$HERE/out}" && cd "${OUT:-$HERE/out}" && pwd)
NVE_STEPS=${NVE_STEPS:-50}
if [ -n "${MODEL:-}" ]; then MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL"); fi
# one thread per rank: a small model on a small machine is fastest so, and 1 vs 2 ranks compare fairly
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export DP_INTRA_OP_PARALLELISM_THREADS=${DP_INTRA_OP_PARALLELISM_THREADS:-$OMP_NUM_THREADS}
export DP_INTER_OP_PARALLELISM_THREADS=${DP_INTER_OP_PARALLELISM_THREADS:-1}
step() { printf '\n==> %s\n' "$*"; }

if [ ! -x "$DPENV/bin/lmp" ] || [ ! -x "$DPENV/bin/mlpot" ]; then
  step "1. DeePMD-kit 3.2.0 + LAMMPS + mlpot into $DPENV (once; ~6 GB, 2-4 min)"
  python3 -m venv "$DPENV"
  # deepmd-kit 3.2.0 pins torch==2.11.0 (a CUDA build; it runs on CPU). Its LAMMPS plugin is a CUDA-12 build that
  # loads libcudart.so.12 lazily: without nvidia-cuda-runtime-cu12, lmp crashes on a machine without a GPU.
  "$DPENV/bin/pip" install "deepmd-kit[torch,lmp]==3.2.0" nvidia-cuda-runtime-cu12
  "$DPENV/bin/pip" install "$REPO"        # mlpot runs on torch 2.11 too (export and compare use it)
else
  step "1. using the existing environment $DPENV"
fi
export PATH="$DPENV/bin:$PATH"            # dp, lmp, mpirun (from the mpich wheel), mlpot, python
cd "$OUT"
python -c "import torch, deepmd, lammps; print('torch', torch.__version__, '| deepmd-kit', deepmd.__version__, '| lammps', lammps.__version__)" 2>/dev/null || true

if [ -n "${MODEL:-}" ]; then
  step "2. using the given mlpot model $MODEL"
else
  step "2. train a tiny float64 se_e2_a model (train.json, 50 steps)"
  mlpot train "$HERE/train.json" -o "$OUT/train" --overwrite -q
  mlpot freeze -c "$OUT/train/model.ckpt.pt" -o "$OUT/model.pt"
  MODEL=$OUT/model.pt
fi

step "3. mlpot export-deepmd -> dp convert-backend -> lmp (1 and 2 MPI ranks)"
mlpot export-deepmd "$MODEL" -o "$OUT/model.dp"
dp convert-backend "$OUT/model.dp" "$OUT/model.pth"
for np in 1 2; do
  mkdir -p "$OUT/np$np"
  (cd "$OUT/np$np" && mpirun -n $np lmp -in "$HERE/in.lammps" -var model "$OUT/model.pth" \
     -var data "$REPO/data/water/water.lmp" -var out . -var nsteps "$NVE_STEPS" > lmp.out 2>&1) \
    || { tail -30 "$OUT/np$np/lmp.out"; exit 1; }
  awk '/Step +PotEng +KinEng/{on=1} /^Loop time/{if(on)print; on=0} on' "$OUT/np$np/log.lammps" | sed "s/^/  [np$np] /"
done

step "4. LAMMPS step 0 vs mlpot.DeepPotCalculator"
cd "$CALLER"
python "$HERE/compare.py" "$MODEL" "$OUT/np1" "$OUT/np2" "$@"
