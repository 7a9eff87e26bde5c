"""The config schema (plain dataclasses) and its validation.

The YAML under `conf/` is pure data; these dataclasses are its schema, registered in
Hydra's ConfigStore by `register()` so a mistyped value (`optimizer.lr=abc`) or an
unknown key fails at composition. Names (activation, init, ...) are checked against
the registries by `validate`, which raises `ConfigError` naming the key, the bad value
and the valid choices. Nothing here imports JAX.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, List, Optional

from vgrun.config.names import (ACTS, BLOCKS, DATA, DTYPES, INIT_NAMES, MODELS, NORMS, OPTIMIZERS, REC_INITS, RECURRENT, RNN_FORMS,
                         SCHEDULES, TASKS)
from vgrun.config.names import DEVICES, GRADIENT_FREE, INPUTS, PRETRAIN, TASK_MIN_LEN


from vgrun.config.errors import UNKNOWN, ConfigError, did_you_mean  # noqa: F401  (re-exported)


@dataclass
class ModelConfig:
    name: str = "mlp"  # mlp | resmlp | rnn | lstm | gru | doya
    res_scale: float = 1.0  # resmlp block: h + res_scale * f(h)
    block: str = "one"  # resmlp: one (h + res_scale phi(N(h W + b))) | two (He et al. 2016: two layers, the
    # addition before the last activation: phi(h + res_scale N(phi(N(h W1 + b1)) W2 + b2)); depth odd)
    form: str = "standard"  # rnn: standard h_t = act(W h + U u + b) | pascanu x_t = W act(x) + U u + b
    rec_init: str = "normal"  # W_rec: normal (std rec_gain/sqrt(H)) | orthogonal | identity
    rec_gain: float = 1.0
    rec_radius: Optional[float] = None  # rescale W_rec to this spectral radius
    rec_sigma_max: Optional[float] = None  # or to this largest singular value
    forget_bias: float = 1.0  # lstm forget-gate bias (Gers et al. 2000)
    target: Optional[str] = None  # custom: PKG.MODULE:FACTORY, FACTORY(n_in, n_out, key) -> the network (vgrun.nn.custom)


@dataclass
class InitConfig:
    name: str = "xavier"
    gain: float = 1.0  # multiplies the scheme's std
    std: Optional[float] = None  # absolute weight std; overrides the scheme and gain
    mean: Optional[float] = None  # weight mean; overrides the scheme's (0, or yilmaz_poli's)
    sigma_w: float = 1.0  # `normal` only: W ~ N(0, sigma_w^2 / fan_in)
    sigma_b: float = 0.0  # bias std (all schemes)


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.03
    momentum: float = 0.9  # momentum
    b1: float = 0.9  # adam
    b2: float = 0.999  # adam
    eps: float = 1e-8  # adam, rmsprop
    decay: float = 0.9  # rmsprop
    eta_minus: float = 0.5  # rprop (Riedmiller & Braun 1993 defaults)
    eta_plus: float = 1.2  # rprop
    schedule: str = "constant"  # constant | cosine | exponential | warmup_cosine
    warmup_steps: int = 0  # warmup_cosine
    decay_rate: float = 0.01  # exponential: lr * decay_rate ** (step / steps)
    clip_norm: Optional[float] = None  # clip by global norm (Pascanu et al. 2013)
    clip_value: Optional[float] = None  # clip each entry to [-v, v]
    popsize: int = 64  # gradient-free (vgrun/evolve.py): candidate networks per generation
    sigma: float = 0.02  # gradient-free: std of the weight perturbations (ga mutation, ES search std)


@dataclass
class DataConfig:
    name: str = "digits"  # digits | spirals | teacher | custom (data.target)
    test_frac: float = 0.25  # held-out share
    n_samples: int = 2000  # synthetic tasks
    in_dim: int = 16  # teacher input size
    out_dim: int = 4  # teacher output size
    n_classes: int = 3  # spirals: arms
    noise: float = 0.1  # label / coordinate noise for synthetic tasks
    teacher_depth: int = 2  # teacher: hidden layers of the random tanh teacher
    teacher_width: int = 32
    inputs: str = "raw"  # raw (as the dataset gives them: digits' pixels / 16 in [0, 1]) | standardize (each
    # feature to zero mean and unit variance over the training set, the held-out set with the same shift and scale)
    input_scale: float = 1.0  # then every input multiplied by this
    images: bool = False  # digits: each example an image [8, 8, 1] (H, W, C) instead of 64 features (model=custom)
    target: Optional[str] = None  # custom: PKG.MODULE:FN, FN() -> (x_train, y_train, x_test, y_test) arrays


@dataclass
class PretrainConfig:
    """Greedy layer-wise pretraining of the hidden layers before fine-tuning (vgrun/pretrain.py)."""

    name: str = "none"  # none | autoencoder (Bengio et al. 2007) | rbm (Hinton, Osindero & Teh 2006)
    steps: int = 500  # updates per layer
    lr: float = 0.1  # SGD step (autoencoder) / CD learning rate (rbm)
    batch_size: int = 64
    k: int = 1  # rbm: Gibbs steps of CD-k
    log_every: int = 50  # reconstruction error recorded every this many updates (divides steps)


@dataclass
class DiagnosisConfig:
    vanish_ratio: float = 1e-2  # |delta_first| / |delta_last| below this: vanishing
    explode_ratio: float = 1e2  # above this: exploding
    sat_tol: float = 0.1  # a unit is saturated where |phi'(z)| < sat_tol * sup|phi'| on the whole batch
    sat_frac: float = 0.5  # "many saturated units" above this share
    stall_frac: float = 0.9  # the loss learned: final below this share of its initial and the baseline's loss
    dead_ratio: float = 1e-6  # a residual branch is dead where |dL/dz_l| < this * |dL/dh_l| (its stream)
    memory_ratio: float = 1e-3  # recurrent: effective memory = horizon where |dL/dh_t| > this * |dL/dh_T|


@dataclass
class DoyaConfig:
    """Doya (1993)'s one-neuron network x_{t+1} = (1-eps) x_t + eps sigmoid(w x_t + b) + eps w_in u_t."""

    w: float = 5.0  # self-connection weight (bistable for a range of b when w > 4)
    eps: float = 0.1  # Euler step of the continuous dynamics
    w_in: float = 0.0  # input weight w' (u = 0 in the loss landscape)
    horizon: int = 300  # T, time steps simulated for the loss (eps * T time constants)
    x0: float = 0.5  # initial state
    target: float = 0.855  # L(b) = (target - x(T))^2
    b_min: float = -4.0  # loss landscape and bifurcation diagram over b in [b_min, b_max]
    b_max: float = -1.0
    n_b: int = 3001
    gd_b0: float = -2.0  # gradient descent on b starts here (above the cliff)
    gd_lr: float = 5.0  # large enough to reach the cliff within gd_steps (0.05 creeps: |dL/db| ~ 0.014 at b0)
    gd_steps: int = 50


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)
    doya: DoyaConfig = field(default_factory=DoyaConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    depth: int = 10  # hidden layers (recurrent: stacked recurrent layers)
    width: int = 128  # units per hidden layer
    seq_len: int = 50  # recurrent tasks: sequence length T
    act: str = "tanh"
    norm: str = "none"  # none | batchnorm | layernorm
    steps: int = 2000
    batch_size: int = 128
    seed: int = 0
    seeds: int = 1  # train seeds seed .. seed+seeds-1 as one vmapped program (one run folder, a `seed` column)
    dtype: str = "float32"  # float64 measures gradients far below float32's range
    trace_every: int = 1  # record per-layer traces every k steps
    chunks: int = 20  # the run is scanned in chunks: progress, Ctrl-C and held-out metrics between chunks
    histograms: bool = False  # feed-forward: log10-magnitude histograms of W, dL/dW, delta per layer at step 0 and
    # each chunk's end (histograms.parquet, histograms.png); off by default: its program costs ~1.7 s of compiling
    lesion: bool = False  # mlp / resmlp: after training, the held-out accuracy with each hidden layer (block) deleted
    # in turn (vgrun/science/lesion.py; summary.json's `lesion`)
    isometry: bool = False  # plain mlp: the squared singular values of the hidden stack's Jacobian at initialization
    # against the free-probability prediction (vgrun/science/isometry.py; summary.json's `isometry`)
    bn_momentum: float = 0.9  # batchnorm running statistics
    threads: int = 1  # XLA CPU threads; 1 is fastest for small nets (see README)
    device: str = "auto"  # auto (JAX's default backend) | cpu | gpu
    fail_fast: bool = False  # -m: stop the sweep at the first failed job (later jobs are skipped)
    verbose: bool = False  # -m: print each job's whole report (else one line a job; report.txt holds the report)
    resume: Optional[str] = None  # -m: a sweep folder to finish: skip its completed/diverged jobs, rerun the rest
    expect: List[Any] = field(default_factory=list)  # claims a preset makes about its results (vgrun/claims.py)
    check: bool = True  # judge the `expect` claims after the run or sweep; false: run without judging


def _choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(choices), choices)


