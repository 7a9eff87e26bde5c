"""Runs and sweeps as one table: a row per run, filtered and grouped by config keys.

    import vgrun
    table = vgrun.load_table("outputs/multirun/**")   # a row per run: config, status, metrics, ratio

The row of a run: `run` (its folder), `job` (the folder name: its overrides in a sweep),
`overrides`, every config key flattened (`depth`, `optimizer.lr`, ...; a group's name is
also under the group's key: `init` = `init.name`), `status`, `train_loss`, `train_acc`,
`test_loss`, `test_acc` (held-out), `ratio_first_last_init` (|delta_first| / |delta_last| at
step 0), `ratio_first_last` (its median over traced steps), `verdict`, `wall_s`, `steps_done`, `n_seeds`, and for failed
or skipped jobs `error` and `log`. A run with several seeds reports the median over its seeds, and
their range in `<metric>_min` and `<metric>_max` (for the four metrics and `ratio_first_last`).
The sweep summary at the end of `vgrun -m` is this same table (`vgrun-compare` prints it).

A key is named in full (`optimizer.lr`) or by its last part where that is unambiguous (`lr`).
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

from vgrun.config.names import STEERING
from vgrun.io.store import GROUPS, Unreadable, find_runs, flat_config, load_summary

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
RANGED = (*METRICS, "ratio_first_last")  # medians over seeds (or over a group's runs): their range is kept
RANGES = tuple(f"{m}_{end}" for m in RANGED for end in ("min", "max"))
RESULT_COLUMNS = ("status", *METRICS, "ratio_first_last_init", "ratio_first_last", *RANGES, "verdict", "wall_s",
                  "steps_done", "n_seeds", "error", "log")


class CompareError(ValueError):
    """A bad path or key: one line for the user."""


def _overrides(run: Path) -> list[str]:
    """The job's command-line overrides (`key=value`), without the keys that only steer the sweep."""
    path = run / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    from omegaconf import OmegaConf

    items = [str(o) for o in OmegaConf.load(path)]
    return [o for o in items if o.split("=", 1)[0].lstrip("+~") not in STEERING and not o.startswith("hydra.")]


