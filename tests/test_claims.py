"""The claim evaluator on synthetic run folders, the exit code end to end, and the presets' claims."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vgrun.io import claims as claim_files
from vgrun.science import claims
from vgrun.io import store
from vgrun.config.overrides import group_options

CONF = str(Path(__file__).parents[1] / "vgrun" / "conf")
from vgrun.cli.main import register_schema  # noqa: E402

register_schema()


def fake_run(folder: Path, init: str, loss: float, factor: float, status="completed", depth=4, seed=0,
             grad_w=None) -> Path:
    """A run folder with the parts of summary.json (and traces.parquet) that claims read."""
    folder.mkdir(parents=True)
    config = {"init": {"name": init, "sigma_w": 1.0}, "depth": depth, "seed": seed, "act": "tanh"}
    store.write_summary(folder, {
        "status": status, "config": config,
        "final": {"train_loss": loss, "test_acc": 0.5},
        "diagnosis": {"per_layer_factor_init": factor, "baseline_loss": 2.0, "verdict": "healthy"},
    })
    layers = np.arange(depth + 1)
    gw = grad_w if grad_w is not None else np.ones(depth + 1)
    pd.DataFrame({"step": 0, "layer": layers, "grad_w": gw, "act_mean": 0.5 - 0.1 * layers}).to_parquet(
        folder / "traces.parquet")
    return folder


@pytest.fixture
def sweep(tmp_path):
    fake_run(tmp_path / "a", "he", loss=0.2, factor=1.0)
    fake_run(tmp_path / "b", "xavier", loss=1.9, factor=math.sqrt(0.5))
    return claim_files.load(tmp_path)


def judge(sweep, **claim):
    return claims.judge(claim, sweep, sweep=True)


@pytest.mark.parametrize("op,threshold,ok,bad", [
    ("<", 0.5, 0.2, 1.9), ("<=", 0.2, 0.2, 1.9), (">", 1.0, 1.9, 0.2), (">=", 1.9, 1.9, 0.2),
])
def test_order_ops_pass_and_fail(sweep, op, threshold, ok, bad):
    by_value = {0.2: "he", 1.9: "xavier"}
    good = judge(sweep, metric="final.train_loss", where={"init": by_value[ok]}, op=op, threshold=threshold)
    fail = judge(sweep, metric="final.train_loss", where={"init": by_value[bad]}, op=op, threshold=threshold)
    assert (good["status"], good["measured"]) == ("pass", ok)
    assert (fail["status"], fail["measured"]) == ("fail", bad)


def test_equality_on_strings(sweep):
    assert judge(sweep, metric="status", where={"init": "he"}, op="==", threshold="completed")["status"] == "pass"
    assert judge(sweep, metric="status", where={"init": "he"}, op="==", threshold="diverged")["status"] == "fail"
    assert judge(sweep, metric="diagnosis.verdict", op="!=", threshold="vanishing")["status"] == "pass"
    assert judge(sweep, metric="diagnosis.verdict", op="!=", threshold="healthy")["status"] == "fail"


def test_approx_rel_and_abs(sweep):
    c = dict(metric="delta_var_ratio_init", where={"init": "xavier"}, op="approx", threshold=0.5)
    r = judge(sweep, **c, rel=0.01)
    assert r["status"] == "pass" and r["measured"] == pytest.approx(0.5)
    assert judge(sweep, **{**c, "threshold": 0.6}, rel=0.1)["status"] == "fail"  # 0.5 is 16.7% off
    assert judge(sweep, **{**c, "threshold": 0.6}, abs=0.11)["status"] == "pass"
    assert judge(sweep, **{**c, "threshold": 0.6}, abs=0.09)["status"] == "fail"


def test_between(sweep):
    c = dict(metric="final.train_loss", where={"init": "he"}, op="between")
    assert judge(sweep, **c, threshold=[0.1, 0.3])["status"] == "pass"
    assert judge(sweep, **c, threshold=[0.3, 1.0])["status"] == "fail"


def test_vs_ratio_and_diff_and_per(sweep):
    c = dict(metric="final.train_loss", where={"init": "he"}, vs={"init": "xavier"})
    r = judge(sweep, **c, op="<", threshold=0.5)
    assert r["status"] == "pass" and r["measured"] == pytest.approx(0.2 / 1.9)
    assert judge(sweep, **c, op=">", threshold=0.5)["status"] == "fail"
    d = judge(sweep, **c, combine="diff", op="approx", threshold=-1.7, abs=1e-9)
    assert d["status"] == "pass" and d["measured"] == pytest.approx(-1.7)
    p = judge(sweep, metric="final.train_loss", per="diagnosis.baseline_loss", where={"init": "xavier"},
              op=">", threshold=0.9)
    assert p["status"] == "pass" and p["measured"] == pytest.approx(0.95)
    assert judge(sweep, metric="final.train_loss", per="diagnosis.baseline_loss", where={"init": "he"},
                 op=">", threshold=0.9)["status"] == "fail"


def test_grad_w_ratio_from_traces(tmp_path):
    # |dL/dW_l| over layers 1..3 = 1, 2, 4: the squared norm grows 4x per layer going up,
    # so going down it shrinks to 1/4; layer 0 (input) and 4 (output) must be ignored
    fake_run(tmp_path / "r", "standard", 1.0, 1.0, grad_w=np.array([100.0, 1.0, 2.0, 4.0, 1e-3]))
    runs = claim_files.load(tmp_path)
    r = claims.judge(dict(metric="grad_w_var_ratio_init", op="approx", threshold=0.25, rel=1e-9), runs, False)
    assert r["status"] == "pass", r
    r = claims.judge(dict(metric="grad_w_var_ratio_init", op="approx", threshold=1.0, rel=0.5), runs, False)
    assert r["status"] == "fail"
    assert claims.measure(runs[0], "top_act_mean_min") == pytest.approx(0.5 - 0.3)
    assert claims.measure(runs[0], "top_act_mean_init") == pytest.approx(0.5 - 0.3)


def test_seeds_are_pooled_by_median(tmp_path):
    for seed, loss in enumerate([0.1, 0.9, 0.3]):
        fake_run(tmp_path / f"s{seed}", "he", loss, 1.0, seed=seed)
    r = claims.judge(dict(metric="final.train_loss", op="<", threshold=0.35), claim_files.load(tmp_path), True)
    assert r["measured"] == pytest.approx(0.3) and r["status"] == "pass" and len(r["runs"]) == 3


def test_missing_job_fails_a_sweep_and_skips_a_single_run(sweep):
    c = dict(metric="final.train_loss", where={"init": "kumar"}, op="<", threshold=1.0)
    assert claims.judge(c, sweep, sweep=True)["status"] == "fail"
    assert claims.judge(c, sweep, sweep=False)["status"] == "skip"


def test_nonfinite_and_missing_metric_fail(tmp_path):
    fake_run(tmp_path / "d", "he", float("nan"), 1.0, status="diverged")
    runs = claim_files.load(tmp_path)
    assert runs[0].summary["final"]["train_loss"] == "nan"  # JSON stores it as a string
    assert claims.judge(dict(metric="final.train_loss", op="<", threshold=1.0), runs, True)["status"] == "fail"
    assert claims.judge(dict(metric="final.train_loss", op=">", threshold=1.0), runs, True)["status"] == "fail"
    r = claims.judge(dict(metric="final.no_such", op="<", threshold=1.0), runs, True)
    assert r["status"] == "fail" and "cannot measure" in r["note"]


@pytest.mark.parametrize("claim,word", [
    (dict(metric="status", op="~", threshold=1), "op"),
    (dict(metric="status", op="approx", threshold=1), "rel"),
    (dict(metric="status", op="between", threshold=1), "between"),
    (dict(metric="status", op="<", threshold=1, wher={"a": 1}), "wher"),
    (dict(op="<", threshold=1), "metric"),
])
def test_malformed_claims_fail_with_a_reason(sweep, claim, word):
    assert claims.problems(claim)
    r = claims.judge(claim, sweep, True)
    assert r["status"] == "fail" and word in r["note"]


def test_evaluate_and_write(sweep, tmp_path):
    report = claims.evaluate([dict(metric="final.train_loss", where={"init": "he"}, op="<", threshold=1.0),
                              dict(metric="final.train_loss", where={"init": "xavier"}, op="<", threshold=1.0)],
                             sweep, True)
    assert (report["passed"], report["pass"], report["fail"], report["n_runs"]) == (False, 1, 1, 2)
    path = claim_files.write(tmp_path, report)
    assert json.loads(path.read_text())["claims"][1]["status"] == "fail"


# --- end to end: the exit code -------------------------------------------------------------

TINY = ["depth=3", "width=8", "batch_size=8", "steps=4", "chunks=1", "data=spirals"]


def vgrun_cmd(args, cwd):
    return subprocess.run([sys.executable, "-m", "vgrun.cli.main", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.long  # a subprocess per claim outcome; the sweep's exit code stays in the fast suite
def test_single_run_exit_code_follows_its_claims(tmp_path):
    bad = "expect=[{name: impossible, metric: status, op: '==', threshold: diverged}]"
    p = vgrun_cmd([*TINY, bad, f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert p.returncode == 1 != 0, p.stderr
    report = json.loads((tmp_path / "run" / "claims.json").read_text())
    assert report["fail"] == 1 and report["claims"][0]["measured"] == "completed"
    assert "FAIL" in p.stdout and "Traceback" not in p.stderr
    p = vgrun_cmd([*TINY, bad, "check=false", f"hydra.run.dir={tmp_path}/unjudged"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "unjudged" / "claims.json").exists()


def test_sweep_exit_code_follows_its_claims(tmp_path):
    # two jobs; the claim compares them, so only the sweep callback can judge it
    claim = "expect=[{metric: final.train_loss, where: {seed: 0}, vs: {seed: 1}, op: '>', threshold: 1e9}]"
    p = vgrun_cmd(["-m", *TINY, "seed=0,1", claim, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    report = json.loads((tmp_path / "sweep" / "claims.json").read_text())
    assert report["n_runs"] == 2 and report["fail"] == 1 and len(report["claims"][0]["runs"]) == 2
    assert not list((tmp_path / "sweep").glob("*/claims.json"))  # jobs do not judge themselves in a sweep


# --- the presets' claims --------------------------------------------------------------------


def _preset(name):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose("config", overrides=[f"+experiment={name}"])


@pytest.mark.parametrize("preset", group_options("experiment"))
def test_preset_claims_are_well_formed_and_name_real_keys(preset):
    dcfg = _preset(preset)
    expect = OmegaConf.to_container(dcfg.expect, resolve=True)
    config = store.config_dict(OmegaConf.to_object(dcfg))
    for c in expect:
        assert claims.problems(c) == [], (preset, c)
        assert c.get("source"), (preset, c["name"], "a claim states its source")
        for where in (c.get("where") or {}, c.get("vs") or {}):
            for key in where:
                claims.lookup(config, key)  # KeyError: a claim selects on a key that does not exist


# --- the report page -------------------------------------------------------------------------


def test_report_page_embeds_claims_and_plots(sweep, tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vgrun.cli import report as report_page

    report = claims.evaluate([dict(name="he <trains>", metric="final.train_loss", where={"init": "he"}, op="<",
                                   threshold=1.0, source="He et al. 2015"),
                              dict(name="xavier trains", metric="final.train_loss", where={"init": "xavier"}, op="<",
                                   threshold=1.0)], sweep, True)
    claim_files.write(tmp_path, {"preset": "he2015", **report})
    plt.plot([0, 1]), plt.savefig(tmp_path / "a" / "gradient_flow.png"), plt.close()
    out = tmp_path / "page.html"
    assert report_page.main([str(tmp_path), "-o", str(out)]) == 0
    page = out.read_text()
    assert "he2015" in page and "he &lt;trains&gt;" in page and "He et al. 2015" in page  # escaped
    assert "<td class=pass>PASS</td><td class=src>He et al. 2015</td>" in page  # the claims table
    assert "<td class=fail>FAIL</td><td class=src></td>" in page
    assert page.count("<td class=fail>FAIL</td><td class=num>1 / 2</td>") == 1  # the index
    assert page.count("data:image/png;base64,") == 1 and "a claim failed" in page
    assert "src='http" not in page and "<script" not in page  # self-contained
    assert report_page.main([str(tmp_path / "a"), "-o", str(tmp_path / "none.html")]) == 2


# --- the reproductions themselves (slow: minutes each; CI runs them on a schedule) ------------

NOT_REPRODUCED = {  # measured; see the README's reproduction table
    "he2016": "residual-56 ends at 7.3x residual-20's training loss after 2000 steps (both ~100% training accuracy)",
    "he2016_cnn": "in 600 steps residual-56 is still training: 2153x residual-20's final training loss",
    "pennington2017_relu": "Gaussian ReLU: Var(lambda) 1.22x the infinite-width prediction at width 512, depth 16",
    "xiong2020": "Pre-LN's stream gradient not level at init (2.43); warm-up helps Pre-LN too (3.23x)",
}


def _reproductions():
    for name in group_options("experiment"):
        if "\nexpect:" not in (Path(CONF) / "experiment" / f"{name}.yaml").read_text():
            continue  # no claims (or only inherited ones: hochreiter1997 runs adding_rnn_vs_lstm)
        mark = pytest.mark.xfail(reason=NOT_REPRODUCED[name], strict=True) if name in NOT_REPRODUCED else ()
        yield pytest.param(name, marks=[pytest.mark.slow, *([mark] if mark else [])])


@pytest.mark.parametrize("preset", list(_reproductions()))
def test_reproduction_holds_its_claims(preset, tmp_path):
    out = tmp_path / preset
    p = subprocess.run([sys.executable, "-m", "vgrun.cli.main", f"+experiment={preset}", f"hydra.run.dir={out}",
                        f"hydra.sweep.dir={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    report = json.loads((out / "claims.json").read_text())
    failed = [c["name"] for c in report["claims"] if c["status"] != "pass"]
    assert p.returncode == 0 and not failed, failed


@pytest.mark.parametrize("arg,words", [("check=maybe", ["check", "maybe", "true or false"]),
                                       ("expect=notalist", ["expect", "notalist", "a list"])])
def test_bad_check_or_expect_is_one_clear_line(arg, words):
    from vgrun.config.schema import ConfigError
    from vgrun.config.overrides import check

    with pytest.raises(ConfigError) as e:
        check([arg])
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


@pytest.mark.parametrize("mode", [[], ["-m", "seed=0,1"]])
def test_malformed_claim_is_bad_input_before_training(tmp_path, mode):
    claim = "expect=[{metric: status, op: '~', threshold: 1}]"
    p = vgrun_cmd([*mode, *TINY, claim, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "expect[0]" in lines[0] and "'~'" in lines[0]
    assert not (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "sweep").exists()
