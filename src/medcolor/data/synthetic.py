"""The synthetic X-ray-like set of the demo and the tests: kept importable here; it lives in
:mod:`medcolor.data.datasets.synthetic` (registered as the ``"synthetic"`` dataset)."""

from __future__ import annotations

from medcolor.data.datasets.synthetic import CSV_OPTIONS, DEFAULT_KNOBS, LABELS, SyntheticXrays, make_synthetic_xrays

__all__ = ["CSV_OPTIONS", "DEFAULT_KNOBS", "LABELS", "SyntheticXrays", "make_synthetic_xrays"]
