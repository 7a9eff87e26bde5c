"""Claims a preset makes about its own results, judged after the run or the sweep.

A preset's `expect:` block is a list of claims, each a small mapping:

    - name: he init keeps the back-propagated gradient level (He et al. 2015, eq. 14)
      metric: delta_var_ratio_init    # a derived metric (DERIVED below) or a dotted path into
                                      # summary.json, e.g. diagnosis.theory.measured_over_predicted
      where: {init: he}               # the job(s) whose config matches (dotted keys; a group such as
                                      # init matches its name); omitted: every job
      per: diagnosis.baseline_loss    # optional: divide by another metric of the same job(s)
      vs: {init: xavier}              # optional: divide by the same metric of another arm
      combine: ratio                  # with vs: ratio (default) or diff (where - vs)
      op: approx                      # < <= > >= == != approx between
      threshold: 1.0                  # between: [lo, hi]
      rel: 0.1                        # approx: |measured - threshold| <= rel * |threshold| (or abs:)
      source: He, Zhang, Ren & Sun (2015), eq. 14

When several jobs match `where` (seeds), the measured value is their median. A claim
whose jobs are absent is skipped in a single run (the user chose one arm) and fails in
a sweep (a job went missing). The result of every claim goes to `claims.json` in the
run or sweep folder; any failure makes the command exit with EXIT_CLAIM_FAILED.

Thresholds come from the papers or from theory, never from our own measurements.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from vgrun.claim_metrics import DERIVED, Run, lookup, measure  # noqa: F401  (re-exported)

EXIT_CLAIM_FAILED = 1
OPS = ("<", "<=", ">", ">=", "==", "!=", "approx", "between")
KEYS = {"name", "metric", "where", "per", "vs", "combine", "op", "threshold", "rel", "abs", "source"}
_failed = False  # set when a judged claim fails; cli.main turns it into the exit code


class NoJob(Exception):
    """No run folder matches a claim's `where` (or `vs`)."""


def matches(config: dict, where: dict) -> bool:
    """Every `where` key equals the config's value; a group (a dict with `name`) matches its name."""
    for key, want in (where or {}).items():
        try:
            have = lookup(config, key)
        except (KeyError, IndexError, ValueError):
            return False
        if isinstance(have, dict) and "name" in have:
            have = have["name"]
        if isinstance(want, (int, float)) and isinstance(have, (int, float)) and not isinstance(want, bool):
            if not math.isclose(float(want), float(have), rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif have != want:
            return False
    return True


# --- judging ---------------------------------------------------------------------------


def problems(claim) -> list[str]:
    """What is wrong with a claim's form (empty: well formed)."""
    if not isinstance(claim, dict):
        return [f"a claim must be a mapping, got {claim!r}"]
    out = [f"unknown key {k!r}" for k in claim if k not in KEYS]
    if "metric" not in claim:
        out.append("no metric")
    elif not isinstance(claim["metric"], str):
        out.append("metric must be a string")
    op = claim.get("op")
    if op not in OPS:
        out.append(f"op={op!r}; expected one of {', '.join(OPS)}")
    if "threshold" not in claim:
        out.append("no threshold")
    if op == "approx" and ("rel" in claim) == ("abs" in claim):
        out.append("approx needs exactly one of rel, abs")
    if op == "between" and not (isinstance(claim.get("threshold"), list) and len(claim["threshold"]) == 2):
        out.append("between needs threshold: [lo, hi]")
    if claim.get("combine", "ratio") not in ("ratio", "diff"):
        out.append("combine must be ratio or diff")
    for key in ("where", "vs"):
        if claim.get(key) is not None and not isinstance(claim[key], dict):
            out.append(f"{key} must be a mapping of config keys to values")
    return out


def compare(measured, op: str, threshold, rel=None, abs_=None) -> bool:
    if op in ("==", "!="):
        return (measured == threshold) == (op == "==")
    if not isinstance(measured, (int, float)) or isinstance(measured, bool) or not math.isfinite(measured):
        return False  # a diverged run's nan, a missing number: the claim is not shown
    if op == "between":
        return threshold[0] <= measured <= threshold[1]
    if op == "approx":
        tol = abs_ if abs_ is not None else rel * abs(threshold)
        return abs(measured - threshold) <= tol
    return {"<": measured < threshold, "<=": measured <= threshold,
            ">": measured > threshold, ">=": measured >= threshold}[op]


def _aggregate(values: list):
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) == len(values):
        return float(statistics.median(nums)) if len(nums) > 1 else nums[0]
    distinct = sorted({json.dumps(v) for v in values})
    return values[0] if len(distinct) == 1 else "mixed: " + ", ".join(distinct)


