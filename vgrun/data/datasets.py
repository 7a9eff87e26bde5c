"""Datasets: each a pure function of its config and a seed, split into train / held-out.

Built with NumPy on the host (a few ms) and moved to the device once; batches are
drawn inside the jitted loop. The split seed is fixed so that runs with different
`seed`s (init and batch order) share one split.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np

SPLIT_SEED = 0


class Dataset(NamedTuple):
    x_train: np.ndarray  # [N, d_in], or [N, H, W, C] images
    y_train: np.ndarray  # [N] int labels, or [N, d_out] regression targets
    x_test: np.ndarray
    y_test: np.ndarray
    n_out: int  # classes, or regression outputs
    classify: bool


def _split(x, y, test_frac: float, n_out: int, classify: bool) -> Dataset:
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = int(round(len(x) * test_frac))
    test, train = perm[:n_test], perm[n_test:]
    return Dataset(x[train], y[train], x[test], y[test], n_out, classify)


def digits(cfg) -> Dataset:
    """The 1797 8x8 digits (UCI, as bundled with scikit-learn), pixels scaled to [0, 1].

    Read straight from scikit-learn's data file: importing scikit-learn costs ~0.6 s.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("data=digits needs scikit-learn (pip install scikit-learn)")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = table[:, :-1] / 16.0, table[:, -1].astype(np.int32)
    if cfg.images:  # the pixels row by row: [N, 8, 8, 1] (height, width, one channel)
        x = x.reshape(-1, 8, 8, 1)
    return _split(x, y, cfg.test_frac, 10, True)


def spirals(cfg) -> Dataset:
    """`n_classes` interleaved spiral arms in 2-D (Lang & Witbrock 1988's two spirals, generalised)."""
    rng = np.random.default_rng(SPLIT_SEED)
    k, n = cfg.n_classes, cfg.n_samples
    y = np.arange(n) % k
    r = rng.uniform(0.05, 1.0, n)
    theta = 3 * np.pi * r + 2 * np.pi * y / k
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) + cfg.noise * 0.1 * rng.standard_normal((n, 2))
    return _split(x.astype(np.float32) * 2.0, y.astype(np.int32), cfg.test_frac, k, True)


def teacher(cfg) -> Dataset:
    """Regression on a random tanh teacher network (LeCun-normal weights), targets standardised."""
    rng = np.random.default_rng(SPLIT_SEED)
    x = rng.standard_normal((cfg.n_samples, cfg.in_dim)).astype(np.float32)
    h, fan_in = x, cfg.in_dim
    for _ in range(cfg.teacher_depth):
        h = np.tanh(h @ rng.standard_normal((fan_in, cfg.teacher_width)) * np.sqrt(1.5 / fan_in))
        fan_in = cfg.teacher_width
    y = h @ rng.standard_normal((fan_in, cfg.out_dim)) / np.sqrt(fan_in)
    y = (y - y.mean(0)) / y.std(0)
    y = y + cfg.noise * rng.standard_normal(y.shape)
    return _split(x, y.astype(np.float32), cfg.test_frac, cfg.out_dim, False)


def baseline_loss(data: Dataset) -> float:
    """The training loss of the best constant prediction: the label entropy (cross-entropy
    of predicting the class frequencies) or the target variance (MSE of predicting the mean)."""
    if data.classify:
        p = np.bincount(data.y_train, minlength=data.n_out) / len(data.y_train)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())
    return float(np.mean(np.var(data.y_train, axis=0)))


def custom(cfg) -> Dataset:
    """A researcher's own arrays: data.target names FN() -> (x_train, y_train, x_test, y_test).
    Integer labels [N] make a classification (classes: the largest label + 1), floating targets
    [N] or [N, d_out] a regression; x [N, ...] any shape (the network's batch is [B, ...])."""
    from vgrun.config import targets
    from vgrun.config.schema import ConfigError

    fn = targets.load("data.target", cfg.target, 0)
    try:
        arrays = [np.asarray(a) for a in fn()]
    except Exception as e:  # the user's code: whatever it raises
        raise ConfigError("data.target", cfg.target, f"a function that returns the arrays (it raised "
                                                     f"{type(e).__name__}: {e})") from None
    if len(arrays) != 4:
        raise ConfigError("data.target", cfg.target, f"a function returning (x_train, y_train, x_test, y_test) "
                                                     f"(it returned {len(arrays)} values)")
    x_train, y_train, x_test, y_test = arrays
    if len(x_train) != len(y_train) or len(x_test) != len(y_test) or x_train.shape[1:] != x_test.shape[1:] \
            or not len(x_train) or not len(x_test):
        shapes = ", ".join(str(list(a.shape)) for a in arrays)
        raise ConfigError("data.target", cfg.target, f"arrays of matching lengths and example shapes, none empty "
                                                     f"(got {shapes})")
    classify = np.issubdtype(y_train.dtype, np.integer)
    if classify:
        n_out = int(max(y_train.max(), y_test.max())) + 1
        y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
    else:
        y_train, y_test = (y.reshape(len(y), -1).astype(np.float32) for y in (y_train, y_test))
        n_out = y_train.shape[1]
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    return Dataset(x_train, y_train, x_test, y_test, n_out, bool(classify))


DATASETS = {"digits": digits, "spirals": spirals, "teacher": teacher, "custom": custom}


def load(cfg) -> Dataset:
    """The dataset `cfg.name`, its inputs standardized and scaled as `cfg.inputs` and `cfg.input_scale` say."""
    return prepare_inputs(DATASETS[cfg.name](cfg), cfg.inputs, cfg.input_scale)


def prepare_inputs(data: Dataset, inputs: str = "raw", scale: float = 1.0) -> Dataset:
    """standardize: each feature shifted and scaled to zero mean and unit variance over the
    training set (a constant feature, like the digits' always-blank corner pixels, stays 0),
    the held-out set with the same numbers; then every input times `scale`."""
    x_train, x_test = data.x_train, data.x_test
    if inputs == "standardize":
        mean, std = x_train.mean(0), x_train.std(0)
        std = np.where(std > 0, std, 1.0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if scale != 1.0:
        x_train, x_test = x_train * scale, x_test * scale
    dtype = data.x_train.dtype
    return data._replace(x_train=x_train.astype(dtype), x_test=x_test.astype(dtype))
