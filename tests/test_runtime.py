"""mlpot.runtime.tune_malloc: applied on glibc, skipped on request or when the user set glibc's own variables."""

from __future__ import annotations

import platform

import pytest

from mlpot.runtime import tune_malloc


def test_tune_malloc_respects_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPOT_MALLOC_TUNING", "0")
    assert tune_malloc() is False
    monkeypatch.delenv("MLPOT_MALLOC_TUNING")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert tune_malloc() is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tune_malloc_applies_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("MLPOT_MALLOC_TUNING", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(k, raising=False)
    assert tune_malloc() is True
