"""doya.png: Doya's one-neuron network, three views of the same cliff.

Left: bifurcation diagram, fixed points x* against b (stable solid, unstable dashed), the
bistable interval shaded, the states reached from several x(0) as dots, x0 and the cliff.
Middle: the loss L(b) = (target - x(T))^2 and |dL/db| (log, right axis) against b.
Right: gradient descent on b, b (left axis) and the loss (right axis) per step.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vgrun.science.doya import b_of_x


def _bifurcation(ax, results, w, b_lim):
    x = np.linspace(1e-4, 1 - 1e-4, 4000)
    b, stable = b_of_x(x, w), w * x * (1 - x) < 1
    # stable branches are split by the unstable middle: draw each run of constant stability alone
    cuts = np.nonzero(np.diff(stable.astype(int)))[0] + 1
    labels = {True: "stable", False: "unstable"}
    for seg_x, seg_b, seg_s in zip(np.split(x, cuts), np.split(b, cuts), np.split(stable, cuts)):
        s = bool(seg_s[0])
        ax.plot(seg_b, seg_x, "-" if s else "--", color="k", lw=1.2 if s else 1.0, zorder=3, label=labels.pop(s, None))
    arr = results["arrays"]
    pick = slice(None, None, max(1, len(arr["b"]) // 150))  # ~150 columns of dots is plenty
    ends = arr["ends"][:, pick]
    ax.plot(np.broadcast_to(arr["b"][pick], ends.shape).ravel(), ends.ravel(), "o", ms=2.5, mfc="none",
            color="tab:blue", mew=0.6, label=f"simulated from {len(ends)} x(0) in [0, 1]")
    if results["bistable"]:
        ax.axvspan(results["bistable"]["b_lo"], results["bistable"]["b_hi"], color="tab:orange", alpha=0.15, label="bistable")
    ax.set_xlim(*b_lim)
    ax.set_ylim(0, 1)
    ax.set_xlabel("b")
    ax.set_ylabel("fixed point x*")
    ax.set_title(f"bifurcation diagram (w = {w:g})")


def _mark_cliff(ax, cliff):
    if cliff:
        ax.axvline(cliff["b"], color="tab:red", lw=0.8, ls=":", label=f"cliff b = {cliff['b']:.4f}")


def plot(results: dict, path) -> None:
    """Write the three panels for `vgrun.science.doya.analyze`'s results to path (PNG, atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vgrun.io.store import atomic_write

    arr, cliff, gd = results["arrays"], results["cliff"], results["gd"]
    d = SimpleNamespace(**results["params"])
    b_lim = (d.b_min, d.b_max)
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6), constrained_layout=True)
    below = {"fontsize": 7, "loc": "upper center", "bbox_to_anchor": (0.5, -0.13), "ncol": 2, "frameon": False}

    _bifurcation(axes[0], results, d.w, b_lim)
    axes[0].axhline(d.x0, color="tab:green", lw=0.8, label=f"x(0) = {d.x0:g}")
    _mark_cliff(axes[0], cliff)
    axes[0].legend(**below)  # under the axes: clear of the data

    ax, ax2 = axes[1], axes[1].twinx()
    ax.plot(arr["b"], arr["loss"], color="k", label="L(b)")
    g = np.abs(arr["grad"])
    ax2.semilogy(arr["b"], np.where(g > 0, g, np.nan), color="tab:purple", lw=0.8, label="|dL/db|")
    _mark_cliff(ax, cliff)
    ax.set_xlim(*b_lim)
    ax.set_xlabel("b")
    ax.set_ylabel(f"L(b) = ({d.target:g} - x(T))^2, T = {d.horizon}")
    ax2.set_ylabel("|dL/db|", color="tab:purple")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0], **below)
    ax.set_title("loss landscape and its gradient")

    ax, ax2 = axes[2], axes[2].twinx()
    steps = np.arange(len(arr["gd_b"]))
    lo, hi = min(b_lim[0], d.gd_b0), max(b_lim[1], d.gd_b0)
    b = np.clip(arr["gd_b"], lo, hi)  # b can be thrown far off; clipped points are marked
    ax.plot(steps, b, color="tab:blue", label="b")
    off = b != arr["gd_b"]
    ax.plot(steps[off], b[off], "^", ms=3, color="tab:blue", label="b off scale (clipped)" if off.any() else None)
    ax2.plot(steps, arr["gd_loss"], color="k", lw=0.8, label="L")
    if cliff:
        ax.axhline(cliff["b"], color="tab:red", lw=0.8, ls=":", label="cliff")
    if gd["hit"]:
        ax.axvline(gd["step"], color="tab:orange", lw=0.8, label=f"hits the wall (step {gd['step']})")
    ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_xlabel("gradient-descent step")
    ax.set_ylabel("b")
    ax2.set_ylabel("loss")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0], **below)
    ax.set_title(f"gradient descent on b (lr {d.gd_lr:g})")

    fig.suptitle(f"Doya (1993): x' = (1-{d.eps:g}) x + {d.eps:g} sigmoid({d.w:g} x + b), x(0) = {d.x0:g}")
    atomic_write(Path(path), lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
