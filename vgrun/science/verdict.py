"""The diagnosis: how the gradient flowed at initialization and over training, and whether the loss learned.

The gradient's number is r = |delta_first| / |delta_last|: the back-propagated gradient at
the first hidden layer over that at the last (the product of the depth-1 backward
Jacobians); for a residual network the same ratio on the residual stream dL/dh at the
blocks' outputs (a branch whose gradient died would make the branch ratio huge); for a
recurrent network, at the first time step over the last (`diagnose_time`). It is judged
twice, against `diagnosis.vanish_ratio` and `diagnosis.explode_ratio`: at step 0 (the
initialization, what the textbooks analyse) and over training (the geometric median over
traced steps, robust to a spike), with the step from which it stayed in the band if it
started outside. The loss is judged on its own: it learned if the final training loss
(the mean of the last 5% of steps) fell below `diagnosis.stall_frac` times both its initial
value and the loss of the best constant prediction (`baseline_loss`: chance, for a
classifier); it diverged if a value went non-finite. The one-word verdict:

    diverged       the run went non-finite (the headline says where first, and at which step)
    vanishing      r below the band at initialization, else over training
    exploding      r above the band at initialization, else over training
    not learning   r in the band throughout, and the loss stalled
    healthy        r in the band throughout, and the loss learned

and the headline says the combination in words ("VANISHING at initialization (3.1e-05 over
29 layers), recovered by step 300; the loss stalled at chance"). Beside it: weights
collapsing toward zero, saturated units, dead residual branches, and for plain MLPs the
measured per-layer factor at initialization next to the mean-field prediction
(`vgrun.science.theory`).
"""

from __future__ import annotations

import math

import numpy as np

from vgrun.probes.layers import TRACE_FIELDS
from vgrun.probes.time import TimeTrace
from vgrun.science.fits import decay_factor

# trace fields a model does not measure (NaN by design, not non-finite values): a custom network's
# layers are its taps, activations without weights of their own (vgrun.nn.custom)
UNMEASURED = {"custom": ("grad_w", "grad_b", "weight", "update_ratio", "saturated", "stream")}
WORDS = ("diverged", "vanishing", "exploding", "not learning", "healthy")


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _count_nonfinite(x) -> int:
    return int(np.size(x) - np.isfinite(x).sum())


def per_layer_factor(delta_hidden: np.ndarray) -> float:
    """Least-squares |delta_l| / |delta_{l+1}| over hidden layers [L]: NaN if any is 0 or not finite."""
    return decay_factor(delta_hidden)


def band(r: float, dcfg) -> str:
    """One ratio judged: vanishing below vanish_ratio (0: the gradient underflowed), exploding
    above explode_ratio (inf), healthy in between; NaN (0/0: nothing flowed) counts as vanishing."""
    if not r < math.inf:
        return "exploding" if r == math.inf else "vanishing"
    return "vanishing" if r < dcfg.vanish_ratio else "exploding" if r > dcfg.explode_ratio else "healthy"


def verdict(ratio: np.ndarray, status: str, dcfg) -> tuple[float, str]:
    """(r, word) over training from first/last ratios [S] (one per traced step): r is the
    geometric median of the finite positive ratios; none finite: exploding if the run
    diverged, else vanishing (the gradient underflowed to 0)."""
    ok = np.isfinite(ratio) & (ratio > 0)
    if not ok.any():
        return math.nan, "exploding" if status == "diverged" else "vanishing"
    r = float(np.exp(np.median(np.log(ratio[ok]))))
    return r, band(r, dcfg)


def gradient(ratio: np.ndarray, status: str, dcfg, trace_every: int) -> dict:
    """The ratio judged at initialization and over training, and when it came back into the band."""
    ratio = np.asarray(ratio, np.float64)
    r0 = float(ratio[0]) if len(ratio) else math.nan
    init = band(r0, dcfg)
    r, word = verdict(ratio, status, dcfg)
    recovered = None
    if init != "healthy":  # the first traced step from which every later ratio stays in the band
        inside = np.array([band(x, dcfg) == "healthy" for x in ratio])
        outside = np.flatnonzero(~inside)
        if inside[-1] and len(ratio) > 1:
            recovered = int(outside.max() + 1) * trace_every
    return {"init": init, "training": word, "ratio_init": _finite(r0), "ratio_training": _finite(r),
            "ratio_final": _finite(ratio[-1]) if len(ratio) else None, "recovered_step": recovered}


