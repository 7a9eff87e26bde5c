"""From trained results to the run folder: summary (final metrics, diagnosis), tables, plot.

One job is one `train.Result`, or with `seeds=N` a list of N (one vmapped program). Then
the tables hold every seed (the `seed` column: cfg.seed + i); each `final` metric is the
median of the seeds' own finals, with their range in `final_range`; `diagnosis` describes
the median traces (`median`), its learning judged on the median final loss; `seeds` lists
each seed's own final metrics and verdict. The plot shows the median and the spread.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vgrun.io import store
from vgrun.io.frames import run_frames


def _final(res) -> dict:
    from vgrun.science.verdict import tail_mean

    return {
        "train_loss": tail_mean(res.metrics["loss"]),
        "train_acc": tail_mean(res.metrics["acc"]),
        "test_loss": res.test[0],
        "test_acc": res.test[1],
    }


def _median_final(results: list) -> tuple[dict, dict | None]:
    """Each final metric: the median of the seeds' own finals (NaN-aware), and their [min, max]."""
    import warnings

    finals = [_final(r) for r in results]
    if len(finals) == 1:
        return finals[0], None
    with warnings.catch_warnings():  # every seed NaN (no accuracy for a regression task): NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        med = {k: float(np.nanmedian([f[k] for f in finals])) for k in finals[0]}
        spread = {k: [float(np.nanmin([f[k] for f in finals])), float(np.nanmax([f[k] for f in finals]))]
                  for k in finals[0]}
    return med, spread


def _diagnosis(cfg, res, recurrent: bool, final: dict | None = None) -> dict:
    from vgrun.science.verdict import clipping, diagnose, diagnose_time

    final = final or _final(res)
    judge = diagnose_time if recurrent else diagnose
    d = judge(cfg, res.metrics, res.traces, res.status, res.problem.baseline,
              (final["test_loss"], final["test_acc"]), final["train_loss"])
    d["clipping"] = clipping(cfg, res.metrics)
    d["baseline_loss"] = res.problem.baseline
    return d


def median(results: list):
    """One Result whose metrics and traces are the element-wise median over seeds
    (NaN-aware), on the steps every seed reached; status: the first that is not completed."""
    if len(results) == 1:
        return results[0]
    n = min(len(r.metrics["loss"]) for r in results)
    s = min(len(r.traces[0]) for r in results)
    metrics = {k: np.nanmedian(np.stack([r.metrics[k][:n] for r in results]), 0) for k in results[0].metrics}
    traces = type(results[0].traces)(
        *(np.nanmedian(np.stack([np.asarray(getattr(r.traces, f))[:s] for r in results]), 0)
          for f in results[0].traces._fields))
    status = next((r.status for r in results if r.status != "completed"), "completed")
    test = tuple(float(np.nanmedian([r.test[i] for r in results])) for i in range(2))
    return results[0]._replace(metrics=metrics, traces=traces, status=status, test=test)


def write(cfg, results: list, run_dir: Path, summary: dict, recurrent: bool):
    """The tables of one job; fills `summary` in. Returns (summary, the median Result)."""
    import warnings

    with warnings.catch_warnings():  # nanmedian of an all-NaN column (a diverged layer) is NaN, as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        med = median(results)
    from vgrun.io.provenance import config_dict, environment

    final, spread = _median_final(results)
    summary.update(config=config_dict(cfg, results[0].problem), environment=environment())
    summary.update(status=med.status, steps_done=len(med.metrics["loss"]), final=final,
                   diagnosis=_diagnosis(cfg, med, recurrent, final))
    if spread is not None:
        summary["final_range"] = spread
    if getattr(cfg, "isometry", False):  # the Jacobian's spectrum at the run's initial weights
        from vgrun.science import isometry

        summary["isometry"] = isometry.measure(cfg)
    if getattr(cfg, "lesion", False) and results[0].carry is not None and med.status == "completed":
        from vgrun.science import lesion

        summary["lesion"] = lesion.measure(cfg, results[0])
        if (paths := lesion.paths(cfg, results[0])) is not None:
            summary["paths"] = paths
    pretrain = results[0].pretrain
    if pretrain is not None:  # vgrun/pretrain.py: the pretraining phase's numbers
        from vgrun.training import pretrain as pre

        summary["pretrain"] = pre.summary(pretrain)
    if len(results) > 1:
        summary["seeds"] = [
            {"seed": cfg.seed + i, "status": r.status, "steps_done": len(r.metrics["loss"]), **_final(r),
             "verdict": (d := _diagnosis(cfg, r, recurrent))["verdict"], "ratio_first_last": d.get("ratio_first_last")}
            for i, r in enumerate(results)
        ]
    frames: dict = {}
    for i, r in enumerate(results):
        c = dataclasses.replace(cfg, seed=cfg.seed + i)
        for name, frame in run_frames(c, r.metrics, r.traces, recurrent, pretrain=r.pretrain,
                                      histograms=r.histograms, leaves=summary.get("leaves")).items():
            frames.setdefault(name, []).append(frame)
    import pandas as pd

    store.write_frames(run_dir, {k: pd.concat(v, ignore_index=True) for k, v in frames.items()})
    return summary, med
