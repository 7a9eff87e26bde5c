"""Comparison plots of many runs (a sweep, or `vgrun-compare`).

sweep_gradients.png        |delta_l| against layer for every run (or group), at step 0 and at the
                           last traced step; recurrent runs: |dL/dh_t| of the top layer against t
                           (sweep_gradients_time.png when a comparison holds both kinds)
sweep_ratio.png            log10 of the first/last gradient ratio over two swept axes; other swept
                           keys are folded by the median (named in the title)

A line is the median over its curves, one curve per (run, seed); with more than one
curve (seeds, or the runs of a `--by` group) the band shows the min-max spread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _label(row: dict, keys: list[str]) -> str:
    return ",".join(f"{k}={row[k]}" for k in keys) if keys else row["job"]


def _curves(run: str, recurrent_only: bool | None):
    """{(seed, 'init'|'end'): Series x -> |delta|} of one run, and whether it is recurrent; None if no traces."""
    import pyarrow.parquet as pq

    path = Path(run) / "traces.parquet"
    if not path.is_file():
        return None, None
    try:
        names = pq.read_schema(path).names  # read only the columns drawn: a sixth of the time of every column
        t = pq.read_table(path, columns=[c for c in ("step", "layer", "t", "seed", "delta") if c in names]).to_pandas()
    except (OSError, ValueError):  # truncated or corrupt: left out of the figure (the table's report names it)
        return None, None
    recurrent = "t" in t.columns
    if "seed" not in t.columns:
        t["seed"] = 0
    if recurrent:
        t = t[t["layer"] == t["layer"].max()]  # the top layer, as the diagnosis uses
    x = "t" if recurrent else "layer"
    out = {}
    for seed, s in t.groupby("seed"):
        for when, step in (("init", s["step"].min()), ("end", s["step"].max())):
            out[(seed, when)] = s[s["step"] == step].set_index(x)["delta"].sort_index()
    return out, recurrent


def _band(series: list):
    """Median, min and max over curves aligned on x (NaN where a curve has no point)."""
    import pandas as pd

    m = pd.concat(series, axis=1).replace([np.inf, -np.inf], np.nan)
    m = m.where(m > 0)  # log axis: zeros (underflow) drawn as gaps
    return m.index.to_numpy(), m.median(axis=1).to_numpy(), m.min(axis=1).to_numpy(), m.max(axis=1).to_numpy()


def _lines(frame, keys: list[str], by):
    """{recurrent: [(label, {'init': [curves], 'end': [curves]})]}: one line per run, or per group with `by`."""
    lines = {True: {}, False: {}}
    for row in frame.to_dict("records"):
        curves, recurrent = _curves(row["run"], None)
        if not curves:
            continue
        label = _label(row, by if by else keys)
        entry = lines[recurrent].setdefault(label, {"init": [], "end": []})
        for (seed, when), c in curves.items():
            entry[when].append(c)
    return {k: list(v.items()) for k, v in lines.items() if v}


def gradient_lines(path: Path, lines, recurrent: bool, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from vgrun.viz.plots import log_grid
    from vgrun.io.store import atomic_write

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.92, max(len(lines), 1)))
    panels = ((axes[0], "init", "at initialization (step 0)"), (axes[1], "end", "at the end (last traced step)"))
    for ax, when, name in panels:
        for color, (label, entry) in zip(colors, lines):
            x, med, lo, hi = _band(entry[when])
            n = len(entry[when])
            ax.semilogy(x, med, "-" if recurrent else "o-", ms=3, color=color,
                        label=label + (f" (median of {n})" if n > 1 else ""))
            if n > 1:
                ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.set_title(name)
        ax.set_xlabel("time step t (loss at the end)" if recurrent else "layer (0 = first hidden, last = output)")
        log_grid(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("|dL/dh_t| (top layer)" if recurrent else "|delta_l| = |dL/dz_l|")
    legend = axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    # margins from the legend's measured width: a constrained layout measured every tick label twice (0.3 s)
    room = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.2
    fig.subplots_adjust(left=0.06, right=max(0.4, 1 - room / fig.get_figwidth()), bottom=0.11, top=0.87, wspace=0.06)
    fig.suptitle(title)
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def heat_axes(frame, keys: list[str]) -> list[str]:
    """Two axes for the heatmap: the given pair, else the two swept keys with the most values."""
    if len(keys) <= 2:
        return list(keys)
    counts = {k: frame[k].astype(str).nunique() for k in keys}
    return sorted(keys, key=lambda k: -counts[k])[:2]


def ratio_heatmap(path: Path, frame, keys: list[str]) -> None:
    """log10 first/last ratio, rows = first axis, columns = second; the median over every other run in a cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vgrun.io.table import _sort_key, swept_keys
    from vgrun.io.store import atomic_write

    axes = heat_axes(frame, keys)
    rest = [k for k in swept_keys(frame) if k not in axes]  # folded into each cell by the median
    f = frame.assign(log_ratio=np.log10(frame["ratio_first_last"].astype(float).where(lambda r: r > 0)))
    rows_key, cols_key = (axes + [None])[:2]
    rows = f[rows_key].drop_duplicates().sort_values(key=_sort_key).tolist()
    cols = f[cols_key].drop_duplicates().sort_values(key=_sort_key).tolist() if cols_key else [""]
    grid = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            cell = f[(f[rows_key] == r) & ((f[cols_key] == c) if cols_key else True)]["log_ratio"].dropna()
            grid[i, j] = cell.median() if len(cell) else np.nan
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 4, 0.6 * len(rows) + 2), constrained_layout=True)
    lim = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, "n/a" if np.isnan(grid[i, j]) else f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xticks(range(len(cols)) if cols_key else [], [str(c) for c in cols] if cols_key else [])
    ax.set_ylabel(rows_key)
    ax.set_xlabel(cols_key or "")
    fig.colorbar(im, ax=ax, label="log10 ratio")  # the default verdict: < -2 vanishing, > 2 exploding
    title = "log10 |delta_first| / |delta_last|" + (f"; median over {', '.join(rest)}" if rest else "")
    if frame["n_seeds"].max() > 1:
        title += " (each run: median over its seeds)"
    ax.set_title(title, fontsize=9)
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def draw(out: Path, frame, keys: list[str], by=None) -> list[Path]:
    """Every comparison plot for `frame` into `out`; returns the files written."""
    written = []
    kinds = _lines(frame, keys, by)
    for recurrent, lines in kinds.items():
        name = "sweep_gradients_time.png" if recurrent and len(kinds) > 1 else "sweep_gradients.png"
        what = "|dL/dh_t| against time step" if recurrent else "|delta_l| against layer"
        gradient_lines(out / name, lines, recurrent, f"{what}, {len(lines)} " + ("groups" if by else "runs"))
        written.append(out / name)
    if keys and frame["ratio_first_last"].notna().any():
        ratio_heatmap(out / "sweep_ratio.png", frame, keys)
        written.append(out / "sweep_ratio.png")
    return written