def _positive(key: str, value) -> None:
    if not value > 0:
        raise ConfigError(key, value, "a number > 0")


def validate(cfg: Config) -> Config:
    """Check names against the registries and numbers against their ranges."""
    _choice("model", cfg.model.name, MODELS)
    _choice("act", cfg.act, ACTS)
    _choice("init", cfg.init.name, INIT_NAMES)
    _choice("norm", cfg.norm, NORMS)
    _choice("model.form", cfg.model.form, RNN_FORMS)
    _choice("model.rec_init", cfg.model.rec_init, REC_INITS)
    _choice("model.block", cfg.model.block, BLOCKS)
    if cfg.model.name == "resmlp" and cfg.model.block == "two" and cfg.depth % 2 == 0:
        raise ConfigError("depth", cfg.depth, "an odd depth with model.block=two: the input layer and two layers per "
                                              "block (He et al.'s 20 and 56 layers with the output: depth=19, 55)")
    _choice("optimizer", cfg.optimizer.name, OPTIMIZERS + GRADIENT_FREE)
    _choice("optimizer.schedule", cfg.optimizer.schedule, SCHEDULES)
    if cfg.optimizer.schedule == "warmup_cosine" and not 0 <= cfg.optimizer.warmup_steps < cfg.steps:
        raise ConfigError("optimizer.warmup_steps", cfg.optimizer.warmup_steps,
                          f"an integer in [0, steps) = [0, {cfg.steps}) with optimizer.schedule=warmup_cosine")
    _choice("data", cfg.data.name, DATA)
    _choice("dtype", cfg.dtype, DTYPES)
    _choice("device", cfg.device, DEVICES)
    _validate_remedies(cfg)
    for key in ("depth", "width", "steps", "batch_size", "trace_every", "chunks", "threads", "seq_len", "seeds"):
        _positive(key, getattr(cfg, key))
    for key in ("lr",):
        _positive(f"optimizer.{key}", getattr(cfg.optimizer, key))
    for key in ("clip_norm", "clip_value"):
        value = getattr(cfg.optimizer, key)
        if value is not None:
            _positive(f"optimizer.{key}", value)
    if cfg.init.std is not None and cfg.init.std < 0:
        raise ConfigError("init.std", cfg.init.std, "a number >= 0")
    if cfg.init.sigma_b < 0:
        raise ConfigError("init.sigma_b", cfg.init.sigma_b, "a number >= 0")
    _choice("data.inputs", cfg.data.inputs, INPUTS)
    _positive("data.input_scale", cfg.data.input_scale)
    if cfg.data.name in TASKS and (cfg.data.inputs, cfg.data.input_scale) != ("raw", 1.0):
        raise ConfigError("data.inputs" if cfg.data.inputs != "raw" else "data.input_scale",
                          cfg.data.inputs if cfg.data.inputs != "raw" else cfg.data.input_scale,
                          f"its default with data={cfg.data.name} (a sequence task's inputs are its symbols)")
    if not 0 < cfg.data.test_frac < 1:
        raise ConfigError("data.test_frac", cfg.data.test_frac, "a number in (0, 1)")
    recurrent, sequential = cfg.model.name in RECURRENT, cfg.data.name in TASKS
    if recurrent and not sequential:
        raise ConfigError("data", cfg.data.name, f"a sequence task for model={cfg.model.name}: " + ", ".join(TASKS))
    if sequential and not recurrent and cfg.model.name != "custom":
        raise ConfigError("model", cfg.model.name, f"a recurrent model (or custom) for data={cfg.data.name}: "
                          + ", ".join(RECURRENT))
    if sequential and cfg.model.name == "custom" and cfg.data.name == "copy":
        raise ConfigError("data", cfg.data.name, "a task read out at its last step with model=custom: "
                          + ", ".join(t for t in TASKS if t != "copy"))
    if sequential and cfg.seq_len < TASK_MIN_LEN[cfg.data.name]:
        shortest = TASK_MIN_LEN[cfg.data.name]
        raise ConfigError("seq_len", cfg.seq_len, f"an integer >= {shortest} for data={cfg.data.name}")
    if not 0 <= cfg.bn_momentum < 1:
        raise ConfigError("bn_momentum", cfg.bn_momentum, "a number in [0, 1)")
    _validate_diagnosis(cfg.diagnosis)
    if cfg.lesion and (cfg.model.name not in ("mlp", "resmlp") or cfg.depth < 2 or cfg.seeds > 1):
        raise ConfigError("lesion", True, "false, or model=mlp or resmlp with depth >= 2 and seeds=1 (it deletes "
                                          "hidden layers of one trained network)")
    if cfg.data.name == "custom":
        _validate_target("data.target", cfg.data.target, "FN", "FN() -> (x_train, y_train, x_test, y_test)")
    if cfg.data.images and (cfg.data.name != "digits" or cfg.model.name != "custom"):
        raise ConfigError("data.images", True, "false, or data=digits with model=custom (a network of one's own "
                                               "that takes [B, 8, 8, 1] images)")
    if cfg.isometry and (cfg.model.name != "mlp" or cfg.norm != "none" or cfg.depth < 2):
        raise ConfigError("isometry", True, "false, or model=mlp with norm=none and depth >= 2 (the theory is of "
                                            "plain random layers)")
    _validate_memory(cfg)
    if cfg.model.name == "custom":
        _validate_custom(cfg)
    if cfg.model.name == "doya":
        _validate_doya_alone(cfg)
    d = cfg.doya
    if not 0 < d.eps <= 1:  # above 1 the map's slope can turn negative: the stability rule no longer holds
        raise ConfigError("doya.eps", d.eps, "a number in (0, 1]")
    if not 0 < d.x0 < 1:
        raise ConfigError("doya.x0", d.x0, "a number in (0, 1)")
    if not d.b_min < d.b_max:
        raise ConfigError("doya.b_max", d.b_max, f"a number > doya.b_min={d.b_min}")
    for key in ("horizon", "gd_steps", "gd_lr"):
        _positive(f"doya.{key}", getattr(d, key))
    if d.n_b < 2:
        raise ConfigError("doya.n_b", d.n_b, "an integer >= 2")
    if cfg.steps % cfg.trace_every:
        raise ConfigError("trace_every", cfg.trace_every, f"a divisor of steps={cfg.steps}")
    return cfg


