"""Every table of a run as a tidy pandas DataFrame: one row per measurement, config values as columns.

    traces   feed-forward: step x layer (TRACE_FIELDS); recurrent: step x layer x time step
    layers   recurrent: step x layer (|dL/dW_rec|, |W_rec|, spectra, ...)
    steps    one row per step (loss, accuracy, held-out metrics, gradient norm)
    histograms  feed-forward: step x layer x quantity x bin, the nonzero counts of log10 |value|

With pretraining, its rows come first (phase "pretrain", negative steps).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vgrun.probes.layers import TRACE_FIELDS
from vgrun.probes.taps import leaf_layer
from vgrun.probes.time import LAYER_FIELDS, TIME_FIELDS

CONFIG_COLUMNS = ("model", "depth", "width", "act", "init", "norm", "optimizer", "lr", "data", "dtype", "seed",
                  "batch_size", "seq_len", "clip_norm")


def config_columns(cfg) -> dict:
    return {
        "model": cfg.model.name,
        "depth": cfg.depth,
        "width": cfg.width,
        "act": cfg.act,
        "init": cfg.init.name,
        "norm": cfg.norm,
        "optimizer": cfg.optimizer.name,
        "lr": cfg.optimizer.lr,
        "data": cfg.data.name,
        "dtype": cfg.dtype,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "clip_norm": cfg.optimizer.clip_norm,
    }


def traces_frame(cfg, traces, every: int):
    n_steps, n_layers = np.shape(traces.delta)
    frame = pd.DataFrame(
        {
            "step": np.repeat(np.arange(n_steps) * every, n_layers),
            "layer": np.tile(np.arange(n_layers), n_steps),
            "is_output": np.tile(np.arange(n_layers) == n_layers - 1, n_steps),
            **{f: np.asarray(getattr(traces, f)).reshape(-1).astype(np.float64) for f in TRACE_FIELDS},
        }
    )
    for k, v in config_columns(cfg).items():
        frame[k] = v
    return frame


def histogram_frame(cfg, hist: dict):
    """The nonzero counts of `Result.histograms` (vgrun.probes.histograms): quantity (weight,
    grad_w, delta), step, layer, bin, its log10 range [log10_lo, log10_hi) (NaN for the two
    special bins: `zero`, exact zeros, and `nonfinite`), count."""
    from vgrun.probes.histograms import N_BINS, NONFINITE, ZEROS, edges

    e = edges()
    lo = np.concatenate([e[:-1], [np.nan, np.nan]])
    hi = np.concatenate([e[1:], [np.nan, np.nan]])
    kind = np.array(["bin"] * N_BINS + ["zero", "nonfinite"])
    assert (ZEROS, NONFINITE) == (N_BINS, N_BINS + 1)
    parts = []
    for q in ("weight", "grad_w", "delta"):
        counts = np.asarray(hist[q], np.float64)  # [K, L, N]
        k, layer, b = np.nonzero(counts)
        parts.append(pd.DataFrame({"quantity": q, "step": np.asarray(hist["step"])[k], "layer": layer, "bin": b,
                                   "kind": kind[b], "log10_lo": lo[b], "log10_hi": hi[b],
                                   "count": counts[k, layer, b].astype(np.int64)}))
    frame = pd.concat(parts, ignore_index=True)
    for key, v in config_columns(cfg).items():
        frame[key] = v
    return frame


def steps_frame(cfg, metrics: dict):
    frame = pd.DataFrame({k: np.asarray(v, np.float64) for k, v in metrics.items()})
    frame.insert(0, "step", np.arange(len(frame)))
    for k, v in config_columns(cfg).items():
        frame[k] = v
    return frame


def leaves_frame(cfg, traces, names: list[str]):
    """A custom network's parameter leaves at each traced step: leaf (its module path), layer (the
    path without the leaf's own name), grad |dL/dW|, weight |W|, update_ratio |dW| / |W|."""
    n_steps, n_leaves = np.shape(traces.leaf_grad)
    names = list(names) if names and len(names) == n_leaves else [str(i) for i in range(n_leaves)]
    frame = pd.DataFrame({
        "step": np.repeat(np.arange(n_steps) * cfg.trace_every, n_leaves),
        "leaf": np.tile(names, n_steps),
        "layer": np.tile([leaf_layer(n) for n in names], n_steps),
        **{f: np.asarray(getattr(traces, f"leaf_{f}")).reshape(-1).astype(np.float64)
           for f in ("grad", "weight", "update_ratio")},
    })
    for k, v in config_columns(cfg).items():
        frame[k] = v
    return frame


