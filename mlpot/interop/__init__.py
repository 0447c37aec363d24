"""Interoperability with other Deep-Potential codes (DeePMD-kit: :mod:`mlpot.interop.deepmd`)."""

from __future__ import annotations

__all__ = ["deepmd"]
