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
run or sweep folder (`vgrun.sweeps.claims`); any failure makes the command exit 1.

Thresholds come from the papers or from theory, never from our own measurements.
"""

from __future__ import annotations

import json
import math
import statistics

from vgrun.science.claim_metrics import DERIVED, Run, lookup, measure  # noqa: F401  (re-exported)

OPS = ("<", "<=", ">", ">=", "==", "!=", "approx", "between")
KEYS = {"name", "metric", "where", "per", "vs", "combine", "op", "threshold", "rel", "abs", "source"}


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


def evaluate(claims: list, runs: list[Run], sweep: bool) -> dict:
    results = [judge(c, runs, sweep) for c in claims]
    counts = {s: sum(r["status"] == s for r in results) for s in ("pass", "fail", "skip")}
    return {"passed": counts["fail"] == 0, **counts, "n_runs": len(runs), "claims": results}
