"""The run folder: written atomically, loaded as pandas DataFrames.

    <run>/.hydra/          the composed config (Hydra)
    <run>/summary.json     status, timings, final metrics, diagnosis
    <run>/traces.parquet   one row per traced step x layer, plus the key config columns
    <run>/steps.parquet    one row per step (loss, accuracy, held-out metrics, grad norm)
    <run>/gradient_flow.png

Parquet because it is columnar, typed, compressed and read by everything (pandas,
polars, DuckDB, R's arrow); the config columns make many runs concatenate into one
tidy DataFrame. Every file goes to a temporary name first and is renamed into place,
so a reader never sees half a file.
"""

from __future__ import annotations

import glob as globlib
import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

CONFIG_COLUMNS = ("model", "depth", "width", "act", "init", "norm", "optimizer", "lr", "data", "dtype", "seed",
                  "batch_size", "seq_len", "clip_norm")


def config_columns(cfg) -> dict:
    return {
        "model": cfg.model.name,
        "depth": cfg.depth,
        "width": cfg.width,
        "act": cfg.act,
        "init": cfg.init.name,
        "norm": cfg.norm,
        "optimizer": cfg.optimizer.name,
        "lr": cfg.optimizer.lr,
        "data": cfg.data.name,
        "dtype": cfg.dtype,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "clip_norm": cfg.optimizer.clip_norm,
    }


def atomic_write(path: Path, write) -> None:
    """write(tmp_path) then rename onto path (atomic on POSIX within one filesystem)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _json_clean(x):
    if isinstance(x, dict):
        return {k: _json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else str(x)  # JSON has no inf/nan: "inf", "nan"
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_summary(run_dir, summary: dict) -> None:
    text = json.dumps(_json_clean(summary), indent=2)
    atomic_write(Path(run_dir) / "summary.json", lambda p: p.write_text(text + "\n"))


def traces_frame(cfg, traces, every: int):
    import pandas as pd

    from vgrun.traces import TRACE_FIELDS

    n_steps, n_layers = np.shape(traces.delta)
    frame = pd.DataFrame(
        {
            "step": np.repeat(np.arange(n_steps) * every, n_layers),
            "layer": np.tile(np.arange(n_layers), n_steps),
            "is_output": np.tile(np.arange(n_layers) == n_layers - 1, n_steps),
            **{f: np.asarray(getattr(traces, f)).reshape(-1).astype(np.float64) for f in TRACE_FIELDS},
        }
    )
    for k, v in config_columns(cfg).items():
        frame[k] = v
    return frame


def steps_frame(cfg, metrics: dict):
    import pandas as pd

    frame = pd.DataFrame({k: np.asarray(v, np.float64) for k, v in metrics.items()})
    frame.insert(0, "step", np.arange(len(frame)))
    for k, v in config_columns(cfg).items():
        frame[k] = v
    return frame


def write_tables(run_dir, cfg, metrics: dict, traces, recurrent: bool = False, pretrain=None) -> None:
    """traces.parquet (feed-forward: step x layer; recurrent: step x layer x time step),
    layers.parquet (recurrent: step x layer weight statistics), steps.parquet."""
    write_frames(run_dir, run_frames(cfg, metrics, traces, recurrent, pretrain))


def write_frames(run_dir, tables: dict) -> None:
    """name -> DataFrame, each to <run_dir>/<name>.parquet, atomically."""
    for name, frame in tables.items():
        atomic_write(Path(run_dir) / f"{name}.parquet", lambda p, f=frame: f.to_parquet(p, index=False))


def run_frames(cfg, metrics: dict, traces, recurrent: bool = False, pretrain=None) -> dict:
    """The tables of one run (or of one seed: the `seed` column tells them apart) by name.

    Every row has a `phase`: "train", or with pretraining (`pretrain`, a PretrainLog)
    "pretrain" (its rows first, at negative steps) and "finetune"."""
    if recurrent:
        from vgrun.temporal import frames

        time, layers = frames(cfg, traces, cfg.trace_every, config_columns(cfg))
        tables = {"traces": time, "layers": layers}
    else:
        tables = {"traces": traces_frame(cfg, traces, cfg.trace_every)}
    tables["steps"] = steps_frame(cfg, metrics)
    for frame in tables.values():
        frame["phase"] = "train" if pretrain is None else "finetune"
    if pretrain is not None:
        import pandas as pd

        from vgrun.pretrain import frames

        pre = dict(zip(("traces", "steps"), frames(cfg, pretrain, config_columns(cfg))))
        for name, rows in pre.items():
            tables[name] = pd.concat([rows, tables[name]], ignore_index=True)
    return tables


def load_summary(path) -> dict:
    return json.loads((Path(path) / "summary.json").read_text())


def load_run(path, table: str = "traces"):
    """One run's `traces` (step x layer) or `steps` table, with run, status and verdict columns."""
    import pandas as pd

    path = Path(path)
    frame = pd.read_parquet(path / f"{table}.parquet")
    summary = load_summary(path)
    frame["run"] = str(path)
    frame["status"] = summary.get("status")
    frame["verdict"] = summary.get("diagnosis", {}).get("verdict")
    return frame


def find_runs(paths) -> list[Path]:
    """Run folders (those holding summary.json) under the given paths or glob patterns."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in paths:
        for match in sorted(globlib.glob(str(p))) or [str(p)]:
            m = Path(match)
            if (m / "summary.json").exists():
                found.append(m)
            elif m.is_dir():
                found.extend(sorted(s.parent for s in m.rglob("summary.json")))
    return found


def load_runs(paths, table: str = "traces"):
    """Every run under `paths` (folders, sweep folders or globs) as one DataFrame."""
    import pandas as pd

    runs = [r for r in find_runs(paths) if (r / f"{table}.parquet").exists()]
    if not runs:
        raise FileNotFoundError(f"no runs with {table}.parquet under {paths}")
    return pd.concat([load_run(r, table) for r in runs], ignore_index=True)


def config_dict(cfg) -> dict:
    return asdict(cfg)
