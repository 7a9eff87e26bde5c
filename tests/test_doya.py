"""Doya's one-neuron network: fixed points, the cliff, dx/db and gradient descent, against closed forms."""

import json
import math

import numpy as np
import pytest
from scipy.optimize import brentq

from vgrun.science import doya
from vgrun.viz.doya import plot
from vgrun.config.schema import DoyaConfig

W = 5.0


@pytest.fixture(scope="module")
def default():
    return doya.analyze(DoyaConfig(gd_lr=0.05, gd_steps=300))  # a gentle descent


@pytest.fixture(scope="module")
def wall():
    # target 0.85 sits on the upper branch at b = ln(0.85/0.15) - 4.25 = -2.515, beyond the cliff: GD runs into it
    return doya.analyze(DoyaConfig(target=0.85, gd_lr=0.5, gd_steps=300))


def _sigmoid(z):
    return 1 / (1 + math.exp(-z))


def test_bistable_interval_is_the_fold_of_b_of_x(default):
    # independent: b(x) = ln(x/(1-x)) - 5x has a local max (b_hi) left of 1/2 and a local min (b_lo) right of it
    x = np.linspace(1e-6, 1 - 1e-6, 2_000_001)
    b = np.log(x / (1 - x)) - W * x
    bi = default["bistable"]
    assert bi["b_hi"] == pytest.approx(b[x < 0.5].max(), abs=1e-9)
    assert bi["b_lo"] == pytest.approx(b[x > 0.5].min(), abs=1e-9)
    assert (bi["b_lo"], bi["b_hi"]) == pytest.approx((-2.6556, -2.3444), abs=1e-4)
    for xf in bi["x_fold"]:
        assert W * xf * (1 - xf) == pytest.approx(1.0, abs=1e-12)  # the slope of the map is 1 at a fold
    # simulated from N_STARTS starts: two attractors exactly on the grid points inside the analytic interval
    step = default["max_grad"]["grid_step"]
    assert bi["b_lo"] < bi["b_lo_numeric"] < bi["b_lo"] + step
    assert bi["b_hi"] - step < bi["b_hi_numeric"] < bi["b_hi"]


def test_settled_states_are_fixed_points(default):
    arr = default["arrays"]
    far = (np.abs(arr["b"] - default["bistable"]["b_lo"]) > 0.01) & (np.abs(arr["b"] - default["bistable"]["b_hi"]) > 0.01)
    ends = arr["ends"][:, far]
    b = np.broadcast_to(arr["b"][far], ends.shape)
    assert np.abs(b - (np.log(ends / (1 - ends)) - W * ends)).max() < 1e-9
    assert (W * ends * (1 - ends) < 1).all()  # and stable
    for row in default["dxdb"]["rows"]:
        assert row["fp_residual"] < 1e-12


def test_cliff_at_minus_2_5_with_loss_near_0_above_and_0_5_below(default):
    c = default["cliff"]
    assert c["b"] == pytest.approx(-2.5, abs=1e-9)  # ln(0.5/0.5) - 5 * 0.5
    assert c["b_analytic"] == -2.5
    # the branches there, solved independently
    upper = brentq(lambda x: x - _sigmoid(W * x - 2.5), 0.6, 1.0, xtol=1e-14)
    lower = brentq(lambda x: x - _sigmoid(W * x - 2.5), 0.0, 0.4, xtol=1e-14)
    assert (c["x_upper"], c["x_lower"]) == pytest.approx((upper, lower), abs=1e-10)
    assert upper == pytest.approx(0.855, abs=5e-4)
    assert c["loss_above"] < 1e-4
    assert c["loss_below"] == pytest.approx(0.50, abs=0.02)
    arr = default["arrays"]
    above, below = (arr["b"] > -2.49) & (arr["b"] < -2.45), (arr["b"] < -2.51) & (arr["b"] > -2.6)
    assert arr["loss"][above].max() < 1e-3
    assert arr["loss"][below].min() > 0.49 and arr["loss"][below].max() < 0.55


def test_gradient_explodes_at_the_cliff(default):
    m, c, grad = default["max_grad"], default["cliff"], default["arrays"]["grad"]
    assert abs(m["b"] - c["b"]) <= m["grid_step"]
    assert m["abs"] > 1e4 * np.median(np.abs(grad))
    # on the unstable point: dL/db = -2 (target - 1/2) ((1 + eps (w/4 - 1))^T - 1) for x0 = 1/2
    closed = -2 * (0.855 - 0.5) * ((1 + 0.1 * (W / 4 - 1)) ** 300 - 1)
    assert c["grad_analytic"] == pytest.approx(closed, rel=1e-12)
    assert c["grad"] == pytest.approx(closed, rel=1e-9)
    assert abs(closed) > 1000


def test_autodiff_dx_db_matches_the_implicit_function_theorem(default):
    rows = default["dxdb"]["rows"]
    assert {r["branch"] for r in rows} == {"lower", "upper"}
    for r in rows:
        x = r["x"]
        assert r["autodiff"] == pytest.approx(1 / (1 / (x * (1 - x)) - W), rel=1e-6)
    assert default["dxdb"]["max_rel_err"] < 1e-6


def test_gradient_descent_hits_the_wall(wall):
    g, c = wall["gd"], wall["cliff"]
    assert g["hit"] and g["crossed"]
    assert g["b"] > c["b"] > g["b_after"]  # came down from above, one update carried it over
    assert g["loss_before"] < 1e-3 and g["loss_after"] > 0.4
    after = np.abs(wall["arrays"]["gd_grad"][g["step"] + 1:])
    assert after.max() > doya.WALL_FACTOR * abs(g["grad0"])  # the gradient spikes at the cliff


def test_the_shipped_defaults_hit_the_wall():
    g = doya.analyze(DoyaConfig())["gd"]  # target 0.855, lr 5, 50 steps
    assert g["hit"] and abs(g["grad"]) > doya.WALL_FACTOR * abs(g["grad0"])


def test_gentle_descent_stays_above_the_cliff(default):
    g = default["gd"]  # lr 0.05: dL/db ~ 0.014, b creeps from -2.0 toward the cliff and never reaches it
    assert not g["hit"]
    assert -2.5 < g["final_b"] < -2.0
    assert np.all(np.diff(default["arrays"]["gd_loss"]) < 0)


def test_no_bistability_no_cliff():
    r = doya.analyze(DoyaConfig(w=3.5, b_min=-3.0, b_max=0.0, n_b=301, gd_b0=-0.5))
    assert r["bistable"] is None and r["cliff"] is None
    assert r["max_grad"]["abs"] < 10  # a smooth landscape: the explosion needs the bifurcation
    assert r["dxdb"]["max_rel_err"] < 1e-6


def test_run_writes_the_picture_and_a_json_summary(tmp_path):
    analysis = doya.analyze(DoyaConfig(n_b=301, gd_steps=20))
    plot(analysis, tmp_path / "doya.png")
    s = doya.summary(analysis)
    assert (tmp_path / "doya.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "arrays" not in s
    json.dumps(s, allow_nan=False)
    lines = doya.summary_lines(s)
    assert any("cliff at b = -2.5" in line for line in lines)
