"""Dynamic hyperparameters: the config values that do not change any array's shape.

Training reads these values from the carry (`Carry.hp`, a dict of scalars) instead of
baking them into the program as constants, so one compiled program serves every value,
and jobs that differ only in them (seeds, learning rates, init scales, clip thresholds)
run together as one vmapped program. Everything else in the config is static: it
changes the program (depth, activation, optimizer, ...). Whether an optional value is
set at all (`init.std: null` or a number) is static too: it selects a code path.

Nothing here imports JAX: the sweep launcher groups jobs by `signature` before JAX starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# dotted config keys; each is read inside the jitted program wherever it is used
DYNAMIC = (
    "optimizer.lr", "optimizer.momentum", "optimizer.b1", "optimizer.b2", "optimizer.eps", "optimizer.decay",
    "optimizer.eta_minus", "optimizer.eta_plus", "optimizer.clip_norm", "optimizer.clip_value",
    "init.gain", "init.std", "init.mean", "init.sigma_w", "init.sigma_b",
    "model.res_scale", "model.rec_gain", "model.rec_radius", "model.rec_sigma_max", "model.forget_bias",
)
VECTOR_KEYS = ("seed",) + DYNAMIC  # what may differ between the members of one vmapped program


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def values(cfg) -> dict[str, float]:
    """The dynamic values that are set (not None), by dotted key."""
    out = {}
    for key in DYNAMIC:
        v = _get(cfg, key)
        if v is not None:
            out[key] = float(v)
    return out


def with_values(cfg, hp: dict[str, Any]):
    """A copy of cfg with the dotted keys of `hp` replaced (by numbers or by traced scalars)."""
    groups: dict[str, dict] = {}
    for key, v in hp.items():
        group, name = key.split(".")
        groups.setdefault(group, {})[name] = v
    return dataclasses.replace(cfg, **{g: dataclasses.replace(getattr(cfg, g), **kw) for g, kw in groups.items()})


def signature(cfg) -> str:
    """Jobs with equal signatures can share one compiled program (a vmapped one).

    The config as a canonical string, with every vector key replaced by whether it is set.
    """
    d = dataclasses.asdict(cfg)
    for key in VECTOR_KEYS:
        *path, name = key.split(".")
        node = d
        for p in path:
            node = node[p]
        node[name] = node[name] is not None
    return repr(sorted(flatten(d).items()))


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested config dict as dotted keys: {"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out