def _validate_diagnosis(d: DiagnosisConfig) -> None:
    for key in ("vanish_ratio", "explode_ratio", "sat_tol", "memory_ratio"):
        _positive(f"diagnosis.{key}", getattr(d, key))
    if not d.explode_ratio > d.vanish_ratio:
        raise ConfigError("diagnosis.explode_ratio", d.explode_ratio,
                          f"a number > diagnosis.vanish_ratio={d.vanish_ratio}")
    for key in ("sat_frac", "stall_frac"):
        if not 0 < getattr(d, key) <= 1:
            raise ConfigError(f"diagnosis.{key}", getattr(d, key), "a number in (0, 1]")
    if not 0 <= d.dead_ratio < 1:
        raise ConfigError("diagnosis.dead_ratio", d.dead_ratio, "a number in [0, 1)")


def _memory_bytes() -> int | None:
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _validate_memory(cfg: Config) -> None:
    """A network whose weights alone (times the copies training keeps: weights, gradient, the
    optimizer's state) exceed this machine's memory is named up front, not left to overflow."""
    if cfg.model.name == "doya":
        return
    per_layer = {"lstm": 8, "gru": 6, "rnn": 2}.get(cfg.model.name, 1) * cfg.width ** 2
    need = (cfg.depth + 1) * per_layer * (8 if cfg.dtype == "float64" else 4) * 4 * cfg.seeds
    have = _memory_bytes()
    if have and need > have:
        raise ConfigError("width", cfg.width, f"a network that fits in memory: depth={cfg.depth} width={cfg.width} "
                                              f"needs ~{need / 2**30:.3g} GiB, this machine has {have / 2**30:.3g} GiB")


