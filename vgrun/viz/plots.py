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
    """The title (with the seed band's legend; its lines wrapped), then the PNG, written atomically."""
    import textwrap

    from vgrun.io.store import atomic_write

    title = title if spread is None else f"{title}  (median of {len(spread)} seeds, band: min-max)"
    lines = [w for line in title.split("\n") for w in textwrap.wrap(line, 150)]
    fig.suptitle("\n".join(lines), fontsize=11)
    fig.subplots_adjust(top=0.93 - 0.05 * len(lines))
    atomic_write(Path(path), lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


# keys that steer a run or add measurements, not what is trained: left out of a figure's title
UNTITLED = ("expect", "check", "fail_fast", "resume", "threads", "chunks", "device", "histograms", "lesion",
            "isometry", "trace_every")


def settings(cfg) -> list[str]:
    """key=value for every setting that applies to the run (vgrun.io.provenance.config_dict) and
    differs from the schema's default for its model and data; a group's choice as `init=he`."""
    from vgrun.config.hyper import flatten
    from vgrun.config.schema import Config, DataConfig, ModelConfig
    from vgrun.io.provenance import config_dict

    mine = flatten(config_dict(cfg))
    base = flatten(config_dict(Config(model=ModelConfig(name=cfg.model.name), data=DataConfig(name=cfg.data.name))))
    out = []
    for key, value in mine.items():
        default = DataConfig.name if key == "data.name" else base.get(key)  # the data's own keys: its defaults
        if key == "model.name" or key.split(".")[0] in UNTITLED or key.startswith("diagnosis.") or default == value:
            continue
        out.append(f"{key[:-5] if key.endswith('.name') else key}={value:g}" if isinstance(value, float)
                   else f"{key[:-5] if key.endswith('.name') else key}={value}")
    return out


def run_title(cfg, diagnosis: dict | None = None) -> str:
    """The run's model and every setting that differs from the defaults; below it, the verdict."""
    title = " ".join([cfg.model.name, *settings(cfg)])
    return title if not diagnosis or not diagnosis.get("headline") else f"{title}\n{diagnosis['headline']}"


def run_figure(path, cfg, results: list, traces, diagnosis: dict | None = None) -> None:
    """gradient_flow.png of one job: `traces` (the median over seeds) against layer or time step,
    with the seeds' min-max band when there are several `results`, titled with its settings and
    its verdict (`diagnosis`); for a plain network the mean-field prediction beside the measured
    |delta_l| at step 0; and histograms.png beside it where the run measured histograms."""
    plot = gradient_through_time if cfg.model.name in RECURRENT else gradient_flow
    spread = None if len(results) == 1 else [r.traces for r in results]
    theory = (diagnosis or {}).get("theory") or {}
    kw = {} if plot is gradient_through_time else {"factor": theory.get("factor") if theory.get("applies") else None}
    plot(path, traces, cfg.trace_every, run_title(cfg, diagnosis), spread=spread, **kw)
    hist = results[0].histograms
    if hist is not None:  # beside it, histograms.png (the first seed's)
        seed = f", seed {cfg.seed}" if len(results) > 1 else ""
        histogram_figure(Path(path).with_name("histograms.png"), hist, run_title(cfg) + seed)


def gradient_flow(path, traces, every: int, title: str, spread=None, factor: float | None = None) -> None:
    """spread: per-seed traces (seeds > 1): `traces` is then their median, drawn with a min-max band.
    factor: the mean-field |delta_l| / |delta_{l+1}| (vgrun.science.theory), drawn at step 0 from the
    last hidden layer down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    delta, gw = np.asarray(traces.delta, np.float64), np.asarray(traces.grad_w, np.float64)
    n_steps, n_layers = delta.shape
    # a custom network's layers are its taps (activations, no weights): the middle panel shows their spread
    taps = not np.isfinite(gw).any()
    panels = ((delta, "delta", "|delta_l| = |dL/dz_l|"), (gw, "grad_w", "|dL/dW_l|")) if not taps else (
        (delta, "delta", "|dL/dh| at the tap (RMS over the batch)"),
        (np.asarray(traces.act_std, np.float64), "act_std", "std of the tapped activation h"))
    layers = np.arange(n_layers)
    picks = sorted(set(np.linspace(0, n_steps - 1, min(6, n_steps)).round().astype(int)))
    fig, axes = _three_panels(plt)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(picks)))
    for ax, (data, field, name) in zip(axes, panels):
        band = None if spread is None else _band(spread, field, picks)
        linear = field == "act_std"  # a spread of order one: on a log axis it would have no ticks
        for j, (c, i) in enumerate(zip(colors, picks)):
            y = np.where(data[i] > 0, data[i], np.nan)  # log axis: zeros (underflow) shown as gaps
            (ax.plot if linear else ax.semilogy)(layers, y, "o-", ms=3, color=c, label=f"step {i * every}")
            if band is not None:
                ax.fill_between(layers, band[0][j], band[1][j], color=c, alpha=0.2, lw=0)
        ax.set_xlabel("tap (in the order they run)" if taps else "layer (0 = first hidden)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3) if linear else log_grid(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
        ax.axvline(n_layers - 1, color="0.6", ls=":", lw=1)
        ax.annotate("output", xy=(n_layers - 1, 0.98), xycoords=("data", "axes fraction"), ha="right", va="top",
                    fontsize=8, color="0.35", rotation=90)
    if factor is not None and n_layers > 2 and np.isfinite(delta[0, n_layers - 2]):
        last = n_layers - 2  # the last hidden layer: the prediction runs down from its measured |delta|
        hidden = np.arange(last + 1)
        axes[0].semilogy(hidden, delta[0, last] * factor ** (last - hidden), "k--", lw=1,
                         label=f"mean field, step 0 (x{factor:.3g} a layer)")
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
    axes[2].set_ylabel("tap (top row: output)" if taps else "layer (top row: output)")
    axes[2].yaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(plt, fig, path, title, spread)


def gradient_through_time(path, traces, every: int, title: str, spread=None) -> None:
    """Recurrent runs: |dL/dh_t| and the Jacobian-product estimate against time step
    (top layer, several training steps), and a step x time heatmap of |dL/dh_t|.
    spread: per-seed traces (seeds > 1): `traces` is their median, drawn with a min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # time steps are whole numbers
        log_grid(ax)
    axes[0].legend(fontsize=8)
    ok = np.isfinite(delta) & (delta > 0)
    if ok.any():
        im = axes[2].imshow(np.where(ok, delta, np.nan).T, aspect="auto", origin="lower", interpolation="nearest",
                            norm=LogNorm(delta[ok].min(), delta[ok].max()), extent=(0, n_steps * every, -0.5, n_t - 0.5))
        fig.colorbar(im, ax=axes[2], label="|dL/dh_t|").ax.minorticks_off()
    axes[2].set_xlabel("training step")
    axes[2].set_ylabel("time step t")
    axes[2].yaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(plt, fig, path, title, spread)


def histogram_figure(path, hist: dict, title: str) -> None:
    """histograms.png: for the first, middle and last hidden layer and the output layer (columns),
    the distribution of log10 |W_l|, |dL/dW_l| and the per-example |dL_i/dz_l| (rows) as a step x
    log10-magnitude image, the share of the layer's entries per bin in colour (log scale); the
    shares of exact zeros and non-finite entries are printed on each panel at the last step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from vgrun.probes.histograms import N_BINS, NONFINITE, ZEROS, edges

    steps = np.asarray(hist["step"])
    n_layers = np.shape(hist["weight"])[1]
    depth = n_layers - 1
    columns = sorted({0, depth // 2, depth - 1, depth})
    names = {0: "first", depth // 2: "middle", depth - 1: "last", depth: "output"}
    rows = (("weight", "|W_l|"), ("grad_w", "|dL/dW_l|"), ("delta", "|dL_i/dz_l|"))
    e = edges()
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(3.6 * len(columns), 8.4), squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.86, bottom=0.07, top=0.9, wspace=0.25, hspace=0.3)
    for r, (q, label) in enumerate(rows):
        counts = np.asarray(hist[q], np.float64)  # [K, L, N]
        share = counts / np.maximum(counts.sum(-1, keepdims=True), 1)
        seen = np.flatnonzero(share[..., :N_BINS].sum((0, 1)) > 0)  # the bins any layer ever used
        lo, hi = (e[seen.min()] - 1, e[seen.max() + 1] + 1) if seen.size else (-1.0, 1.0)
        for c, layer in enumerate(columns):
            ax = axes[r, c]
            img = np.where(share[:, layer, :N_BINS] > 0, share[:, layer, :N_BINS], np.nan).T  # [bins, K]
            end = steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 1)  # each snapshot spans to the next
            mesh = ax.imshow(img, origin="lower", aspect="auto", interpolation="nearest", norm=LogNorm(1e-4, 1),
                             cmap="viridis", extent=(steps[0], end, e[0], e[-1]))
            ax.set_ylim(lo, hi)
            zero, bad = share[-1, layer, ZEROS], share[-1, layer, NONFINITE]
            if zero or bad:
                ax.text(0.02, 0.02, f"zeros {100 * zero:.1f}%" + (f", non-finite {100 * bad:.1f}%" if bad else ""),
                        transform=ax.transAxes, fontsize=8, color="crimson")
            if r == 0:
                ax.set_title(f"layer {layer} ({names[layer]})", fontsize=10)
            if c == 0:
                ax.set_ylabel(f"log10 {label}")
            if r == len(rows) - 1:
                ax.set_xlabel("step")
    fig.colorbar(mesh, cax=fig.add_axes((0.89, 0.25, 0.015, 0.5)), label="share of the layer's entries")
    _finish(plt, fig, path, title, None)
