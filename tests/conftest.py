"""Shared fixtures: paths to the bundled data, float64 by default, few threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"

torch.set_default_dtype(torch.float64)


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def water_dir() -> Path:
    return DATA / "water"