_DOYA_KEYS = ("model", "doya", "seed", "device", "expect", "check", "fail_fast", "resume", "threads")


def _validate_doya_alone(cfg: Config) -> None:
    """model=doya analyses one neuron (the doya.* keys): a setting of a trained network is a mistake."""
    defaults = Config()
    for f in fields(Config):
        if f.name in _DOYA_KEYS:
            continue
        value, default = getattr(cfg, f.name), getattr(defaults, f.name)
        if value == default:
            continue
        if is_dataclass(value):  # a group: its name, else its first changed key
            changed = [g.name for g in fields(value) if getattr(value, g.name) != getattr(default, g.name)]
            key = f.name if "name" in changed else f"{f.name}.{changed[0]}"
            value = getattr(value, "name" if "name" in changed else changed[0])
        else:
            key = f.name
        raise ConfigError(key, value, f"its default with model=doya, which analyses one neuron and ignores {key} "
                                      "(its settings are the doya.* keys, e.g. doya.w=5 doya.horizon=300)")


def _validate_target(key: str, target, name: str, call: str) -> None:
    """An import path whose module exists (importing it waits for JAX: vgrun.config.targets.load)."""
    from vgrun.config import targets

    form = targets.FORM.replace("NAME", name) + f", {call}"
    module, _ = targets.split(target)
    if not module:
        raise ConfigError(key, target, form)
    if not targets.module_found(module):
        raise ConfigError(key, target, f"{form}, its module importable ({module!r} was not found)")


