"""Runs and sweeps as one table: a row per run, filtered and grouped by config keys.

    import vgrun
    table = vgrun.load_table("outputs/multirun/**")   # a row per run: config, status, metrics, ratio

The row of a run: `run` (its folder), `job` (the folder name: its overrides in a sweep),
`overrides`, every config key flattened (`depth`, `optimizer.lr`, ...; a group's name is
also under the group's key: `init` = `init.name`), `status`, `train_loss`, `train_acc`,
`test_loss`, `test_acc` (held-out), `ratio_first_last_init` (|delta_first| / |delta_last| at
step 0), `ratio_first_last` (its median over traced steps), `verdict`, `wall_s`, `steps_done`, `n_seeds`, and for failed
or skipped jobs `error` and `log`. The sweep summary at the end of `vgrun -m` is this
same table (`vgrun-compare` prints it).
"""

from __future__ import annotations

import math
from pathlib import Path

from vgrun.config.names import STEERING
from vgrun.io.store import Unreadable, find_runs, load_summary

GROUPS = ("model", "init", "optimizer", "data")  # config groups: `init=he` sets init.name
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
RESULT_COLUMNS = ("status", *METRICS, "ratio_first_last_init", "ratio_first_last", "verdict", "wall_s", "steps_done", "n_seeds", "error", "log")


class CompareError(ValueError):
    """A bad path or key: one line for the user."""


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, list):  # lists (preset claims) are not comparable columns
            out[f"{prefix}{k}"] = v
    return out


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
    config = _flatten(s.get("config") or {})
    for g in GROUPS:
        if f"{g}.name" in config:
            config[g] = config[f"{g}.name"]
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
    return row


def _matches(value, wanted: str) -> bool:
    a, b = _number(value), _number(wanted)
    if a is not None and b is not None and not isinstance(value, bool):
        return a == b
    return str(value).lower() == wanted.lower() or (value is None and wanted in ("null", "none"))


def _check_key(frame, key: str, option: str) -> None:
    if key not in frame.columns:
        valid = sorted(c for c in frame.columns if c not in ("run",))
        raise CompareError(f"{option} {key!r}: no such key in these runs; expected one of {', '.join(valid)}")


def load_table(paths, where: dict | None = None, by=None):
    """Every run under `paths` (run folders, sweep folders, globs) as one DataFrame, a row per run.

    `where` keeps the runs whose config key equals the value (numbers compared as numbers);
    `by` only checks its keys exist (grouping is `group_table`). A run whose summary cannot be
    read is left out, and `frame.attrs["skipped"]` maps it to the reason. Raises CompareError.
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
        _check_key(frame, key, "--where")
        frame = frame[[_matches(v, value) for v in frame[key]]]
    for key in by or ():
        _check_key(frame, key, "--by")
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
    """A row per group: how many runs, statuses, medians of the metrics and of the ratio (geometric), verdicts."""
    import numpy as np
    import pandas as pd

    rows = []
    for values, g in frame.groupby(by, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        def geometric_median(col):
            if col not in g:
                return None
            ratio = g[col].dropna().astype(float)
            ratio = ratio[ratio > 0]
            return float(np.exp(np.median(np.log(ratio)))) if len(ratio) else None

        rows.append({
            **dict(zip(by, values)),
            "runs": len(g),
            "status": _counts(g["status"]),
            **{m: g[m].astype(float).median() for m in METRICS},
            "ratio_first_last_init": geometric_median("ratio_first_last_init"),
            "ratio_first_last": geometric_median("ratio_first_last"),
            "verdict": _counts(g["verdict"].dropna()),
            "wall_s": g["wall_s"].astype(float).sum(),
        })
    return pd.DataFrame(rows).sort_values(by, key=_sort_key, kind="stable").reset_index(drop=True)


def _counts(col) -> str:
    counts = col.astype(str).value_counts()
    return ", ".join(f"{k}" if len(counts) == 1 else f"{n} {k}" for k, n in counts.items())


