"""A run streams what it measured after every chunk (vgrun.io.stream) and resumes from the last
chunk bit-identical to a run never stopped: parameters, optimizer state, PRNG, every record."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from vgrun.api import compose
from vgrun.config import hyper
from vgrun.io import stream
from vgrun.io.stream import Stream
from vgrun.training import loop
from vgrun.training.cache import ProgramCache

CASES = {
    "mlp": ["depth=3", "width=8", "batch_size=16", "steps=40", "chunks=4", "act=tanh", "optimizer=adam",
            "histograms=true"],
    "rnn, two seeds": ["model=rnn", "data=adding", "seq_len=6", "width=8", "batch_size=8", "steps=40", "chunks=4",
                       "seeds=2"],
}


CACHE = ProgramCache(keep=2)  # each case's program compiled once for the module


class Killed(Stream):
    """A stream whose process dies right after chunk `at` is on disk."""

    def __init__(self, run_dir, at: int):
        super().__init__(run_dir)
        self.at = at

    def chunk(self, c, *args):
        super().chunk(c, *args)
        if c == self.at:
            self.close(remove=False)
            raise KeyboardInterrupt


def same(a, b):
    for ra, rb in zip(a, b):
        assert ra.status == rb.status
        np.testing.assert_array_equal(ra.test, rb.test)  # NaN accuracy on a regression task: equal
        for k in ra.metrics:
            np.testing.assert_array_equal(ra.metrics[k], rb.metrics[k], err_msg=k)
        for f in ra.traces._fields:
            np.testing.assert_array_equal(np.asarray(getattr(ra.traces, f)), np.asarray(getattr(rb.traces, f)),
                                          err_msg=f)
        for x, y in zip(*(jax_leaves(r.carry) for r in (ra, rb))):
            np.testing.assert_array_equal(x, y)
        assert (ra.histograms is None) == (rb.histograms is None)
        for q in ra.histograms or {}:  # step 0 and every chunk's end, the resumed run's from the stream
            np.testing.assert_array_equal(ra.histograms[q], rb.histograms[q], err_msg=q)


def jax_leaves(tree):
    import jax

    return [np.asarray(v) for v in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("case", [pytest.param("mlp"), pytest.param("rnn, two seeds", marks=pytest.mark.long)])
def test_a_run_killed_after_a_chunk_resumes_bit_identical(tmp_path, case):
    cfg = compose(CASES[case])
    hps, cache = [hyper.values(cfg)] * cfg.seeds, CACHE
    full = loop.run_members(cfg, hps, cache=cache)
    with pytest.raises(KeyboardInterrupt):
        loop.run_members(cfg, hps, cache=cache, record=Killed(tmp_path, at=1))
    part = stream.load(tmp_path)
    assert part.chunks_done == 2 and len(part.metrics) == 2 and part.status == ["completed"] * cfg.seeds
    assert np.shape(part.metrics[0]["loss"])[-1] == 10  # each chunk's steps, loadable as they were measured
    writer = Stream(tmp_path)
    resumed = loop.run_members(cfg, hps, cache=cache, record=writer, start=part)
    writer.close(remove=False)
    same(full, resumed)
    assert stream.load(tmp_path).chunks_done == 4


def test_an_interrupted_run_resumes_bit_identical(tmp_path):
    cfg = compose(CASES["mlp"])
    hps, cache = [hyper.values(cfg)], CACHE
    full = loop.run_members(cfg, hps, cache=cache)
    chunks = []
    writer = Stream(tmp_path)
    stopped = loop.run_members(cfg, hps, cache=cache, record=writer, on_chunk=lambda c, p, m: chunks.append(c),
                               should_stop=lambda: len(chunks) >= 3)
    writer.close(remove=False)
    assert stopped[0].status == "interrupted" and len(stopped[0].metrics["loss"]) == 30
    part = stream.load(tmp_path)
    assert part.chunks_done == 3 and part.status == ["interrupted"]
    resumed = loop.run_members(cfg, hps, cache=cache, record=Stream(tmp_path), start=part)
    same(full, resumed)


def test_a_failed_write_reaches_the_training_loop(tmp_path):
    """A full disk: the stream's error stops the run at the next chunk, not silently."""
    cfg = compose(CASES["mlp"])

    class Full(Stream):
        def _write(self, *args):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        loop.run_members(cfg, [hyper.values(cfg)], record=Full(tmp_path), cache=CACHE)


def test_resume_needs_a_run_that_stopped(tmp_path):
    from vgrun.cli.main import resume_run
    from vgrun.config.schema import ConfigError

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "completed"}))
    (run / ".hydra" / "overrides.yaml").write_text("- depth=3\n- hydra.run.dir=x\n")
    with pytest.raises(ConfigError, match="stopped before its end"):
        resume_run([f"resume={run}"])
    with pytest.raises(ConfigError, match="alone"):
        resume_run([f"resume={run}", "depth=4"])
    (run / "partial").mkdir()
    (run / "partial" / "state.npz").write_bytes(b"")
    assert resume_run([f"resume={run}"]) == ["depth=3", f"hydra.run.dir='{run}'", f"resume='{run}'"]
    job = tmp_path / "act=relu,depth=3"  # a sweep job's folder: its name must reach Hydra as one value
    job.mkdir()
    for f in ("summary.json", ".hydra", "partial"):
        (run / f).rename(job / f)
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(resume_run([f"resume={job}"]))
    assert [o.value() for o in parsed[1:]] == [str(job), str(job)]
    assert resume_run(["-m", f"resume={run}"]) == ["-m", f"resume={run}"]  # a sweep's: checked elsewhere


@pytest.mark.long
def test_sigkill_keeps_every_finished_chunk_and_resume_finishes_it(tmp_path):
    """The command line: SIGKILL mid-run leaves a killed record and the chunks so far; `vgrun
    resume=<run>` finishes the run, its tables equal to a run never stopped."""
    import pandas as pd

    from vgrun.io.store import load_summary

    args = ["depth=4", "width=64", "batch_size=64", "steps=3000", "chunks=30", "act=tanh"]
    cmd = [sys.executable, "-m", "vgrun.cli.main", *args]
    whole = subprocess.run([*cmd, "hydra.run.dir=whole"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    p = subprocess.Popen([*cmd, "hydra.run.dir=cut"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    run = tmp_path / "cut"
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and p.poll() is None:
        try:
            with np.load(run / "partial" / "state.npz") as s:
                done = int(s["chunks_done"])
        except (OSError, ValueError, KeyError):
            pass
        if done >= 3:
            os.kill(p.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    p.wait(timeout=30)
    assert 3 <= done < 30 and p.returncode == -signal.SIGKILL
    assert load_summary(run)["status"] == "killed"
    part = stream.load(run)
    assert part.chunks_done >= done and sum(len(m["loss"]) for m in part.metrics) == 100 * part.chunks_done
    r = subprocess.run([sys.executable, "-m", "vgrun.cli.main", f"resume={run}"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert load_summary(run)["status"] == "completed" and not (run / "partial").exists()
    for table in ("steps", "traces"):
        a, b = (pd.read_parquet(tmp_path / f / f"{table}.parquet") for f in ("whole", "cut"))
        pd.testing.assert_frame_equal(a, b)
