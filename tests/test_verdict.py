"""The diagnosis's logic on synthetic traces: each textbook case judged as a student would judge it."""

import math

import numpy as np
import pytest

from vgrun.config.schema import Config, DiagnosisConfig
from vgrun.io.record import _median_final
from vgrun.probes.layers import TRACE_FIELDS, Trace
from vgrun.probes.time import TimeTrace
from vgrun.science import verdict as v

DEPTH, EVERY = 6, 10


def traces(delta, stream=None, **fields) -> Trace:
    """A feed-forward Trace [S, DEPTH + 1] with the given delta (and stream); other fields 1."""
    delta = np.asarray(delta, np.float64)
    ones = np.ones_like(delta)
    stream = np.full_like(delta, np.nan) if stream is None else np.asarray(stream, np.float64)
    return Trace(**{f: fields.get(f, ones) for f in TRACE_FIELDS if f not in ("delta", "stream")},
                 delta=delta, stream=stream)


def geometric(first_over_last, steps):
    """delta [steps, DEPTH + 1] falling geometrically from the last hidden layer to the first."""
    per = first_over_last ** (1 / (DEPTH - 1))
    row = np.array([per ** (DEPTH - 1 - l) for l in range(DEPTH)] + [1.0])
    return np.tile(row, (steps, 1))


def metrics(loss):
    loss = np.asarray(loss, np.float64)
    return {"loss": loss, "acc": np.full_like(loss, np.nan), "grad_norm": np.ones_like(loss)}


def diagnose(delta, loss, baseline=2.3, status="completed", model="mlp", **kw):
    cfg = Config(depth=DEPTH, trace_every=EVERY, steps=len(loss))
    cfg.model.name = model
    return v.diagnose(cfg, metrics(loss), traces(delta, **kw), status, baseline, test=(math.nan, 0.1))


def test_vanishing_at_initialization_that_recovers_but_never_learns_is_vanishing():
    """He et al. 2015's xavier arm: 3e-5 at step 0, in the band later, the loss at chance."""
    delta = geometric(3e-5, 20)
    delta[5:] = geometric(2e-2, 15)
    d = diagnose(delta, np.full(200, 2.28))
    assert d["verdict"] == "vanishing"
    assert d["gradient"]["init"] == "vanishing" and d["gradient"]["training"] == "healthy"
    assert d["gradient"]["recovered_step"] == 5 * EVERY
    assert d["learning"]["outcome"] == "stalled"
    assert d["headline"].startswith("VANISHING at initialization (3.0e-05 over 5 layers), recovered by step 50")
    assert "stalled at chance" in d["headline"]


def test_a_spike_at_the_end_is_no_recovery():
    delta = geometric(3e-5, 20)
    delta[5:19] = geometric(2e-2, 14)
    d = diagnose(delta, np.full(200, 2.28))
    assert d["gradient"]["recovered_step"] is None  # the last traced step is back below the band


def test_healthy_gradient_and_learned_is_healthy():
    d = diagnose(geometric(0.5, 20), np.linspace(2.3, 0.1, 200))
    assert d["verdict"] == "healthy" and d["learning"]["outcome"] == "learned"
    assert d["headline"].startswith("HEALTHY: healthy gradient at initialization (0.5")


def test_finite_but_not_learning_is_its_own_outcome():
    """The symptom of a clipped RNN that stays finite without learning (rho 3, clipped at 1: the loss
    rose from 2.6 to 3.5 against a baseline of 0.167), on a feed-forward trace with healthy ratios."""
    d = diagnose(geometric(0.5, 20), np.linspace(2.6, 3.5, 200), baseline=0.167)
    assert d["verdict"] == "not learning"
    assert d["learning"]["outcome"] == "stalled" and d["learning"]["final_over_baseline"] > 20
    assert d["headline"].startswith("NOT LEARNING: healthy gradient at initialization")
    assert "did not learn (2.6 -> 3.48, 20.8x the constant prediction's loss)" in d["headline"]


def test_a_loss_that_falls_but_stays_above_the_baseline_has_not_learned():
    d = diagnose(geometric(0.5, 20), np.linspace(10.0, 2.2, 200), baseline=2.3)
    assert d["learning"]["outcome"] == "stalled" and d["verdict"] == "not learning"