def _validate_custom(cfg: Config) -> None:
    """model=custom: a target whose module exists (importing it waits for JAX: vgrun.nn.custom), and
    only what works on any network (histograms, lesions and pretraining read vgrun's own layers)."""
    _validate_target("model.target", cfg.model.target, "FACTORY", "FACTORY(n_in, n_out, key)")
    if cfg.histograms:
        raise ConfigError("histograms", True, "false with model=custom (histograms read vgrun's own layers)")


def _validate_remedies(cfg: Config) -> None:
    """Gradient-free optimizers and pretraining (vgrun/evolve.py, vgrun/pretrain.py)."""
    feed_forward = ("mlp", "resmlp")
    if cfg.optimizer.name in GRADIENT_FREE:
        _choice(f"model (optimizer={cfg.optimizer.name})", cfg.model.name, feed_forward)
        if cfg.optimizer.popsize < 2:
            raise ConfigError("optimizer.popsize", cfg.optimizer.popsize, "an integer >= 2")
        _positive("optimizer.sigma", cfg.optimizer.sigma)
    p = cfg.pretrain
    _choice("pretrain", p.name, PRETRAIN)
    if p.name == "none":
        return
    _choice(f"model (pretrain={p.name})", cfg.model.name, ("mlp",))
    _choice(f"norm (pretrain={p.name})", cfg.norm, ("none",))
    if cfg.optimizer.name in GRADIENT_FREE:
        raise ConfigError("pretrain", p.name, f"none with optimizer={cfg.optimizer.name} (pretraining is followed by backprop)")
    if p.name == "rbm":  # an RBM's hidden units are Bernoulli with P(h=1) = sigmoid(.)
        _choice("act (pretrain=rbm)", cfg.act, ("sigmoid",))
    for key in ("steps", "lr", "batch_size", "k", "log_every"):
        _positive(f"pretrain.{key}", getattr(p, key))
    if p.steps % p.log_every:
        raise ConfigError("pretrain.log_every", p.log_every, f"a divisor of pretrain.steps={p.steps}")
