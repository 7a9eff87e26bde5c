"""What a claim measures: a run folder's summary.json, or a metric derived from its traces.

`measure(run, metric)` reads a named derived metric (DERIVED below) or, for any other
name, a dotted path into summary.json (`diagnosis.theory.measured_over_predicted`,
`final.train_loss`, `rows.0.x` for list items). JSON keeps inf/nan as strings; they come
back as floats. Used by `vgrun.science.claims`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    """One job's folder: its summary.json and, on demand, its traces table."""

    path: Path
    summary: dict
    _traces: object = field(default=None, repr=False)

    @property
    def config(self) -> dict:
        return self.summary.get("config", {})

    def traces(self):
        if self._traces is None:
            import pandas as pd

            self._traces = pd.read_parquet(self.path / "traces.parquet")
        return self._traces


def _number(x):
    """JSON keeps inf/nan as strings ("inf", "nan"): give them back as floats."""
    if isinstance(x, str) and x in ("inf", "-inf", "nan"):
        return float(x)
    return x


def lookup(tree, dotted: str):
    """tree['a']['b'] for 'a.b'; list items by index ('rows.0.x'); KeyError when absent."""
    for part in dotted.split("."):
        if isinstance(tree, list):
            tree = tree[int(part)]
        elif isinstance(tree, dict) and part in tree:
            tree = tree[part]
        else:
            raise KeyError(dotted)
    return _number(tree)


def _factor_sq(values) -> float:
    """Least-squares per-layer factor of values[l]^2 between consecutive layers (going down)."""
    import numpy as np

    from vgrun.science.fits import decay_factor

    return decay_factor(np.asarray(values, np.float64) ** 2)


def delta_var_ratio_init(run: Run) -> float:
    """Var(delta_l) / Var(delta_{l+1}) at step 0: the squared per-layer factor of the diagnosis."""
    f = _number(lookup(run.summary, "diagnosis.per_layer_factor_init"))
    return math.nan if f is None else float(f) ** 2


def grad_w_var_ratio_init(run: Run) -> float:
    """|dL/dW_l|^2 / |dL/dW_{l+1}|^2 at step 0 over hidden-to-hidden layers 1..depth-1.

    Those matrices are all width x width, so the ratio of squared norms is the ratio of
    the per-entry second moments (the "variance" of Glorot & Bengio 2010, eq. 14); layer 0
    is left out because its input is the data, not a hidden layer.
    """
    t = run.traces()
    depth = run.config["depth"]
    first = t[(t["step"] == t["step"].min()) & (t["layer"] >= 1) & (t["layer"] < depth)].sort_values("layer")
    return _factor_sq(first["grad_w"].to_numpy())


def top_act_mean_min(run: Run) -> float:
    """The lowest mean activation of the top hidden layer over the traced steps."""
    t = run.traces()
    return float(t[t["layer"] == run.config["depth"] - 1]["act_mean"].min())


def top_act_mean_init(run: Run) -> float:
    """The mean activation of the top hidden layer at step 0."""
    t = run.traces()
    top = t[t["layer"] == run.config["depth"] - 1]
    return float(top[top["step"] == top["step"].min()]["act_mean"].iloc[0])


def first_act_mean_final(run: Run) -> float:
    """The mean activation of the first hidden layer at the last traced step."""
    t = run.traces()
    first = t[t["layer"] == 0]
    return float(first[first["step"] == first["step"].max()]["act_mean"].iloc[0])


def pascanu_bound_ratio(run: Run) -> float:
    """|dL/dh_0| / |dL/dh_{T-1}| at step 0 over its bound (gamma sigma_max(W_rec))^(T-1).

    Each step's Jacobian is diag(act') W_rec (or W_rec diag(act')), of norm at most
    gamma sigma_max with gamma = sup|act'| (Pascanu, Mikolov & Bengio 2013, eq. 5-7), so the
    ratio is at most 1 for every example, hence for the batch RMS. Top layer, log scale
    inside so that a bound of 1e-40 does not underflow.
    """
    from vgrun.nn.activations import ACTIVATIONS

    d = run.summary["diagnosis"]
    gamma = ACTIVATIONS[run.config["act"]].peak
    sigma = float(_number(d["sigma_max_init"][-1]))
    ratio = float(_number(d["ratio_first_last_init"]))
    steps = run.config["seq_len"] - 1
    return math.exp(math.log(ratio) - steps * math.log(gamma * sigma))


DERIVED = {f.__name__: f for f in (delta_var_ratio_init, grad_w_var_ratio_init, top_act_mean_min, top_act_mean_init,
                                   first_act_mean_final, pascanu_bound_ratio)}


def measure(run: Run, metric: str):
    if metric in DERIVED:
        return DERIVED[metric](run)
    return lookup(run.summary, metric)
