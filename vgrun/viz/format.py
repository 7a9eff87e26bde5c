"""The one number formatter of the tables, panels and pages."""

from __future__ import annotations

import math
import numbers


def fmt(x, spec: str = ".4g", missing: str = "-") -> str:
    """x as text: floats by `spec` (inf and nan spelled out), ints and words as they are,
    lists bracketed, None as `missing`."""
    if x is None:
        return missing
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt(v, spec, missing) for v in x) + "]"
    if isinstance(x, bool) or isinstance(x, numbers.Integral) or not isinstance(x, numbers.Real):
        return str(x)
    x = float(x)
    return format(x, spec) if math.isfinite(x) else str(x)


def percent(x, missing: str = "n/a") -> str:
    """A share as a percentage with one decimal; None or not finite: `missing`."""
    return missing if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"