def tail_mean(x) -> float:
    """A final value: the mean of the last 5% of steps (at least one)."""
    x = np.asarray(x)
    return float(x[-max(1, len(x) // 20):].mean())


def learning(loss: np.ndarray, status: str, baseline: float, dcfg, test=(math.nan, math.nan), end=None) -> dict:
    """Whether the training loss learned: `learned` if its final value (`end`, default the mean of
    the last 5% of steps) is below stall_frac times both its initial value and the best constant
    prediction's loss, `diverged` if the run went non-finite, else `stalled`."""
    loss0 = float(loss[0])
    end = tail_mean(loss) if end is None else float(end)
    if status == "diverged" or not math.isfinite(end):
        outcome = "diverged"
    elif end < dcfg.stall_frac * min(loss0, baseline):
        outcome = "learned"
    else:
        outcome = "stalled"
    return {"outcome": outcome, "loss_initial": _finite(loss0), "loss_final": _finite(end),
            "baseline_loss": _finite(baseline),
            "final_over_baseline": _finite(end / baseline) if baseline and math.isfinite(end) else None,
            "test_loss": _finite(test[0]), "test_acc": _finite(test[1]),
            "test_over_baseline": _finite(test[0] / baseline) if baseline else None}


# forward quantities before backward ones: within one step the loss goes non-finite before the gradient
_ORDER = ("loss", "act_mean", "act_std", "delta", "stream", "grad_w", "grad_b", "grad_norm", "weight", "update_ratio")


def first_nonfinite(metrics: dict, fields: dict, trace_every: int) -> dict | None:
    """The earliest step at which a measured value went non-finite, and which: metrics [steps]
    (loss, grad_norm) and fields {name: [traced steps, ...]} from the traces."""
    found = []
    for name in ("loss", "grad_norm"):
        v = np.asarray(metrics.get(name, []), np.float64)
        if name == "grad_norm":  # measured at traced steps (NaN placeholders elsewhere unless clipping)
            steps = np.flatnonzero(~np.isfinite(v[::trace_every])) * trace_every
        else:
            steps = np.flatnonzero(~np.isfinite(v))
        if steps.size:
            found.append((int(steps[0]), _ORDER.index(name), name, None))
    for name, v in fields.items():
        v = np.asarray(v, np.float64)
        bad = ~np.isfinite(v.reshape(len(v), -1))
        rows = np.flatnonzero(bad.any(1))
        if rows.size:
            where = int(np.flatnonzero(bad[rows[0]])[0])
            found.append((int(rows[0]) * trace_every, _ORDER.index(name) if name in _ORDER else len(_ORDER), name, where))
    if not found:
        return None
    step, _, name, where = min(found)
    return {"step": step, "what": name, "index": where}


def word(grad: dict, learn: dict) -> str:
    """The one-word verdict (see the module's docstring)."""
    if learn["outcome"] == "diverged":
        return "diverged"
    for judged in (grad["init"], grad["training"]):
        if judged != "healthy":
            return judged
    return "not learning" if learn["outcome"] == "stalled" else "healthy"


def headline(d: dict, span: str) -> str:
    """The verdict in words; span: what the ratio spans ("29 layers", "99 time steps")."""
    g, learn, v = d["gradient"], d["learning"], d["verdict"]
    dead = d.get("dead_branches")
    dead = f"; {100 * dead['share_final']:.0f}% of the residual branches dead by the end" if dead and \
        dead["share_final"] else ""
    r0 = _e(g["ratio_init"])
    at_init = (f"{g['init'].upper() if v == g['init'] else g['init']} at initialization ({r0} over {span})"
               if g["init"] != "healthy" else f"healthy gradient at initialization ({r0} over {span})")
    if g["init"] != "healthy" and g["recovered_step"] is not None:
        later = f"recovered by step {g['recovered_step']}"
    elif g["training"] == g["init"]:
        later = f"still {g['training']} over training (median {_e(g['ratio_training'])})" if g["init"] != "healthy" \
            else "and over training"
    else:
        word_t = g["training"].upper() if v == g["training"] and v != g["init"] else g["training"]
        later = f"{word_t} over training (median {_e(g['ratio_training'])})"
    if learn["outcome"] == "diverged":
        nf = d.get("first_nonfinite")
        what = f"{nf['what']}" + (f" (layer {nf['index']})" if nf and nf["index"] is not None else "") if nf else "a value"
        return (f"DIVERGED at step {nf['step']}: {what} went non-finite first; {at_init}" if nf
                else f"DIVERGED; {at_init}")
    if learn["outcome"] == "stalled":
        fob = learn["final_over_baseline"]
        what = "NOT LEARNING: " if v == "not learning" else ""
        loss = (f"the loss stalled at chance ({fob:.2f} of the constant prediction's loss)" if fob is not None
                and fob > 0.9 and fob < 1.1 else f"the loss did not learn ({_e(learn['loss_initial'])} -> "
                f"{_e(learn['loss_final'])}, {_e(fob)}x the constant prediction's loss)")
        return f"{what}{at_init}, {later}; {loss}{dead}"
    acc = learn.get("test_acc")
    trained = (f"trained to {100 * acc:.1f}% held-out accuracy" if acc is not None else
               f"trained: loss {_e(learn['loss_final'])}, {_e(learn['final_over_baseline'])}x the constant "
               f"prediction's")
    return ("HEALTHY: " if v == "healthy" else "") + f"{at_init}, {later}; {trained}{dead}"


def _e(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.1e}" if x < 1e-2 or x >= 1e3 else f"{x:.3g}"


def theory_check(cfg, delta0_hidden: np.ndarray) -> dict:
    """Mean-field prediction next to the measured per-layer factor at step 0."""
    from vgrun.nn.inits import weight_stats

    mean, std = weight_stats(cfg.init, cfg.width, cfg.width)
    why = None
    if cfg.model.name == "custom":
        why = "a network of one's own"
    elif cfg.model.name != "mlp":
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


def diagnose(cfg, metrics: dict, traces, status: str, baseline: float, test=(math.nan, math.nan),
             final_loss=None) -> dict:
    """The diagnosis of a feed-forward run from host arrays (metrics [steps], traces [traced steps, L+1]);
    final_loss: the final training loss to judge (default: the mean of the last 5% of `metrics`)."""
    dcfg = cfg.diagnosis
    delta = np.asarray(traces.delta, np.float64)  # [S, L+1]
    hidden = delta[:, : cfg.depth]
    stream = np.asarray(traces.stream, np.float64)[:, : cfg.depth]
    basis = "stream" if np.isfinite(stream).any() else "delta"  # residual networks: judged on the stream
    on = stream if basis == "stream" else hidden
    span = f"{cfg.depth - 1} layers"
    if on.shape[1] < 2:  # one traced layer below the output: its gradient against the output layer's
        on, span = delta[:, : cfg.depth + 1], "1 layer, to the output"
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = on[:, 0] / on[:, -1]  # [S]
    grad = gradient(ratio, status, dcfg, cfg.trace_every)
    learn = learning(metrics["loss"], status, baseline, dcfg, test, final_loss)

    weight = np.asarray(traces.weight, np.float64)
    w_change = weight[-1, : cfg.depth] / weight[0, : cfg.depth]
    sat = np.asarray(traces.saturated, np.float64)[-max(1, len(delta) // 10) :, : cfg.depth].mean(0)
    saturated_layers = [int(i) for i in np.flatnonzero(sat > dcfg.sat_frac)]
    signs = {
        "weights_collapsing": bool(np.nanmin(w_change) < 0.5) if np.isfinite(w_change).any() else None,  # None: unmeasured
        "min_weight_norm_change": _finite(np.nanmin(w_change)) if np.isfinite(w_change).any() else None,
        "saturated_layers": saturated_layers,
        "max_saturated_share": _finite(np.nanmax(sat)) if np.isfinite(sat).any() else None,
        "loss_stalled": learn["outcome"] != "learned",
        "loss_baseline": _finite(baseline),
        "loss_initial": learn["loss_initial"],
        "loss_final": learn["loss_final"],
    }
    # count non-finite values where a value was measured (not the NaN placeholders for
    # output-layer activation statistics, untraced steps' grad_norm, unevaluated test steps)
    fields = {f: getattr(traces, f)[:, : cfg.depth if f.startswith(("act", "sat", "stream")) else None]
              for f in TRACE_FIELDS if (f != "stream" or basis == "stream") and f not in UNMEASURED.get(cfg.model.name, ())}
    nonfinite = {f: _count_nonfinite(v) for f, v in fields.items()}
    nonfinite["loss"] = _count_nonfinite(metrics["loss"])
    nonfinite["grad_norm"] = _count_nonfinite(metrics["grad_norm"][:: cfg.trace_every])
    d = {
        **judged(grad, learn, basis, metrics, fields, cfg),
        "per_layer_factor_init": _finite(per_layer_factor(on[0])),
        "signs": signs,
        "dead_branches": dead_branches(hidden, stream, dcfg.dead_ratio) if basis == "stream" else None,
        "nonfinite": nonfinite,
        "theory": theory_check(cfg, hidden[0]),
    }
    d["headline"] = headline(d, span)
    return d


def judged(grad: dict, learn: dict, basis: str, metrics: dict, fields: dict, cfg) -> dict:
    """What every diagnosis holds: the verdict, the two judgements and where it went non-finite."""
    return {
        "verdict": word(grad, learn),
        "basis": basis,
        "gradient": grad,
        "learning": learn,
        "first_nonfinite": first_nonfinite(metrics, fields, cfg.trace_every) if learn["outcome"] == "diverged" else None,
        "ratio_first_last": grad["ratio_training"],
        "ratio_first_last_init": grad["ratio_init"],
        "ratio_first_last_final": grad["ratio_final"],
        "thresholds": thresholds(cfg.diagnosis),
    }


def thresholds(dcfg) -> dict:
    return {"vanish_ratio": dcfg.vanish_ratio, "explode_ratio": dcfg.explode_ratio, "stall_frac": dcfg.stall_frac}


def dead_branches(delta: np.ndarray, stream: np.ndarray, ratio: float) -> dict:
    """Residual blocks 1 .. L-1 whose branch gradient |dL/dz_l| fell below `ratio` times the stream's
    |dL/dh_l| at the block's output: dead (a ReLU branch switched off on the whole batch), at the
    first and the last traced step."""
    with np.errstate(divide="ignore", invalid="ignore"):
        dead = ~(delta[:, 1:] >= ratio * stream[:, 1:])  # [S, L-1]; NaN counts as dead
    blocks = max(1, dead.shape[1])
    return {"threshold": ratio, "share_init": float(dead[0].sum() / blocks), "share_final": float(dead[-1].sum() / blocks),
            "final": [int(i) + 1 for i in np.flatnonzero(dead[-1])]}


def explain(d: dict) -> str:
    """One sentence: the ratio over training and the band it is judged against."""
    th, g = d["thresholds"], d["gradient"]
    where = "on the residual stream, " if d.get("basis") == "stream" else ""
    return (f"|grad first| / |grad last| {where}median over traced steps {_e(g['ratio_training'])}, at step 0 "
            f"{_e(g['ratio_init'])}, at the end {_e(g['ratio_final'])}; healthy within "
            f"[{th['vanish_ratio']:.0e}, {th['explode_ratio']:.0e}]")


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


def diagnose_time(cfg, metrics: dict, traces: TimeTrace, status: str, baseline: float, test=(math.nan, math.nan),
                  final_loss=None) -> dict:
    """The diagnosis of a recurrent run: the top layer's |delta_0| / |delta_{T-1}| at step 0 and
    over training, and whether the loss learned against the task's baseline."""
    dcfg = cfg.diagnosis
    delta = np.asarray(traces.delta, np.float64)[:, -1, :]  # [S, T], top layer
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = delta[:, 0] / delta[:, -1]
    grad = gradient(ratio, status, dcfg, cfg.trace_every)
    learn = learning(metrics["loss"], status, baseline, dcfg, test, final_loss)
    factor = decay_per_step(delta[0, :-1]) if len(delta) else math.nan
    fields = {f: getattr(traces, f) for f in TimeTrace._fields}
    d = {
        **judged(grad, learn, "time", metrics, fields, cfg),
        "per_step_factor_init": _finite(factor),
        "memory_ratio": dcfg.memory_ratio,
        "effective_memory_init": effective_memory(delta[0], dcfg.memory_ratio),
        "effective_memory_final": effective_memory(delta[-1], dcfg.memory_ratio),
        "e_fold_steps_init": _finite(1 / abs(math.log(factor))) if factor and np.isfinite(factor) and factor != 1 else None,
        "rho_init": [_finite(v) for v in np.asarray(traces.rho)[0]],
        "sigma_max_init": [_finite(v) for v in np.asarray(traces.sigma_max)[0]],
        "rho_final": [_finite(v) for v in np.asarray(traces.rho)[-1]],
        "sigma_max_final": [_finite(v) for v in np.asarray(traces.sigma_max)[-1]],
        "nonfinite": {f: _count_nonfinite(v) for f, v in fields.items()}
        | {"loss": _count_nonfinite(metrics["loss"])},
    }
    d["headline"] = headline(d, f"{delta.shape[1] - 1} time steps")
    return d
