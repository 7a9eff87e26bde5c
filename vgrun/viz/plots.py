"""gradient_flow.png: how the gradient flows through the layers, and how that changes in training.

Left: |delta_l| (back-propagated gradient) against layer at several steps, log scale.
Middle: |dL/dW_l| against layer at the same steps (it can stay level while delta vanishes).
Right: step x layer heatmap of |delta_l| on a log colour scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vgrun.config.names import RECURRENT


def _band(spread, field: str, picks, layer=None):
    """[len(picks), n] min and max over seeds of a trace field at the picked traced steps."""
    stacks = []
    for t in spread:
        a = np.asarray(getattr(t, field), np.float64)
        a = a[:, layer] if layer is not None else a
        stacks.append(a[[min(i, len(a) - 1) for i in picks]])
    s = np.stack(stacks)  # [seeds, picks, n]
    s = np.where(s > 0, s, np.nan)
    return np.nanmin(s, 0), np.nanmax(s, 0)


def log_grid(ax) -> None:
    """A grid at the decades of a log y axis, without minor ticks: over the 5-40 decades a
    gradient spans, matplotlib's hundreds of minor ticks (three line objects each) cost
    ~0.12 s a figure (of 0.31) and drew a dense mesh of lines."""
    from matplotlib.ticker import NullLocator

    ax.grid(True, which="major", alpha=0.3)
    ax.yaxis.set_minor_locator(NullLocator())


def _three_panels(plt):
    """The figure both plots draw on: fixed margins (a constrained layout cost 0.1 s a plot)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    fig.subplots_adjust(left=0.05, right=0.97, bottom=0.12, top=0.9, wspace=0.25)
    return fig, axes


def _finish(plt, fig, path, title: str, spread) -> None:
    """The title (with the seed band's legend), then the PNG, written atomically."""
    from vgrun.io.store import atomic_write

    fig.suptitle(title if spread is None else f"{title}  (median of {len(spread)} seeds, band: min-max)")
    atomic_write(Path(path), lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def run_title(cfg) -> str:
    """The settings that name a run in its figure."""
    if cfg.model.name in RECURRENT:
        return f"{cfg.model.name} width={cfg.width} act={cfg.act} data={cfg.data.name} seq_len={cfg.seq_len}"
    return (f"{cfg.model.name} depth={cfg.depth} act={cfg.act} init={cfg.init.name} norm={cfg.norm} "
            f"opt={cfg.optimizer.name}")


def run_figure(path, cfg, results: list, traces) -> None:
    """gradient_flow.png of one job: `traces` (the median over seeds) against layer or time step,
    with the seeds' min-max band when there are several `results`."""
    plot = gradient_through_time if cfg.model.name in RECURRENT else gradient_flow
    spread = None if len(results) == 1 else [r.traces for r in results]
    plot(path, traces, cfg.trace_every, run_title(cfg), spread=spread)


def gradient_flow(path, traces, every: int, title: str, spread=None) -> None:
    """spread: per-seed traces (seeds > 1): `traces` is then their median, drawn with a min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    delta, gw = np.asarray(traces.delta, np.float64), np.asarray(traces.grad_w, np.float64)
    n_steps, n_layers = delta.shape
    layers = np.arange(n_layers)
    picks = sorted(set(np.linspace(0, n_steps - 1, min(6, n_steps)).round().astype(int)))
    fig, axes = _three_panels(plt)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(picks)))
    for ax, data, field, name in ((axes[0], delta, "delta", "|delta_l| = |dL/dz_l|"), (axes[1], gw, "grad_w", "|dL/dW_l|")):
        band = None if spread is None else _band(spread, field, picks)
        for j, (c, i) in enumerate(zip(colors, picks)):
            y = np.where(data[i] > 0, data[i], np.nan)  # log axis: zeros (underflow) shown as gaps
            ax.semilogy(layers, y, "o-", ms=3, color=c, label=f"step {i * every}")
            if band is not None:
                ax.fill_between(layers, band[0][j], band[1][j], color=c, alpha=0.2, lw=0)
        ax.set_xlabel("layer (0 = first hidden, last = output)")
        ax.set_ylabel(name)
        log_grid(ax)
    axes[0].legend(fontsize=8)
    positive = delta[np.isfinite(delta) & (delta > 0)]
    if positive.size:
        img = np.where(np.isfinite(delta) & (delta > 0), delta, np.nan)
        im = axes[2].imshow(
            img.T,
            aspect="auto",
            origin="lower",
            norm=LogNorm(positive.min(), positive.max()),
            extent=(0, n_steps * every, -0.5, n_layers - 0.5),
            interpolation="nearest",
        )
        fig.colorbar(im, ax=axes[2], label="|delta_l|").ax.minorticks_off()
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("layer")
    _finish(plt, fig, path, title, spread)


def gradient_through_time(path, traces, every: int, title: str, spread=None) -> None:
    """Recurrent runs: |dL/dh_t| and the Jacobian-product estimate against time step
    (top layer, several training steps), and a step x time heatmap of |dL/dh_t|.
    spread: per-seed traces (seeds > 1): `traces` is their median, drawn with a min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    delta = np.asarray(traces.delta, np.float64)[:, -1]  # [S, T] top layer
    jac = np.asarray(traces.jacobian, np.float64)[:, -1]
    n_steps, n_t = delta.shape
    picks = sorted(set(np.linspace(0, n_steps - 1, min(6, n_steps)).round().astype(int)))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(picks)))
    fig, axes = _three_panels(plt)
    for ax, data, field, name in ((axes[0], delta, "delta", "|dL/dh_t|"),
                                  (axes[1], jac, "jacobian", "|v^T dh_T/dh_t| (Jacobian product)")):
        band = None if spread is None else _band(spread, field, picks, layer=-1)
        for j, (c, i) in enumerate(zip(colors, picks)):
            ax.semilogy(np.arange(n_t), np.where(data[i] > 0, data[i], np.nan), "-", color=c, label=f"step {i * every}")
            if band is not None:
                ax.fill_between(np.arange(n_t), band[0][j], band[1][j], color=c, alpha=0.2, lw=0)
        ax.set_xlabel("time step t (loss at the end)")
        ax.set_ylabel(name)
        log_grid(ax)
    axes[0].legend(fontsize=8)
    ok = np.isfinite(delta) & (delta > 0)
    if ok.any():
        im = axes[2].imshow(np.where(ok, delta, np.nan).T, aspect="auto", origin="lower", interpolation="nearest",
                            norm=LogNorm(delta[ok].min(), delta[ok].max()), extent=(0, n_steps * every, -0.5, n_t - 0.5))
        fig.colorbar(im, ax=axes[2], label="|dL/dh_t|").ax.minorticks_off()
    axes[2].set_xlabel("training step")
    axes[2].set_ylabel("time step t")
    _finish(plt, fig, path, title, spread)
