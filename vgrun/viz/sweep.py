"""Comparison plots of many runs (a sweep, or `vgrun-compare`).

sweep_gradients.png        |delta_l| against layer for every run (or group), at step 0 and at the
                           last traced step; recurrent runs: |dL/dh_t| of the top layer against t
                           (sweep_gradients_time.png when a comparison holds both kinds)
                           (several swept keys: a row of panels for depth, colour and line style for two more)
sweep_ratio.png            log10 of the first/last gradient ratio over two swept axes, a panel for each
                           value of the others

A line is the median over its curves, one curve per (run, seed); with more than one
curve (seeds, or the runs of a `--by` group) the band shows the min-max spread.
"""

from __future__ import annotations

import math
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
    """{recurrent: [(values, {'init': [curves], 'end': [curves]})]}: one line per run, or per group with
    `by`; values: the line's {key: value} over the keys it is drawn by (its job's name where none)."""
    lines = {True: {}, False: {}}
    shown = list(by) if by else keys
    if by and "depth" in frame.columns and "depth" not in by and frame.groupby(list(by))["depth"].nunique().max() > 1:
        shown.append("depth")  # a group's runs of other depths are no curves to take a median of: one line each
    for row in frame.to_dict("records"):
        curves, recurrent = _curves(row["run"], None)
        if not curves:
            continue
        values = tuple((k, row[k]) for k in shown) if shown else (("job", row["job"]),)
        entry = lines[recurrent].setdefault(values, {"init": [], "end": []})
        for (seed, when), c in curves.items():
            entry[when].append(c)
    return {k: [(dict(v), e) for v, e in d.items()] for k, d in lines.items() if d}


STYLES = ("-", "--", ":", "-.")


def _encoding(lines) -> tuple:
    """(row key, colour keys, style key) for lines drawn by several keys: a third key (depth where swept)
    as rows of panels, one as line style, the rest as colour."""
    keys = list(lines[0][0]) if lines else []
    row = ("depth" if "depth" in keys else keys[2]) if len(keys) >= 3 else None
    rest = [k for k in keys if k != row]
    style = rest[1] if len(rest) >= 2 else None
    return row, [k for k in rest if k != style], style