def _value(runs: list[Run], where: dict, claim: dict):
    """The claim's metric (divided by `per`) over the jobs matching where: (value, paths)."""
    chosen = [r for r in runs if matches(r.config, where)]
    if not chosen:
        raise NoJob(f"no job matches {where}")
    values = []
    for r in chosen:
        v = measure(r, claim["metric"])
        if claim.get("per"):
            v = v / measure(r, claim["per"])
        values.append(v)
    return _aggregate(values), [str(r.path) for r in chosen]


def judge(claim: dict, runs: list[Run], sweep: bool) -> dict:
    """One claim against the runs: the claim's fields plus measured, status (pass|fail|skip), note."""
    out = {k: claim.get(k) for k in ("name", "metric", "where", "per", "vs", "op", "threshold", "source")}
    out["name"] = out["name"] or claim.get("metric", "?")
    bad = problems(claim)
    if bad:
        return {**out, "measured": None, "status": "fail", "note": "invalid claim: " + "; ".join(bad)}
    try:
        value, paths = _value(runs, claim.get("where") or {}, claim)
        if claim.get("vs") is not None:
            other, other_paths = _value(runs, claim["vs"], claim)
            value = value / other if claim.get("combine", "ratio") == "ratio" else value - other
            paths += other_paths
    except NoJob as e:  # no such job: skipped in a single run, a failure in a sweep
        return {**out, "measured": None, "status": "fail" if sweep else "skip", "note": str(e)}
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:
        return {**out, "measured": None, "status": "fail", "note": f"cannot measure: {type(e).__name__} {e}"}
    ok = compare(value, claim["op"], claim["threshold"], claim.get("rel"), claim.get("abs"))
    return {**out, "measured": value, "status": "pass" if ok else "fail", "runs": paths,
            **{k: claim[k] for k in ("rel", "abs") if k in claim}}


def load(paths) -> list[Run]:
    from vgrun.store import find_runs, load_summary

    return [Run(p, load_summary(p)) for p in find_runs(paths)]


def evaluate(claims: list, runs: list[Run], sweep: bool) -> dict:
    results = [judge(c, runs, sweep) for c in claims]
    counts = {s: sum(r["status"] == s for r in results) for s in ("pass", "fail", "skip")}
    return {"passed": counts["fail"] == 0, **counts, "n_runs": len(runs), "claims": results}


def write(folder, report: dict) -> Path:
    from vgrun.store import _json_clean, atomic_write

    path = Path(folder) / "claims.json"
    text = json.dumps(_json_clean(report), indent=2)
    atomic_write(path, lambda p: p.write_text(text + "\n"))
    return path


# --- the command line's side: table, claims.json, exit code -----------------------------


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, list):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    return "-" if x is None else str(x)


def expected(c: dict) -> str:
    """The claim's test in words: '< 0.5', '≈ 1 ± 10%', 'in [0.1, 10]'."""
    op, t = c["op"], c.get("threshold")
    if op == "approx":
        tol = f"± {c['rel']:.0%}" if c.get("rel") is not None else f"± {_fmt(c.get('abs'))}"
        return f"≈ {_fmt(t)} {tol}"
    if op == "between" and isinstance(t, list):
        return f"in [{_fmt(t[0])}, {_fmt(t[1])}]"
    return f"{op} {_fmt(t)}"


