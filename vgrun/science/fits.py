"""The one log-slope fit: how fast a quantity shrinks (or grows) per layer or per time step."""

from __future__ import annotations

import math

import numpy as np


def decay_factor(y, skip_nonfinite: bool = False) -> float:
    """exp(-slope) of the least-squares line through log y[i] against i: y[i] / y[i+1] on average.

    y: [n] positive values. NaN where fewer than two points remain, or where any log y[i]
    is not finite (a zero, an inf, a NaN) unless `skip_nonfinite` drops those points."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logy = np.log(np.asarray(y, np.float64))
    ok = np.isfinite(logy)
    if ok.sum() < 2 or not (skip_nonfinite or ok.all()):
        return math.nan
    return float(np.exp(-np.polyfit(np.arange(len(logy))[ok], logy[ok], 1)[0]))
