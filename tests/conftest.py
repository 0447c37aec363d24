"""Shared fixtures: paths to the bundled data, float64 by default, few threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"

torch.set_default_dtype(torch.float64)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One torch thread for the whole suite: the tests run many small ops, for which thread start-up and
    contention on a 2-core machine cost more than parallelism gains (measured: up to 10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def water_dir() -> Path:
    return DATA / "water"