def table(report: dict, title: str):
    from rich.table import Table

    style = {"pass": "[bold green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}
    t = Table(title=title, title_justify="left", show_lines=False)
    for col, kw in (("claim", {"ratio": 3}), ("measured", {"justify": "right"}), ("expected", {}),
                    ("result", {}), ("source", {"ratio": 2, "style": "dim"})):
        t.add_column(col, overflow="fold", **kw)
    for c in report["claims"]:
        measured = _fmt(c.get("measured")) if c.get("note") is None else c["note"]
        where = ", ".join(f"{k}={v}" for k, v in (c.get("where") or {}).items())
        name = c["name"] + (f" [dim]({where})[/]" if where else "")
        t.add_row(name, measured, expected(c) if c.get("op") in OPS else "-", style[c["status"]], c.get("source") or "")
    return t


def judge_folder(folder, claims: list, sweep: bool, console=None, preset=None) -> dict:
    """Evaluate, write <folder>/claims.json, print the table, remember a failure for the exit code."""
    global _failed
    from rich.console import Console

    console = console or Console()
    runs = load(folder)
    report = {"preset": preset, **evaluate(list(claims), runs, sweep)}
    path = write(folder, report)
    console.print(table(report, f"Claims ({report['pass']} pass, {report['fail']} fail, {report['skip']} skipped)"))
    verdict = "[bold green]all claims hold[/]" if report["passed"] else "[bold red]a claim failed[/]"
    console.print(f"{verdict}: {path}")
    _failed = _failed or not report["passed"]
    return report


def failed() -> bool:
    return _failed


def _plain(dcfg, key):
    from omegaconf import OmegaConf

    value = OmegaConf.select(dcfg, key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_form(dcfg) -> None:
    """Raise ConfigError for the first malformed claim of a single run (a sweep's: on_multirun_start)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode != RunMode.MULTIRUN and dcfg.get("check", True):
        _check_form(_plain(dcfg, "expect") or [])


def _check_form(expect: list) -> None:
    from vgrun.config import ConfigError

    for i, claim in enumerate(expect):
        bad = problems(claim)
        if bad:
            raise ConfigError(f"expect[{i}]", claim, "a well-formed claim: " + "; ".join(bad) + " (vgrun/claims.py)")


def after_job(dcfg) -> None:
    """A single run (not a sweep's job): judge the preset's claims on this run's folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN or not dcfg.get("check", True) or not dcfg.get("expect"):
        return
    judge_folder(Path(hc.runtime.output_dir), _plain(dcfg, "expect"), sweep=False,
                 preset=hc.runtime.choices.get("experiment"))


try:  # the sweep's side needs Hydra; the evaluator above does not
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object


class ClaimsCallback(Callback):
    """Hydra callback: after a sweep, judge the preset's claims over all its jobs.

    Registered under hydra.callbacks in conf/config.yaml. It does not exit itself: Hydra
    turns a callback's exception into a warning and calls the other callbacks after it,
    so the failure is remembered here and `vgrun.cli.main` exits with EXIT_CLAIM_FAILED
    once Hydra has finished.
    """

    def on_multirun_start(self, config, **kwargs) -> None:
        """A malformed claim is bad input: one line and exit 2 before any job runs."""
        import sys

        from vgrun.config import ConfigError

        if config.get("check", True):
            try:
                _check_form(_plain(config, "expect") or [])
            except ConfigError as e:
                from rich.console import Console

                Console(stderr=True).print(f"[bold red]vgrun: error:[/] {e}", highlight=False, soft_wrap=True)
                sys.exit(2)  # SystemExit is not an Exception: Hydra lets it through

    def on_multirun_end(self, config, **kwargs) -> None:
        global _failed
        from omegaconf import OmegaConf

        if not config.get("check", True) or not config.get("expect"):
            return
        try:
            judge_folder(Path(str(config.hydra.sweep.dir)), _plain(config, "expect"), sweep=True,
                         preset=OmegaConf.select(config, "hydra.runtime.choices.experiment"))
        except Exception as e:  # Hydra would only warn: an unjudged sweep must not exit 0
            _failed = True
            from rich.console import Console

            Console(stderr=True).print(f"[bold red]vgrun: claims could not be judged:[/] {type(e).__name__}: {e}")