def _number(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None  # summary.json keeps inf/nan as strings


def run_row(run: Path) -> dict:
    """One run's row (see the module docstring)."""
    s = load_summary(run)
    config = flat_config(s)
    final, diag, timing = s.get("final") or {}, s.get("diagnosis") or {}, s.get("timing") or {}
    overrides = _overrides(run)
    row = {"run": str(run), "job": run.name, "overrides": ",".join(overrides), **config}
    row.update(
        status=s.get("status"),
        **{m: _number(final.get(m)) for m in METRICS},
        ratio_first_last_init=_number(diag.get("ratio_first_last_init")),
        ratio_first_last=_number(diag.get("ratio_first_last")),
        verdict=diag.get("verdict"),
        wall_s=_number(timing.get("wall_s")),
        steps_done=s.get("steps_done"),
        n_seeds=len(s["seeds"]) if isinstance(s.get("seeds"), list) else 1,
        error=s.get("error"),
        log=s.get("log"),
    )
    row.update(_seed_ranges(s))
    return row


def _seed_ranges(summary: dict) -> dict:
    """`<metric>_min`, `<metric>_max` over a run's seeds (None for a run with one seed)."""
    final_range = summary.get("final_range") or {}
    ratios = [_number(seed.get("ratio_first_last")) for seed in summary.get("seeds") or () if isinstance(seed, dict)]
    ratios = [r for r in ratios if r is not None]
    out = {}
    for m in RANGED:
        lo_hi = [min(ratios), max(ratios)] if m == "ratio_first_last" and ratios else final_range.get(m)
        lo, hi = lo_hi if isinstance(lo_hi, list) and len(lo_hi) == 2 else (None, None)
        out[f"{m}_min"], out[f"{m}_max"] = _number(lo), _number(hi)
    return out


def _matches(value, wanted: str) -> bool:
    a, b = _number(value), _number(wanted)
    if a is not None and b is not None and not isinstance(value, bool):
        return a == b
    return str(value).lower() == wanted.lower() or (value is None and wanted in ("null", "none"))


def resolve_key(frame, key: str, option: str) -> str:
    """`key` as a column of `frame`: itself, or the one dotted key it ends (`lr` -> `optimizer.lr`).
    Raises CompareError naming the candidates, the closest keys and the valid ones."""
    if key in frame.columns:
        return key
    ends = [c for c in frame.columns if c.endswith("." + key)]
    if len(ends) == 1:
        return ends[0]
    if ends:
        raise CompareError(f"{option} {key!r} is ambiguous in these runs: it could be {', '.join(sorted(ends))}")
    valid = sorted(c for c in frame.columns if c not in ("run", *RANGES))
    last = [c.rsplit(".", 1)[-1] for c in valid]
    short = [s for s in dict.fromkeys(last) if last.count(s) == 1 and s not in valid]  # `lr` for optimizer.lr
    close = difflib.get_close_matches(key, valid + short, n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise CompareError(f"{option} {key!r}: no such key in these runs; {hint}expected one of {', '.join(valid)}")


def load_table(paths, where: dict | None = None, by=None):
    """Every run under `paths` (run folders, sweep folders, globs) as one DataFrame, a row per run.

    `where` keeps the runs whose config key equals the value (numbers compared as numbers);
    `by` only checks its keys exist (grouping is `group_table`); keys are read by `resolve_key`.
    A run whose summary cannot be read is left out, and `frame.attrs["skipped"]` maps it to the
    reason. Raises CompareError.
    """
    import pandas as pd

    if isinstance(paths, (str, Path)):
        paths = [paths]
    runs = []
    for p in paths:
        found = find_runs([p])
        if not found:
            raise CompareError(f"no runs (folders holding summary.json) under {str(p)!r}")
        runs.extend(found)
    runs = list(dict.fromkeys(runs))  # a run reached by two paths counts once
    rows, skipped = [], {}
    for r in runs:
        try:
            rows.append(run_row(r))
        except Unreadable as e:  # a truncated or corrupt summary: named, and the rest compared
            skipped[str(r)] = str(e)
    if not rows:
        raise CompareError("no readable runs: " + "; ".join(skipped.values()))
    frame = pd.DataFrame(rows)
    for key, value in (where or {}).items():
        frame = frame[[_matches(v, value) for v in frame[resolve_key(frame, key, "--where")]]]
    for key in by or ():
        resolve_key(frame, key, "--by")
    if frame.empty:
        raise CompareError(f"no runs left after --where {' '.join(f'{k}={v}' for k, v in where.items())}")
    swept = swept_keys(frame)
    frame = frame.sort_values(swept, key=_sort_key, kind="stable") if swept else frame
    frame = frame.reset_index(drop=True)
    frame.attrs["skipped"] = skipped
    return frame


def _order(v) -> tuple:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (2, "")
    if not isinstance(v, (str, bool)) and _number(v) is not None:
        return (0, float(v))
    return (1, str(v))


def _sort_key(col):
    """Numbers in numeric order, then names; None last."""
    return col.map(_order)


def swept_keys(frame) -> list[str]:
    """Keys that vary across the runs, in the order the overrides name them (then the other config keys)."""
    overrides = frame["overrides"] if "overrides" in frame.columns else []
    named = (o.split("=", 1)[0].lstrip("+~") for ov in overrides for o in ov.split(",") if o)
    named = [k for k in dict.fromkeys(named) if k in frame.columns]
    skip = set(RESULT_COLUMNS) | {"run", "job", "overrides"} | {f"{g}.name" for g in GROUPS}
    others = [c for c in frame.columns if c not in skip and c not in named]
    return [k for k in named + others if k not in skip and frame[k].astype(str).nunique() > 1]


def group_table(frame, by: list[str]):
    """A row per group of `by`'s values: `runs`, `status` and `verdict` counted, the median of each
    metric (of the ratios: the geometric median) with `<metric>_min`, `<metric>_max`, the range over
    the group's runs and their seeds (None for a group of one run with one seed), and `wall_s_sum`."""
    import pandas as pd

    rows = []
    for values, g in frame.groupby(by, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        row = {**dict(zip(by, values)), "runs": len(g), "status": _counts(g["status"])}
        for m in (*METRICS, "ratio_first_last_init", "ratio_first_last"):
            row[m] = _geometric_median(_floats(g, m)) if m.startswith("ratio") else _floats(g, m).median()
            lo = pd.concat([_floats(g, m), _floats(g, f"{m}_min")]).min()
            hi = pd.concat([_floats(g, m), _floats(g, f"{m}_max")]).max()
            spread = len(g) > 1 or _floats(g, f"{m}_min").notna().any()
            row[f"{m}_min"], row[f"{m}_max"] = (lo, hi) if spread and pd.notna(lo) else (None, None)
        row.update(verdict=_counts(g["verdict"].dropna()), wall_s_sum=_floats(g, "wall_s").sum())
        rows.append(row)
    return pd.DataFrame(rows).sort_values(by, key=_sort_key, kind="stable").reset_index(drop=True)


def _floats(g, col):
    """A column as floats (None and text as NaN); all NaN where the frame has no such column."""
    import pandas as pd

    if col not in g:
        return pd.Series(float("nan"), index=g.index)
    return pd.to_numeric(g[col], errors="coerce").astype(float)


def _geometric_median(ratio) -> float | None:
    import numpy as np

    ratio = ratio[ratio > 0]
    return float(np.exp(np.median(np.log(ratio)))) if len(ratio) else None


def _counts(col) -> str:
    counts = col.astype(str).value_counts()
    return ", ".join(f"{k}" if len(counts) == 1 else f"{n} {k}" for k, n in counts.items())


