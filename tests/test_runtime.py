"""mlpot.runtime.tune_malloc: applied on glibc, skipped on request or when the user set glibc's own variables."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from mlpot.runtime import tune_malloc

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def test_tune_malloc_respects_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mlpot.runtime._applied", False)
    monkeypatch.setenv("MLPOT_MALLOC_TUNING", "0")
    assert tune_malloc() is False
    monkeypatch.delenv("MLPOT_MALLOC_TUNING")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert tune_malloc() is False


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_tune_malloc_applies_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("MLPOT_MALLOC_TUNING", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(k, raising=False)
    assert tune_malloc() is True


def _tuned_after_import(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLPOT_MALLOC_TUNING", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")}
    env.update(env_extra)
    code = "import mlpot.runtime as r; a = r.malloc_tuned(); import mlpot.model; print(a, r.malloc_tuned())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_library_use_is_tuned_on_import_of_the_model_module() -> None:
    """Library evaluation (no CLI) gets the thresholds when mlpot.model is first imported; the opt-out holds."""
    assert _tuned_after_import({}) == ["False", "True"]
    assert _tuned_after_import({"MLPOT_MALLOC_TUNING": "0"}) == ["False", "False"]
