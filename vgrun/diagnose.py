"""The verdict: vanishing | exploding | healthy, with the numbers behind it.

The main number is r = |delta_first| / |delta_last|, the back-propagated gradient at
the first hidden layer over that at the last hidden layer (the product of the depth-1
backward Jacobians), taken as the median over traced steps (robust to a spike). Beside
it, the signs practitioners look for: weights collapsing toward zero, saturated units,
a training loss that stalls (stays near its initial value or the loss of the best
constant prediction). For plain MLPs the measured per-layer factor at
initialization stands next to the mean-field prediction (`vgrun.theory`).
"""

from __future__ import annotations

import math

import numpy as np

from vgrun.traces import TRACE_FIELDS


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _count_nonfinite(x) -> int:
    return int(np.size(x) - np.isfinite(x).sum())


def per_layer_factor(delta_hidden: np.ndarray) -> float:
    """Least-squares |delta_l| / |delta_{l+1}| over hidden layers: exp(-slope of log|delta| vs l)."""
    n = delta_hidden.shape[-1]
    if n < 2:
        return math.nan
    with np.errstate(divide="ignore"):
        y = np.log(delta_hidden)
    if not np.isfinite(y).all():
        return math.nan
    return float(np.exp(-np.polyfit(np.arange(n), y, 1)[0]))


def theory_check(cfg, delta0_hidden: np.ndarray) -> dict:
    """Mean-field prediction next to the measured per-layer factor at step 0."""
    from vgrun.inits import weight_stats

    mean, std = weight_stats(cfg.init, cfg.width, cfg.width)
    why = None
    if cfg.model.name != "mlp":
        why = "residual blocks"
    elif cfg.norm != "none":
        why = f"norm={cfg.norm}"
    elif mean != 0:
        why = "nonzero weight mean"
    elif cfg.depth < 3:
        why = "depth < 3"
    elif getattr(cfg, "pretrain", None) is not None and cfg.pretrain.name != "none":
        why = f"pretrain={cfg.pretrain.name}: step 0 is no longer the initialization"
    if why:
        return {"applies": False, "why": f"mean-field theory not applicable ({why})"}
    from vgrun import theory

    pred = theory.predict(cfg.act, std**2 * cfg.width, cfg.init.sigma_b**2)
    measured = per_layer_factor(delta0_hidden)
    return {"applies": True, **pred, "measured_factor": measured, "measured_over_predicted": measured / pred["factor"]}


def diagnose(cfg, metrics: dict, traces, status: str, baseline: float) -> dict:
    """Summary numbers and verdict from host arrays (metrics [S], traces [T, L+1])."""
    dcfg = cfg.diagnosis
    delta = np.asarray(traces.delta, np.float64)  # [T, L+1]
    hidden = delta[:, : cfg.depth]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = hidden[:, 0] / hidden[:, -1]  # [T]
    ok = np.isfinite(ratio) & (ratio > 0)
    r = float(np.exp(np.median(np.log(ratio[ok])))) if ok.any() else math.nan
    if not ok.any():
        verdict = "exploding" if status == "diverged" else "vanishing"
    elif r < dcfg.vanish_ratio:
        verdict = "vanishing"
    elif r > dcfg.explode_ratio:
        verdict = "exploding"
    else:
        verdict = "healthy"

    loss = np.asarray(metrics["loss"], np.float64)
    tail = max(1, len(loss) // 20)  # last 5% of steps
    loss0, loss_end = float(loss[0]), float(np.mean(loss[-tail:]))
    weight = np.asarray(traces.weight, np.float64)
    w_change = weight[-1, : cfg.depth] / weight[0, : cfg.depth]
    sat = np.asarray(traces.saturated, np.float64)[-max(1, len(delta) // 10) :, : cfg.depth].mean(0)
    saturated_layers = [int(i) for i in np.flatnonzero(sat > dcfg.sat_frac)]
    signs = {
        "weights_collapsing": bool(np.nanmin(w_change) < 0.5) if np.isfinite(w_change).any() else False,
        "min_weight_norm_change": _finite(np.nanmin(w_change)) if np.isfinite(w_change).any() else None,
        "saturated_layers": saturated_layers,
        "max_saturated_share": _finite(np.nanmax(sat)) if np.isfinite(sat).any() else None,
        # stalled: still near the initial loss or the best constant prediction's loss
        "loss_stalled": bool(not np.isfinite(loss_end) or loss_end > dcfg.stall_frac * min(loss0, baseline)),
        "loss_baseline": _finite(baseline),
        "loss_initial": _finite(loss0),
        "loss_final": _finite(loss_end),
    }
    # count non-finite values where a value was measured (not the NaN placeholders for
    # output-layer activation statistics, untraced steps' grad_norm, unevaluated test steps)
    nonfinite = {f: _count_nonfinite(getattr(traces, f)[:, : cfg.depth if f.startswith(("act", "sat")) else None])
                 for f in TRACE_FIELDS}
    nonfinite["loss"] = _count_nonfinite(metrics["loss"])
    nonfinite["grad_norm"] = _count_nonfinite(metrics["grad_norm"][:: cfg.trace_every])
    return {
        "verdict": verdict,
        "ratio_first_last": _finite(r),
        "ratio_first_last_init": _finite(ratio[0]),
        "ratio_first_last_final": _finite(ratio[-1]),
        "per_layer_factor_init": _finite(per_layer_factor(hidden[0])),
        "thresholds": {"vanish_ratio": dcfg.vanish_ratio, "explode_ratio": dcfg.explode_ratio},
        "signs": signs,
        "nonfinite": nonfinite,
        "theory": theory_check(cfg, hidden[0]),
    }


def explain(d: dict) -> str:
    """One sentence with the numbers behind the verdict."""
    r = d["ratio_first_last"]
    th = d["thresholds"]
    rs = f"{r:.2e}" if r is not None else "n/a (no finite trace)"
    why = {
        "vanishing": f"below {th['vanish_ratio']:.0e}",
        "exploding": f"above {th['explode_ratio']:.0e}",
        "healthy": f"within [{th['vanish_ratio']:.0e}, {th['explode_ratio']:.0e}]",
    }[d["verdict"]]
    return f"|delta_first| / |delta_last| = {rs} (median over traced steps), {why}"


def clipping(cfg, metrics: dict) -> dict | None:
    """How often global-norm clipping fired, and the norm before clipping (every step)."""
    threshold = cfg.optimizer.clip_norm
    if threshold is None:
        return None
    norm = np.asarray(metrics["grad_norm"], np.float64)
    return {
        "threshold": threshold,
        "fired_share": float(np.mean(norm > threshold)),
        "median_norm": _finite(np.nanmedian(norm)),
        "max_norm": _finite(np.nanmax(norm)),
    }