def test_a_diverged_run_says_at_which_step_and_what_went_first():
    delta = geometric(0.5, 10)
    delta[7:, 3] = np.inf  # traced step 7 = step 70: the gradient at layer 3 overflows first
    loss = np.linspace(2.3, 1.0, 90)
    loss[72:] = np.nan  # the loss follows two steps later
    d = diagnose(delta, loss, status="diverged")
    assert d["verdict"] == "diverged" and d["learning"]["outcome"] == "diverged"
    assert d["first_nonfinite"] == {"step": 70, "what": "delta", "index": 3}
    assert d["headline"].startswith("DIVERGED at step 70: delta (layer 3) went non-finite first")


def test_the_loss_first_when_it_goes_before_the_gradient():
    delta = geometric(0.5, 10)
    delta[8:] = np.nan
    loss = np.linspace(2.3, 1.0, 90)
    loss[74:] = np.inf
    d = diagnose(delta, loss, status="diverged")
    assert d["first_nonfinite"]["step"] == 74 and d["first_nonfinite"]["what"] == "loss"


def test_a_residual_network_is_judged_on_its_stream_and_a_dead_branch_is_not_exploding():
    """He et al. 2016's residual-20 in miniature: the last block's branch died (|dL/dz| ~ 1e-16),
    so the branch ratio is ~1e15; the stream's ratio is healthy."""
    delta = geometric(0.5, 20)
    delta[:, DEPTH - 1] = 1e-16
    stream = geometric(0.8, 20)
    branch = diagnose(delta, np.linspace(2.3, 0.05, 200), model="resmlp")  # no stream traced: on delta
    assert branch["verdict"] == "exploding" and branch["basis"] == "delta"
    d = diagnose(delta, np.linspace(2.3, 0.05, 200), model="resmlp", stream=stream)
    assert d["basis"] == "stream" and d["verdict"] == "healthy"
    assert d["ratio_first_last"] == pytest.approx(0.8)
    dead = d["dead_branches"]
    assert dead["final"] == [DEPTH - 1] and dead["share_final"] == pytest.approx(1 / (DEPTH - 1))


@pytest.mark.parametrize("r,word", [(0.0, "vanishing"), (math.inf, "exploding"), (math.nan, "vanishing"),
                                    (9.99e-3, "vanishing"), (1e-2, "healthy"), (100.0, "healthy"),
                                    (100.01, "exploding")])
def test_the_band(r, word):
    assert v.band(r, DiagnosisConfig()) == word


def test_thresholds_are_the_config_s():
    dcfg = DiagnosisConfig(vanish_ratio=1e-6, explode_ratio=1e6)
    assert v.band(1e-5, dcfg) == "healthy" and v.band(1e-7, dcfg) == "vanishing"
    d = diagnose(geometric(1e-5, 20), np.linspace(2.3, 0.1, 200))
    assert d["verdict"] == "vanishing" and d["thresholds"]["vanish_ratio"] == 1e-2


def test_recurrent_runs_are_judged_against_their_baseline():
    S, T = 5, 8
    delta = np.tile(0.6 ** np.arange(T)[::-1], (S, 1, 1))  # [S, layers=1, T]: |delta_0| / |delta_T-1| = 0.6^7
    tr = TimeTrace(**{f: np.ones((S, 1)) for f in TimeTrace._fields if f not in ("delta", "jacobian")},
                   delta=delta, jacobian=np.ones((S, 1, T)))
    cfg = Config(depth=1, trace_every=EVERY, steps=50)
    cfg.model.name = "rnn"
    d = v.diagnose_time(cfg, metrics(np.linspace(2.6, 3.5, 50)), tr, "completed", 0.167)
    assert d["verdict"] == "not learning" and d["learning"]["baseline_loss"] == 0.167
    assert "over 7 time steps" in d["headline"]


class _Res:
    def __init__(self, loss, acc, test):
        self.metrics = {"loss": np.asarray(loss, np.float64), "acc": np.asarray(acc, np.float64)}
        self.test = test


def test_seeds_final_metrics_are_the_median_of_the_seeds_finals():
    """The issue's case: per-seed final accuracies 0.983, 0.857, 0.939; their median is 0.939, while
    the tail of the median curve need not be any seed's."""
    runs = [_Res(np.full(100, l), np.r_[np.full(95, 0.5), np.full(5, a)], (l, a))
            for l, a in ((0.1, 0.983), (0.4, 0.857), (0.2, 0.939))]
    final, spread = _median_final(runs)
    assert final["train_acc"] == pytest.approx(0.939) and final["test_acc"] == pytest.approx(0.939)
    assert final["train_loss"] == pytest.approx(0.2)
    assert spread["train_acc"] == pytest.approx([0.857, 0.983])
    one, none = _median_final(runs[:1])
    assert none is None and one["test_acc"] == 0.983
