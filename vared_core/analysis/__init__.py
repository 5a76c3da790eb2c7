"""Analyses of trained video models: feature-map redundancy along time and channels (seed appendix B.1).

Typical use::

    from vared_core.analysis import analyze_redundancy
    report = analyze_redundancy(model, loader, max_clips=500)   # loader batches: {"video": (B, C, T, H, W)}
    print(report.format_table())                                 # Table B.1 per layer and averaged
    report.extremes("time", "cc", k=3)                           # most / least redundant clips (Figure B-1)

and whether a top-1 difference between two models on one test set is more than noise (`compare`).
"""
from __future__ import annotations

from vared_core.analysis.compare import (
    MeanDifference,
    PairedComparison,
    mean_difference,
    paired_comparison,
    variance_explained,
    wilson_interval,
)
from vared_core.analysis.pair_stats import CC_THRESHOLD, DIMS, RMSE_THRESHOLD, num_pairs, pairwise_stats, redundancy_proportion
from vared_core.analysis.redundancy import METRICS, DimRedundancy, LayerRedundancy, RedundancyReport, analyze_redundancy

__all__ = [
    "CC_THRESHOLD",
    "DIMS",
    "METRICS",
    "MeanDifference",
    "PairedComparison",
    "RMSE_THRESHOLD",
    "DimRedundancy",
    "LayerRedundancy",
    "RedundancyReport",
    "analyze_redundancy",
    "mean_difference",
    "num_pairs",
    "paired_comparison",
    "pairwise_stats",
    "redundancy_proportion",
    "variance_explained",
    "wilson_interval",
]
