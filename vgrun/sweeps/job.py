"""One job of a run or a sweep, seen from inside: skip it (resume, fail-fast) or record its failure.

A job that raises anything is a result too: its summary.json says `failed` with the error
and the log path, the traceback goes to the job's log file (never to the terminal), and
the sweep goes on. With `fail_fast=true` the first failure leaves a marker in the sweep
folder and every later job is skipped (status `skipped`); the marker is cleared when the
sweep is started again (`SweepSummary.on_multirun_start`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from vgrun.config.names import STEERING
from vgrun.io import store

INTERRUPTED_SKIP = "the sweep was interrupted (SIGINT / SIGTERM) before this job started"
RESULTS = ("completed", "diverged")  # statuses a resumed sweep keeps: a diverged run is a result
STOP = ".vgrun_stop"  # fail_fast marker in the sweep folder: holds the failed job's folder

log = logging.getLogger("vgrun")


@dataclass
class Job:
    run_dir: Path
    multirun: bool
    sweep_dir: Path | None  # multirun only

    @staticmethod
    def current() -> Job:
        """The job Hydra is running now (its folder, and the sweep folder in a multirun)."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return Job(Path(hc.runtime.output_dir), multirun, Path(hc.sweep.dir) if multirun else None)

    def log_path(self) -> str:
        """The job's log file (Hydra's file handler), where the traceback of a failure goes."""
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.FileHandler):
                return h.baseFilename
        return str(self.run_dir / "cli.log")

    def skip_reason(self, config: dict) -> str | None:
        """Why this job should not run: resumed and already a result, or the sweep stopped at a failure."""
        if not self.multirun:
            return None
        if config.get("resume"):
            previous = read_summary(self.run_dir)
            if previous.get("status") in RESULTS:
                broken = store.intact(self.run_dir, tables=_tables(config))
                if broken:
                    log.info("resume: %s; running again", broken)
                elif _same(previous.get("config", {}), config):
                    return f"{previous['status']} in an earlier run of this sweep (resume)"
                else:
                    log.info("resume: the config differs from the earlier run; running again")
        stop = self.sweep_dir / STOP if self.sweep_dir else None
        if stop is not None and stop.exists():
            return f"fail_fast: the sweep stopped after {stop.read_text().strip()} failed"
        return None

    def skipped(self, reason: str, config: dict) -> None:
        """Record a job the sweep skipped because it stopped (fail_fast, or interrupted); a kept result
        is left as it is."""
        if reason.startswith("fail_fast") or reason == INTERRUPTED_SKIP:
            store.write_summary(self.run_dir, {"status": "skipped", "error": reason, "config": config})

    def failed(self, exc: BaseException, config: dict | None, fail_fast: bool) -> str:
        """Write status `failed`, log the traceback to the job's log file only; return the one-line message."""
        path = self.log_path()
        message = _one_line(exc)
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "job failed: %s", (message,),
                                (type(exc), exc, exc.__traceback__))
        for h in logging.getLogger().handlers:  # the file only: the terminal gets one line
            if isinstance(h, logging.FileHandler):
                h.handle(record)
        summary = read_summary(self.run_dir)
        if config is not None:
            summary["config"] = config
        summary.update(status="failed", error=message, log=path)
        try:
            store.write_summary(self.run_dir, summary)
        except OSError as e:  # the disk that failed the job (full, read-only): the files written stay as they are
            message += f"; its summary could not be marked failed ({e.strerror or e})"
        if fail_fast and self.sweep_dir is not None:
            stop_sweep(self.sweep_dir, self.run_dir)
        return message


def _tables(config: dict) -> tuple:
    """The tables a finished job of this config wrote (model=doya writes none)."""
    return () if (config.get("model") or {}).get("name") == "doya" else ("traces", "steps")


def _one_line(exc: BaseException) -> str:
    """The failure in one line; a disk's fault (full, read-only, over quota) said as such."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EIO):
        return (f"writing the run folder failed: {os.strerror(exc.errno)} ({exc.filename or 'a file of the run'}); "
                "the files written before stay")
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0] if str(exc) else type(exc).__name__


def stop_sweep(sweep_dir: Path, failed_run_dir: Path) -> None:
    """fail_fast: leave the marker that makes every later job of the sweep skip itself."""
    store.atomic_write(sweep_dir / STOP, lambda p: p.write_text(failed_run_dir.name + "\n"))


def read_summary(run_dir: Path) -> dict:
    """The job's summary.json, or {} where there is none yet (or it cannot be read)."""
    try:
        return store.load_summary(run_dir)
    except (OSError, ValueError):
        return {}


def _same(old: dict, new: dict) -> bool:
    """Two configs compute the same job: equal up to the keys that only steer the sweep, and the
    data's sizes a finished run records (`vgrun.io.provenance.config_dict`)."""
    measured = ("n_in", "n_out", "seq_steps")

    def strip(d):
        d = {k: v for k, v in store._json_clean(d).items() if k not in STEERING}
        if isinstance(d.get("data"), dict):
            d["data"] = {k: v for k, v in d["data"].items() if k not in measured}
        return d

    return strip(old) == strip(new)