def run_frames(cfg, metrics: dict, traces, recurrent: bool = False, pretrain=None, histograms=None,
               leaves=None) -> dict:
    """The tables of one run (or of one seed: the `seed` column tells them apart) by name;
    a custom network's (its traces a LeafTrace) also `leaves`, its parameter leaves named `leaves`.

    Every row has a `phase`: "train", or with pretraining (`pretrain`, a PretrainLog)
    "pretrain" (its rows first, at negative steps) and "finetune"."""
    if recurrent:
        time, layers = time_frames(traces, cfg.trace_every, config_columns(cfg))
        tables = {"traces": time, "layers": layers}
    else:
        tables = {"traces": traces_frame(cfg, traces, cfg.trace_every)}
    tables["steps"] = steps_frame(cfg, metrics)
    for frame in tables.values():
        frame["phase"] = "train" if pretrain is None else "finetune"
    if pretrain is not None:
        pre = dict(zip(("traces", "steps"), pretrain_frames(pretrain, config_columns(cfg))))
        for name, rows in pre.items():
            tables[name] = pd.concat([rows, tables[name]], ignore_index=True)
    if histograms is not None:
        tables["histograms"] = histogram_frame(cfg, histograms)
    if hasattr(traces, "leaf_grad"):
        tables["leaves"] = leaves_frame(cfg, traces, leaves)
        tables["leaves"]["phase"] = "train"
    return tables


def time_frames(traces, every: int, columns: dict):
    """(time table: step x layer x t, layer table: step x layer) as DataFrames."""
    s, d, t = np.shape(traces.delta)
    time = pd.DataFrame({
        "step": np.repeat(np.arange(s) * every, d * t),
        "layer": np.tile(np.repeat(np.arange(d), t), s),
        "t": np.tile(np.arange(t), s * d),
        "horizon": np.tile(t - 1 - np.arange(t), s * d),
        **{f: np.asarray(getattr(traces, f), np.float64).reshape(-1) for f in TIME_FIELDS},
    })
    layers = pd.DataFrame({
        "step": np.repeat(np.arange(s) * every, d),
        "layer": np.tile(np.arange(d), s),
        **{f: np.asarray(getattr(traces, f), np.float64).reshape(-1) for f in LAYER_FIELDS},
    })
    for frame in (time, layers):
        for k, v in columns.items():
            frame[k] = v
    return time, layers


def pretrain_frames(log, columns: dict):
    """(traces rows, steps rows) of the pretraining phase, phase="pretrain", steps counted
    backwards so fine-tuning starts at step 0: layer l's update s is step (l - depth) * steps + s."""
    depth, n_layers = log.traces.delta.shape
    start = -depth * log.steps
    point_steps = start + np.arange(depth) * log.steps
    traces = pd.DataFrame({
        "step": np.repeat(point_steps, n_layers),
        "layer": np.tile(np.arange(n_layers), depth),
        "is_output": np.tile(np.arange(n_layers) == n_layers - 1, depth),
        **{f: np.asarray(getattr(log.traces, f)).reshape(-1).astype(np.float64) for f in TRACE_FIELDS},
    })
    n_log = log.recon.shape[1]
    steps = pd.DataFrame({
        "step": (start + np.arange(depth)[:, None] * log.steps + (np.arange(n_log)[None] + 1) * log.log_every - 1).reshape(-1),
        "recon_error": log.recon.reshape(-1).astype(np.float64),
        "pretrain_layer": np.repeat(np.arange(depth), n_log),
    })
    for frame in (traces, steps):
        frame["phase"] = "pretrain"
        for k, v in columns.items():
            frame[k] = v
    return traces, steps
