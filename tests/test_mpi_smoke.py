"""MPI works in this environment: `mpirun -n 2` (next to sys.executable) runs an mpi4py allreduce."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import MPIRUN


SCRIPT = (
    "from mpi4py import MPI; import numpy as np; c = MPI.COMM_WORLD; "
    "x = np.array([c.rank + 1.0, 10.0 * (c.rank + 1)]); y = np.empty_like(x); "
    "c.Allreduce(x, y, op=MPI.SUM); n = c.size; "
    "assert n == 2, n; assert np.array_equal(y, [n * (n + 1) / 2, 10.0 * n * (n + 1) / 2]), y; "
    "s = c.allreduce(c.rank, op=MPI.MAX); assert s == n - 1; "
    "print(f'rank {c.rank}/{n} ok {y.tolist()}', flush=True)"
)


@pytest.mark.mpi
def test_mpirun_two_ranks_allreduce() -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(MPIRUN), "-n", "2", sys.executable, "-c", SCRIPT],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    # the two ranks share stdout and their lines may interleave without a newline: match, don't split
    found = sorted(re.findall(r"rank \d/\d ok \[[0-9., ]+\]", r.stdout))
    assert found == ["rank 0/2 ok [3.0, 30.0]", "rank 1/2 ok [3.0, 30.0]"], r.stdout