def gradient_lines(path: Path, lines, recurrent: bool, title: str) -> None:
    """Every line at step 0 and at the end (two columns); with several keys, a row of panels for each
    value of one (depth), the colour for another, the line style for a third (`_encoding`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from vgrun.io.table import _sort_key
    from vgrun.viz.plots import log_grid
    from vgrun.io.store import atomic_write
    import pandas as pd

    row_key, colour_keys, style_key = _encoding(lines)
    ordered = lambda vals: list(pd.Series(list(dict.fromkeys(vals)), dtype=object).sort_values(key=_sort_key))  # noqa: E731
    rows = ordered([v[row_key] for v, _ in lines]) if row_key else [None]
    colours = ordered([tuple(v[k] for k in colour_keys) for v, _ in lines])
    styles = ordered([v[style_key] for v, _ in lines]) if style_key else [None]
    palette = plt.cm.tab10.colors if len(colours) <= 10 else plt.cm.viridis(np.linspace(0, 0.92, len(colours)))
    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 1.0 + 3.4 * len(rows)), sharey=True, squeeze=False)
    for r, row in enumerate(rows):
        for c, (when, name) in enumerate((("init", "at initialization (step 0)"), ("end", "at the end (last traced step)"))):
            ax = axes[r, c]
            for values, entry in lines:
                if row_key and values[row_key] != row:
                    continue
                x, med, lo, hi = _band(entry[when])
                color = palette[colours.index(tuple(values[k] for k in colour_keys)) % len(palette)]
                style = STYLES[styles.index(values[style_key]) % len(STYLES)] if style_key else "-"
                ax.semilogy(x, med, style, marker=None if recurrent else "o", ms=3, color=color)
                if len(entry[when]) > 1:
                    ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
            ax.set_title(name + (f", {row_key}={row}" if row_key else ""), fontsize=10)
            log_grid(ax)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if r == len(rows) - 1:
                ax.set_xlabel("time step t (loss at the end)" if recurrent else "layer (0 = first hidden, last = output)")
        axes[r, 0].set_ylabel("|dL/dh_t| (top layer)" if recurrent else "|delta_l| = |dL/dz_l|")
    n = max(len(e["init"]) for _, e in lines)
    handles = [Line2D([], [], color=palette[i % len(palette)], marker=None if recurrent else "o", ms=3,
                      label=",".join(f"{k}={v}" for k, v in zip(colour_keys, vals)) or "all")
               for i, vals in enumerate(colours)]
    handles += [Line2D([], [], color="0.3", ls=STYLES[i % len(STYLES)], label=f"{style_key}={v}")
                for i, v in enumerate(styles)] if style_key else []
    legend = axes[0, 1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                               title=f"lines: median of {n} curves, band min-max" if n > 1 else None,
                               title_fontsize=7)
    # margins from the legend's measured width: a constrained layout measured every tick label twice (0.3 s)
    room = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.2
    top = 1 - 0.55 / fig.get_figheight()
    fig.subplots_adjust(left=0.06, right=max(0.4, 1 - room / fig.get_figwidth()), bottom=0.45 / fig.get_figheight() + 0.05,
                        top=top, wspace=0.06, hspace=0.35)
    fig.suptitle(title)
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def free_keys(frame, keys: list[str]) -> list[str]:
    """The swept keys that are not fixed by another one (a key that changes only with the model, such as
    model.rec_init in an rnn-against-lstm sweep, is no axis of its own); seeds are replicates, not axes."""
    keys = [k for k in keys if k != "seed"]
    out = []
    for k in keys:
        if any(k2 != k and k2 not in () and _determines(frame, k2, k) and
               (not _determines(frame, k, k2) or keys.index(k2) < keys.index(k)) for k2 in keys):
            continue
        out.append(k)
    return out


def _determines(frame, a: str, b: str) -> bool:
    """Every value of a goes with one value of b."""
    return bool((frame[[a, b]].astype(str).drop_duplicates().groupby(a)[b].nunique() <= 1).all())


def heat_axes(frame, keys: list[str]) -> list[str]:
    """Two axes for the heatmap: the given pair, else the two free swept keys with the most values."""
    keys = free_keys(frame, keys)
    if len(keys) <= 2:
        return list(keys)
    counts = {k: frame[k].astype(str).nunique() for k in keys}
    return sorted(keys, key=lambda k: -counts[k])[:2]


def _band_norm():
    from matplotlib.colors import Normalize

    class BandNorm(Normalize):
        """Piecewise linear: the healthy band [lo, hi] -> [0.42, 0.58] (pale, white at 0 when the band is
        symmetric), below it [vmin, lo) -> [0, 0.3], above it (hi, vmax] -> [0.7, 1]: the colour jumps at
        a threshold, so a ratio just outside the band never looks like one just inside."""

        def __init__(self, lo, hi, vmin, vmax):
            super().__init__(vmin, vmax)
            eps = 1e-9 * (hi - lo)
            self.points = ([vmin, lo - eps, lo, hi, hi + eps, vmax], [0.0, 0.3, 0.42, 0.58, 0.7, 1.0])

        def __call__(self, value, clip=None):
            return np.ma.masked_invalid(np.interp(value, *self.points))

        def inverse(self, value):
            return np.interp(value, self.points[1], self.points[0])

    return BandNorm


def ratio_heatmap(path: Path, frame, keys: list[str], vanish: float = 1e-2, explode: float = 1e2) -> None:
    """log10 first/last ratio, rows = first axis, columns = second, a panel for each value of the other
    free swept keys (never a median over a swept axis; a run's seeds are its median). The colours are
    centred on ratio 1 and turn at the verdict's thresholds (vanish, explode: diagnosis.vanish_ratio,
    explode_ratio), marked on the colour bar; each cell's number is printed in the colour that reads on it."""
    import itertools

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vgrun.io.table import _sort_key, swept_keys
    from vgrun.io.store import atomic_write

    BandNorm = _band_norm()
    axes = heat_axes(frame, keys)
    panel_keys = [k for k in free_keys(frame, swept_keys(frame)) if k not in axes]
    f = frame.assign(log_ratio=np.log10(frame["ratio_first_last"].astype(float).where(lambda r: r > 0)))
    rows_key, cols_key = (axes + [None])[:2]
    values = lambda k: f[k].drop_duplicates().sort_values(key=_sort_key).tolist()  # noqa: E731
    rows, cols = values(rows_key), values(cols_key) if cols_key else [""]
    panels = list(itertools.product(*(values(k) for k in panel_keys))) or [()]
    grids = []
    for panel in panels:
        sel = f
        for k, v in zip(panel_keys, panel):
            sel = sel[sel[k] == v]
        grid = np.full((len(rows), len(cols)), np.nan)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                cell = sel[(sel[rows_key] == r) & ((sel[cols_key] == c) if cols_key else True)]["log_ratio"].dropna()
                grid[i, j] = cell.median() if len(cell) else np.nan  # one run (its seeds' median), or its seeds
        grids.append(grid)
    lo, hi = math.log10(vanish), math.log10(explode)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids])
    norm = BandNorm(lo, hi, min(2 * lo, float(finite.min(initial=0.0)) - 0.5),
                    max(2 * hi, float(finite.max(initial=0.0)) + 0.5))
    ncol = min(len(panels), 3)
    nrow = math.ceil(len(panels) / ncol)
    fig, axs = plt.subplots(nrow, ncol, figsize=(ncol * (1.0 * len(cols) + 2.6) + 1.5, nrow * (0.5 * len(rows) + 1.6)),
                            squeeze=False, constrained_layout=True)
    cmap = plt.get_cmap("RdBu_r")
    for ax, panel, grid in zip(axs.flat, panels, grids):
        im = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto")
        for i in range(len(rows)):
            for j in range(len(cols)):
                v = grid[i, j]
                shade = cmap(norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
                dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5  # the cell's luminance
                ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        ax.set_xticks(range(len(cols)) if cols_key else [], [str(c) for c in cols] if cols_key else [])
        ax.set_ylabel(rows_key)
        ax.set_xlabel(cols_key or "")
        if panel:
            ax.set_title(", ".join(f"{k}={v}" for k, v in zip(panel_keys, panel)), fontsize=9)
    for ax in list(axs.flat)[len(panels):]:
        ax.axis("off")
    bar = fig.colorbar(im, ax=axs, label="log10 |delta_first| / |delta_last|")
    for t in (lo, hi):  # the verdict's band: between the lines, healthy
        bar.ax.axhline(t, color="black", lw=1.2)
    bar.set_ticks([lo, 0.0, hi], labels=[f"{lo:g} vanishing", "0", f"{hi:g} exploding"])
    title = "log10 |delta_first| / |delta_last| (healthy between the lines on the colour bar)"
    if frame["n_seeds"].max() > 1 or "seed" in swept_keys(frame):
        title += "; a cell: the median over its seeds"
    fig.suptitle(title, fontsize=10)
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def draw(out: Path, frame, keys: list[str], by=None) -> list[Path]:
    """Every comparison plot for `frame` into `out`; returns the files written."""
    written = []
    kinds = _lines(frame, free_keys(frame, keys) if keys else keys, by)  # a run's seeds: one line and its band
    for recurrent, lines in kinds.items():
        name = "sweep_gradients_time.png" if recurrent and len(kinds) > 1 else "sweep_gradients.png"
        what = "|dL/dh_t| against time step" if recurrent else "|delta_l| against layer"
        gradient_lines(out / name, lines, recurrent, f"{what}, {len(frame)} runs" + (f", {len(lines)} lines" if by else ""))
        written.append(out / name)
    if keys and frame["ratio_first_last"].notna().any():
        ratio_heatmap(out / "sweep_ratio.png", frame, keys)
        written.append(out / "sweep_ratio.png")
    return written
