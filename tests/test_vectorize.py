"""Vmapped programs (seeds=N, vectorized sweeps) give every member what it would get alone."""

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import vgrun
from vgrun.config import hyper
import programs
from vgrun.config.schema import Config

BASE = Config(depth=3, width=16, steps=40, chunks=2, batch_size=32)


def variant(cfg, **groups):
    """cfg with fields replaced, e.g. variant(cfg, seed=1, optimizer={"lr": 0.1})."""
    top = {k: v for k, v in groups.items() if not isinstance(v, dict)}
    nested = {k: dataclasses.replace(getattr(cfg, k), **v) for k, v in groups.items() if isinstance(v, dict)}
    return dataclasses.replace(cfg, **top, **nested)


def together(cfgs):
    return programs.run_members(cfgs[0], [hyper.values(c) for c in cfgs],
                                keys=[jax.random.PRNGKey(c.seed) for c in cfgs])


def assert_same(a, b, rtol=1e-4):
    assert a.status == b.status
    assert len(a.metrics["loss"]) == len(b.metrics["loss"])
    np.testing.assert_allclose(a.metrics["loss"], b.metrics["loss"], rtol=rtol)
    for field in a.traces._fields:  # atol: a gradient that is zero up to rounding (a bias before a norm) is noise
        x, y = getattr(a.traces, field), getattr(b.traces, field)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.nanmax(np.abs(y)), err_msg=field)
    # held-out after all steps: rounding differences of a batched matmul may grow over training
    np.testing.assert_allclose(a.test[0], b.test[0], rtol=10 * rtol)
    # accuracy (NaN for regression): at most a couple of held-out examples flip
    assert np.isnan(a.test[1]) == np.isnan(b.test[1])
    assert np.isnan(b.test[1]) or abs(a.test[1] - b.test[1]) <= 0.005


def test_signature_masks_vector_keys_only():
    same = [variant(BASE, seed=3), variant(BASE, optimizer={"lr": 0.5, "clip_norm": None}),
            variant(BASE, init={"gain": 2.0, "sigma_b": 0.1})]
    assert {hyper.signature(c) for c in same} == {hyper.signature(BASE)}
    assert hyper.signature(variant(BASE, depth=4)) != hyper.signature(BASE)
    assert hyper.signature(variant(BASE, act="relu")) != hyper.signature(BASE)
    # whether an optional value is set selects a code path: a different program
    assert hyper.signature(variant(BASE, init={"std": 0.1})) != hyper.signature(BASE)
    assert hyper.signature(variant(BASE, init={"std": 0.1})) == hyper.signature(variant(BASE, init={"std": 0.3}))


# not batchnorm with adam: the bias before a batchnorm gets a gradient of pure rounding noise, which adam
# scales up to full steps, so any change of summation order (a batched matmul) moves it: not a test of vmap
@pytest.mark.parametrize("extra", [{}, {"norm": "batchnorm", "optimizer": {"name": "momentum"}},
                                   {"norm": "layernorm", "optimizer": {"name": "adam", "lr": 0.003}}])
@pytest.mark.long  # run by .ci/run after the fast suite
def test_members_equal_their_runs_alone(extra):
    base = variant(variant(BASE, **extra), optimizer={"clip_norm": 10.0})
    lr = base.optimizer.lr
    cfgs = [variant(base, seed=0), variant(base, seed=1, optimizer={"lr": 3 * lr}),
            variant(base, seed=2, init={"gain": 0.5, "sigma_b": 0.05}, optimizer={"clip_norm": 0.1})]
    for member, cfg in zip(together(cfgs), cfgs):
        assert_same(member, programs.run(cfg))


def test_members_must_share_the_program():
    with pytest.raises(ValueError, match="clip_norm"):
        together([BASE, variant(BASE, optimizer={"clip_norm": 1.0})])


def test_a_diverging_member_stops_alone_and_the_others_go_on():
    cfgs = [variant(BASE, chunks=4, act="relu"), variant(BASE, chunks=4, act="relu", optimizer={"lr": 1e20})]
    ok, bad = together(cfgs)
    alone = programs.run(cfgs[1])
    assert alone.status == bad.status == "diverged"
    assert len(bad.metrics["loss"]) == len(alone.metrics["loss"]) < BASE.steps
    assert ok.status == "completed" and len(ok.metrics["loss"]) == BASE.steps
    assert_same(ok, programs.run(cfgs[0]))


