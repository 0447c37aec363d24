#!/usr/bin/env bash
# The DeePMD-kit the benchmarks compare against: deepmd-kit 3.2.0 built from source against the torch of
# mlpot's venv (its C++ ops, which compressed models need, must match that torch), into the git-ignored
# folder benchmarks/.dpbuild/env. One command, from the repository root, after `make install`:
#
#     bash benchmarks/setup_deepmd.sh          # ~5-10 min on 2 cores; JOBS=N sets the build parallelism
#
# MLPOT_VENV overrides the venv (default .venv). Re-running skips what is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${MLPOT_VENV:-$ROOT/.venv}"
DEST="$ROOT/benchmarks/.dpbuild"
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_deepmd.sh: no mlpot venv at $VENV (run 'make install' first, or set MLPOT_VENV)" >&2
    exit 2
fi
BASE="$("$VENV/bin/python" -c 'import sys; print(sys._base_executable)')"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PYV="$("$VENV/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"
mkdir -p "$DEST" && cd "$DEST"
[ -x env/bin/python ] || "$BASE" -m venv env
# mlpot's torch (and numpy) seen from the new env: the ops build and run against exactly that torch.
# (A .pth line adds the folder only; the editable-install hooks inside it are not run, so mlpot stays absent.)
echo "$SITE" > "env/lib/$PYV/site-packages/_torch_from_mlpot.pth"
env/bin/pip install -q scikit-build-core setuptools_scm packaging wheel "cmake<4" ninja dependency-groups \
    hatch-fancy-pypi-readme
[ -f src/deepmd_kit-3.2.0.tar.gz ] || \
    env/bin/pip download -q --no-deps --no-build-isolation --no-binary :all: deepmd-kit==3.2.0 -d src
if ! env/bin/python -c "import deepmd" 2>/dev/null; then
    # --no-deps: torch must stay the one of mlpot's venv
    DP_VARIANT=cpu DP_ENABLE_TENSORFLOW=0 DP_ENABLE_PYTORCH=1 CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-2}" \
        PATH="$DEST/env/bin:$PATH" env/bin/pip install -q --no-deps --no-build-isolation src/deepmd_kit-3.2.0.tar.gz
fi
env/bin/pip install -q dargs wcmatch array-api-compat ml_dtypes lmdb einops mendeleev msgpack e3nn scipy
# mpi4py (seen through the .pth) loads its MPI library from mlpot's venv lib/
LD_LIBRARY_PATH="$VENV/lib:${LD_LIBRARY_PATH:-}" env/bin/python -c "
import deepmd, deepmd.pt, torch
torch.ops.deepmd.tabulate_fusion_se_a
print('benchmarks/.dpbuild/env: DeePMD-kit', deepmd.__version__, 'with its ops, torch', torch.__version__)"
