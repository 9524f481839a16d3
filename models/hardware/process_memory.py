"""What this process really holds, next to what the load plan estimated.

``stagewise ask --json`` and ``stagewise doctor`` print both (:func:`memory_report`), so a
user, a bug report and ``bench/real_size.py`` can compare the estimate
(:func:`~stagewise.models.hardware.need.estimate_need`) with the measured peak.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stagewise.models.hardware.need import Need

__all__ = ["memory_report", "peak_rss_bytes"]


def peak_rss_bytes() -> int | None:
    """The most resident memory this process has held so far, in bytes (its high-water
    mark: weights read from a mapped file count once touched); None where unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes


def memory_report(need: Need | None) -> dict[str, int | None]:
    """``{"estimated_bytes": …, "peak_rss_bytes": …}``: the load plan's estimate of the
    process's resident peak (``LoadPlan.fit.need.peak``; None for a model another program
    serves) and the measured peak."""
    return {"estimated_bytes": need.peak if need is not None else None,
            "peak_rss_bytes": peak_rss_bytes()}
