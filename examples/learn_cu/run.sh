#!/bin/sh
# The learn_cu example end to end (README.md). PHASE=1 also runs the melting-temperature comparison
# (expensive: two mlpot phase campaigns, the EMT one with ASE's pure-Python EMT).
set -e
cd "$(dirname "$0")"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python make_data.py --test                        # init.extxyz (10 EMT frames), fcc108.extxyz, test.extxyz
mlpot learn input.yaml                            # the loop: learn_out/results.json, models/, plots
for k in 0 1 2 3; do                              # force RMSE of each final member on the EMT test set
  mlpot test -m learn_out/models/model.$k.pt -s test.extxyz -n 0 | grep -E "Force +RMSE|Energy RMSE/Natoms"
done
if [ "${PHASE:-0}" = 1 ]; then
  mlpot phase phase_model.yaml                    # T_m of the learned model
  mlpot phase ../phase_cu/emt.yaml                # T_m of EMT itself (same protocol)
fi
