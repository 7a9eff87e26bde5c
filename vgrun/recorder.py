"""A researcher's own training loop, recorded as a vgrun run folder.

    traced = vgrun.traced_value_and_grad(loss_fn)
    rec = vgrun.Recorder("outputs/mine", every=10, baseline=math.log(10))  # chance: 10 classes
    for step in range(steps):
        if rec.traced(step):
            loss, grads, trace = traced(params, x, y)
        else:
            (loss, grads), trace = jax.value_and_grad(loss_fn)(params, x, y), None
        rec.log(step, loss, trace, acc=accuracy)      # every step; its trace at the traced ones
        params = update(params, grads)
    summary = rec.close(test=(test_loss, test_acc), names=traced)

The folder is what `vgrun model=custom` writes (summary.json with its diagnosis, traces.parquet,
leaves.parquet, steps.parquet, gradient_flow.png, report.txt), so vgrun-compare, load_run and
the diagnosis read it unchanged. The last tap is the output layer, as in `model=custom`: tap the
network's output (its logits) last. Every row is written when `close` is called; a loop that
stops early (a NaN, Ctrl-C) still closes: status says how it ended.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np


class Recorder:
    """Collects the loss of every step and the traces of every `every`-th step (from step 0)."""

    def __init__(self, folder, every: int = 1, baseline: float = math.nan, name: str = "my network",
                 data: str = "custom"):
        if every < 1:
            raise ValueError(f"every={every!r}: expected an integer >= 1")
        self.folder, self.every, self.baseline, self.name, self.data = Path(folder), int(every), baseline, name, data
        self.loss, self.acc, self.traces = [], [], []
        self.t0 = time.perf_counter()

    def traced(self, step: int) -> bool:
        """Whether `step` is a traced step (log its trace)."""
        return step % self.every == 0

    def log(self, step: int, loss, trace=None, acc=None) -> None:
        """Step `step`'s training loss (and accuracy); at a traced step, its TapTrace
        (`vgrun.traced_value_and_grad`). Steps come in order from 0."""
        if step != len(self.loss):
            raise ValueError(f"step {step}: expected step {len(self.loss)} (log every step, in order, from 0)")
        if self.traced(step) != (trace is not None):
            raise ValueError(f"step {step}: " + ("a traced step needs its trace" if trace is None else
                                                 f"not a traced step (every={self.every})"))
        self.loss.append(float(loss))
        self.acc.append(math.nan if acc is None else float(acc))
        if trace is not None:
            self.traces.append({f: np.asarray(v, np.float64) for f, v in trace._asdict().items()})

    def close(self, test=(math.nan, math.nan), names=None, status: str | None = None) -> dict:
        """Write the run folder; returns its summary. test: the final held-out (loss, accuracy);
        names: the TracedGrad (or {"layers": [...], "leaves": [...]}) that named the taps and leaves;
        status: completed, or diverged where a loss went non-finite (the default says which)."""
        from vgrun.config.schema import Config, DataConfig, ModelConfig
        from vgrun.data.problem import Problem
        from vgrun.io import record, store
        from vgrun.probes.layers import tap_trace
        from vgrun.training.loop import Result
        from vgrun.viz.console import print_run, write_report
        from vgrun.viz.plots import run_figure

        if not self.traces:
            raise ValueError("nothing to write: no traced step was logged")
        steps = len(self.loss)
        status = status or ("completed" if np.isfinite(self.loss).all() else "diverged")
        stack = {f: np.stack([t[f] for t in self.traces]) for f in self.traces[0]}  # [K, rows] / [K, leaves]
        rows = stack["delta"].shape[1]
        traces = tap_trace(stack["delta"], stack["act_mean"], stack["act_std"], stack["grad"], stack["weight"],
                           np.full_like(stack["grad"], np.nan), xp=np)
        nans = np.full(steps, np.nan)
        grad_norm = nans.copy()  # at traced steps: the norm of the leaves' norms (float64: no underflow)
        grad_norm[:: self.every] = np.sqrt(np.sum(np.square(stack["grad"]), 1))
        metrics = {"loss": np.asarray(self.loss), "acc": np.asarray(self.acc), "grad_norm": grad_norm,
                   "test_loss": nans, "test_acc": nans}
        cfg = Config(model=ModelConfig(name="custom", target=self.name), data=DataConfig(name=self.data),
                     depth=max(1, rows - 1), steps=steps, trace_every=self.every, chunks=1)
        problem = Problem(0, 0, 1, {}, None, None, float(self.baseline), 0)
        result = Result(problem, None, metrics, traces, status, 0.0, time.perf_counter() - self.t0,
                        tuple(float(v) for v in test))
        names = names if isinstance(names, dict) or names is None else {"layers": names.taps, "leaves": names.leaves}
        self.folder.mkdir(parents=True, exist_ok=True)
        summary = {"steps": steps, **(names or {})}
        summary, med = record.write(cfg, [result], self.folder, summary, recurrent=False)
        wall = time.perf_counter() - self.t0
        for key in ("n_in", "n_out"):  # sizes the loop never said
            summary["config"]["data"].pop(key, None)
        summary["timing"] = {"wall_s": wall, "compile_s": None, "train_s": wall, "steps_per_s": steps / wall,
                             "members": 1}  # the loop's own: its compilation is not told apart
        store.write_summary(self.folder, summary)
        run_figure(self.folder / "gradient_flow.png", cfg, [result], med.traces, summary["diagnosis"])
        write_report(self.folder, lambda c: print_run(c, cfg, summary, med.traces, self.folder))
        return summary