@pytest.mark.long  # run by .ci/run after the fast suite
def test_recurrent_members_equal_their_runs_alone():
    base = Config(depth=1, width=8, steps=20, chunks=2, batch_size=16, seq_len=12)
    base = variant(base, model={"name": "rnn"}, data={"name": "adding"})
    cfgs = [variant(base, seed=0), variant(base, seed=5, model={"rec_gain": 1.5})]
    for member, cfg in zip(together(cfgs), cfgs):
        assert_same(member, programs.run(cfg), rtol=1e-3)


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "vgrun.cli.main", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


SMALL = ["depth=3", "width=16", "steps=40", "chunks=2", "batch_size=32"]


@pytest.mark.long  # run by .ci/run after the fast suite
def test_seeds_run_as_one_program_with_a_seed_column(tmp_path):
    r = cli(*SMALL, "seeds=3", "seed=4", "hydra.run.dir=run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    traces = vgrun.load_run(tmp_path / "run")
    assert sorted(traces.seed.unique()) == [4, 5, 6]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [4, 5, 6]
    assert summary["timing"]["members"] == 3
    # seed 5 of the group is seed 5 alone
    alone = programs.run(variant(BASE, seed=5))
    rows = traces[traces.seed == 5].sort_values(["step", "layer"])
    np.testing.assert_allclose(rows.delta.to_numpy(), alone.traces.delta.reshape(-1), rtol=1e-4)
    # the summary's final metrics are the median over seeds
    finals = [s["test_acc"] for s in summary["seeds"]]
    assert summary["final"]["test_acc"] == pytest.approx(float(np.median(finals)))


@pytest.mark.long  # run by .ci/run after the fast suite
def test_vectorized_sweep_writes_every_job_as_if_alone(tmp_path):
    sweep = ["-m", *SMALL, "optimizer.lr=0.01,0.1", "seed=0,1"]
    vec = cli(*sweep, "hydra/launcher=vectorized", "hydra.sweep.dir=vec", cwd=tmp_path)
    assert vec.returncode == 0, vec.stderr
    assert "4 of them in 1 vectorized groups" in vec.stderr + vec.stdout
    seq = cli(*sweep, "hydra.sweep.dir=seq", cwd=tmp_path)
    assert seq.returncode == 0, seq.stderr
    jobs = sorted(p.name for p in (tmp_path / "seq").iterdir() if (p / "summary.json").exists())
    assert len(jobs) == 4
    for job in jobs:
        a, b = (json.loads((tmp_path / d / job / "summary.json").read_text()) for d in ("vec", "seq"))
        assert a["timing"]["members"] == 4 and b["timing"]["members"] == 1
        assert a["config"] == b["config"] and a["status"] == b["status"] == "completed"
        np.testing.assert_allclose(a["final"]["test_loss"], b["final"]["test_loss"], rtol=1e-4)
        ta, tb = vgrun.load_run(tmp_path / "vec" / job), vgrun.load_run(tmp_path / "seq" / job)
        assert list(ta.columns) == list(tb.columns)
        np.testing.assert_allclose(ta.delta, tb.delta, rtol=1e-4)
        assert sorted(p.name for p in (tmp_path / "vec" / job).iterdir()) == \
            sorted(p.name for p in (tmp_path / "seq" / job).iterdir())


@pytest.mark.long  # run by .ci/run after the fast suite
def test_a_member_differs_from_its_lone_run_by_float_rounding_at_first():
    """Not bit-identical: a vmapped program of four or more members sums in another order (XLA's
    batched matmul), so the traces differ by float32 rounding at step 0 and the loss a little later;
    the bound below is what the README states."""
    base = Config(depth=10, width=128, steps=20, chunks=1, act="relu")
    cfgs = [variant(base, optimizer={"lr": lr}) for lr in (0.1, 0.01, 0.03, 0.3)]
    member, alone = together(cfgs)[0], programs.run(cfgs[0])
    for field in ("delta", "grad_w"):
        x, y = np.asarray(getattr(member.traces, field))[0], np.asarray(getattr(alone.traces, field))[0]
        assert np.max(np.abs(x - y) / np.abs(y)) <= 1e-6, field
    np.testing.assert_allclose(member.metrics["loss"], alone.metrics["loss"], rtol=1e-5)
