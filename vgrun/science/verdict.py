"""The verdict: vanishing | exploding | healthy, with the numbers behind it.

The main number is r = |delta_first| / |delta_last|, the back-propagated gradient at
the first hidden layer over that at the last hidden layer (the product of the depth-1
backward Jacobians), taken as the median over traced steps (robust to a spike); for a
recurrent network, at the first time step over the last (`diagnose_time`). Beside
it, the signs practitioners look for: weights collapsing toward zero, saturated units,
a training loss that stalls (stays near its initial value or the loss of the best
constant prediction). For plain MLPs the measured per-layer factor at
initialization stands next to the mean-field prediction (`vgrun.science.theory`).
"""

from __future__ import annotations

import math

import numpy as np

from vgrun.probes.layers import TRACE_FIELDS
from vgrun.probes.time import TimeTrace
from vgrun.science.fits import decay_factor


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _count_nonfinite(x) -> int:
    return int(np.size(x) - np.isfinite(x).sum())


def per_layer_factor(delta_hidden: np.ndarray) -> float:
    """Least-squares |delta_l| / |delta_{l+1}| over hidden layers [L]: NaN if any is 0 or not finite."""
    return decay_factor(delta_hidden)


def verdict(ratio: np.ndarray, status: str, dcfg) -> tuple[float, str]:
    """(r, verdict) from first/last gradient ratios [S] (one per traced step), for layers and time alike:
    r is the geometric median of the finite positive ratios; none finite: exploding if the run
    diverged, else vanishing (the gradient underflowed to 0)."""
    ok = np.isfinite(ratio) & (ratio > 0)
    r = float(np.exp(np.median(np.log(ratio[ok])))) if ok.any() else math.nan
    if not ok.any():
        return r, "exploding" if status == "diverged" else "vanishing"
    if r < dcfg.vanish_ratio:
        return r, "vanishing"
    if r > dcfg.explode_ratio:
        return r, "exploding"
    return r, "healthy"


def theory_check(cfg, delta0_hidden: np.ndarray) -> dict:
    """Mean-field prediction next to the measured per-layer factor at step 0."""
    from vgrun.nn.inits import weight_stats

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
    from vgrun.science import theory

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
    r, word = verdict(ratio, status, dcfg)

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
        "verdict": word,
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


# --- through time ------------------------------------------------------------------------


def decay_per_step(delta_t: np.ndarray) -> float:
    """Least-squares |delta_t| / |delta_{t+1}| [T] (non-finite points dropped)."""
    return decay_factor(delta_t, skip_nonfinite=True)


def effective_memory(delta_t: np.ndarray, ratio: float) -> int:
    """Steps back from the end over which |delta_t| stays above `ratio` * |delta_{T-1}|."""
    rel = np.asarray(delta_t, np.float64) / float(delta_t[-1])
    below = np.flatnonzero(~(rel >= ratio))  # NaN counts as lost
    return len(rel) - 1 - int(below.max()) - 1 if below.size else len(rel) - 1


def diagnose_time(cfg, traces: TimeTrace, status: str) -> dict:
    """Verdict from the top layer's |delta_0| / |delta_{T-1}| (median over traced steps)."""
    dcfg = cfg.diagnosis
    delta = np.asarray(traces.delta, np.float64)[:, -1, :]  # [S, T], top layer
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = delta[:, 0] / delta[:, -1]
    r, word = verdict(ratio, status, dcfg)
    factor = decay_per_step(delta[0, :-1]) if len(delta) else math.nan
    fin = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731
    return {
        "verdict": word,
        "ratio_first_last": fin(r),
        "ratio_first_last_init": fin(ratio[0]),
        "ratio_first_last_final": fin(ratio[-1]),
        "per_step_factor_init": fin(factor),
        "memory_ratio": dcfg.memory_ratio,
        "effective_memory_init": effective_memory(delta[0], dcfg.memory_ratio),
        "effective_memory_final": effective_memory(delta[-1], dcfg.memory_ratio),
        "e_fold_steps_init": fin(1 / abs(math.log(factor))) if factor and np.isfinite(factor) and factor != 1 else None,
        "rho_init": [fin(v) for v in np.asarray(traces.rho)[0]],
        "sigma_max_init": [fin(v) for v in np.asarray(traces.sigma_max)[0]],
        "rho_final": [fin(v) for v in np.asarray(traces.rho)[-1]],
        "sigma_max_final": [fin(v) for v in np.asarray(traces.sigma_max)[-1]],
        "thresholds": {"vanish_ratio": dcfg.vanish_ratio, "explode_ratio": dcfg.explode_ratio},
        "nonfinite": {f: int(np.size(getattr(traces, f)) - np.isfinite(getattr(traces, f)).sum())
                      for f in TimeTrace._fields},
    }
