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
from pathlib import Path

import numpy as np

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


def write_frames(run_dir, tables: dict) -> None:
    """name -> DataFrame, each to <run_dir>/<name>.parquet, atomically."""
    for name, frame in tables.items():
        atomic_write(Path(run_dir) / f"{name}.parquet", lambda p, f=frame: f.to_parquet(p, index=False))


def process() -> dict:
    """Who writes a "running" record: pid, host and the process's start time (Linux: clock ticks
    since boot, so a later process given the same pid is not taken for it; else None)."""
    import socket

    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid())}


def _start_time(pid: int):
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _gone(proc: dict) -> bool:
    """The recorded process has ended: same host, and its pid is free or now another process's."""
    import socket

    if proc.get("host") != socket.gethostname() or not isinstance(proc.get("pid"), int):
        return False  # another machine's process: nothing to tell from here
    try:
        os.kill(proc["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        pass
    start = _start_time(proc["pid"])
    return proc.get("start") is not None and start is not None and start != proc["start"]


class Unreadable(ValueError):
    """A run's file that exists but cannot be read (truncated, corrupt): named, so the run is skipped."""

    def __init__(self, path, exc: BaseException):
        self.path = Path(path)
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        super().__init__(f"{self.path} cannot be read ({type(exc).__name__}: {why})")


def load_summary(path) -> dict:
    """A run's summary.json. A "running" record whose process is gone (its pid and host, see
    `process`) is reported as status "killed", with `killed` saying why: the process died
    without a word (SIGKILL, out of memory, power cut); what it wrote before is kept.
    Raises Unreadable for a summary that is not valid JSON (FileNotFoundError where there is none)."""
    file = Path(path) / "summary.json"
    text = file.read_text(errors="replace")
    try:
        summary = json.loads(text)
    except ValueError as e:
        raise Unreadable(file, e) from None
    if not isinstance(summary, dict):
        raise Unreadable(file, ValueError("not a JSON object"))
    proc = summary.get("process") or {}
    if summary.get("status") == "running" and _gone(proc):
        summary["status"] = "killed"
        summary["killed"] = f"the running process (pid {proc['pid']} on {proc['host']}) is gone"
    return summary


GROUPS = ("model", "init", "optimizer", "data")  # config groups: `init=he` sets init.name


def flat_config(summary: dict) -> dict:
    """A run's config as flat columns: `depth`, `optimizer.lr`, `init.sigma_w`, ...; a group's name is also
    under the group's key (`init` = `init.name`). Lists (a preset's claims) are left out: not comparable."""
    from vgrun.config.hyper import flatten

    config = {k: v for k, v in flatten(summary.get("config") or {}).items() if not isinstance(v, list)}
    for group in GROUPS:
        if f"{group}.name" in config:
            config[group] = config[f"{group}.name"]
    return config


def _read(path, table: str):
    """(the run's `table` as a DataFrame with run, status and verdict columns, its summary)."""
    import pandas as pd

    path = Path(path)
    file = path / f"{table}.parquet"
    if not file.exists():
        raise FileNotFoundError(f"{file}: no such file")
    try:
        frame = pd.read_parquet(file)
    except (OSError, ValueError) as e:  # a truncated or corrupt file (pyarrow's ArrowInvalid is a ValueError)
        raise Unreadable(file, e) from None
    summary = load_summary(path)
    frame["run"] = str(path)
    frame["status"] = summary.get("status")
    frame["verdict"] = summary.get("diagnosis", {}).get("verdict")
    return frame, summary


def load_run(path, table: str = "traces"):
    """One run's `traces` (step x layer) or `steps` table, with run, status and verdict columns."""
    return _read(path, table)[0]


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


def intact(run_dir, tables=("traces", "steps")) -> str | None:
    """Why a finished run's tables are not whole (missing or unreadable), or None: the Parquet
    footers are read, not the data. (Its summary the caller has read already.)"""
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    for name in tables:
        file = run_dir / f"{name}.parquet"
        if not file.exists():
            return f"{file} is missing"
        try:
            pq.ParquetFile(file).metadata
        except (OSError, ValueError) as e:
            return str(Unreadable(file, e))
    return None


def load_runs(paths, table: str = "traces"):
    """Every run under `paths` (folders, sweep folders or globs) as one DataFrame. Every config key
    whose value differs between the runs (`init.sigma_w` in a sweep over it) is a column, named as in
    `vgrun.load_table`, beside the columns each table already holds (`depth`, `act`, `lr`, ...).
    A run whose files cannot be read is skipped; `frame.attrs["skipped"]` maps it to the reason."""
    import pandas as pd

    runs = [r for r in find_runs(paths) if (r / f"{table}.parquet").exists()]
    read, skipped = [], {}
    for r in runs:
        try:
            frame, summary = _read(r, table)
        except Unreadable as e:
            skipped[str(r)] = str(e)
            continue
        read.append((frame, flat_config(summary)))
    if not read:
        raise FileNotFoundError(f"no readable runs with {table}.parquet under {paths}"
                                + (f" ({len(skipped)} unreadable: {next(iter(skipped.values()))})" if skipped else ""))
    configs = [config for _, config in read]
    keys = dict.fromkeys(k for config in configs for k in config)
    differ = [k for k in keys if len({repr(config.get(k)) for config in configs}) > 1]
    for frame, config in read:
        for k in differ:
            if k not in frame.columns:  # the table's own column (seed: each seed's own) wins
                frame[k] = config.get(k)  # None where a run has no such key (an MLP has no model.res_scale)
    frame = pd.concat([f for f, _ in read], ignore_index=True)
    frame.attrs["skipped"] = skipped
    return frame


def config_dict(cfg, problem=None) -> dict:
    """The config as a run folder stores it: what applies to the run (`vgrun.io.provenance.config_dict`)."""
    from vgrun.io.provenance import config_dict as applying

    return applying(cfg, problem)
