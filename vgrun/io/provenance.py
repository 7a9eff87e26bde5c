"""What a run folder records about where it ran: versions, commit, backend, device, CPU, command,
and the config reduced to what applies to the run."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from vgrun.config.names import RECURRENT

PACKAGES = ("vgrun", "jax", "jaxlib", "optax", "hydra-core", "omegaconf", "numpy")

# data keys each source reads (vgrun.data.datasets; the sequence tasks read none but the name)
DATA_KEYS = {
    "digits": ("name", "test_frac", "inputs", "input_scale", "images"),
    "custom": ("name", "target", "inputs", "input_scale"),
    "spirals": ("name", "test_frac", "n_samples", "n_classes", "noise", "inputs", "input_scale"),
    "teacher": ("name", "test_frac", "n_samples", "in_dim", "out_dim", "noise", "teacher_depth", "teacher_width",
                "inputs", "input_scale"),
}
MODEL_KEYS = {  # model keys each model reads
    "mlp": ("name",), "custom": ("name", "target"), "resmlp": ("name", "res_scale", "block"), "doya": ("name",),
    "rnn": ("name", "form", "rec_init", "rec_gain", "rec_radius", "rec_sigma_max"),
    "gru": ("name", "rec_init", "rec_gain", "rec_radius", "rec_sigma_max"),
    "lstm": ("name", "rec_init", "rec_gain", "rec_radius", "rec_sigma_max", "forget_bias"),
}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the checkout vgrun runs from (with '-dirty' for uncommitted changes), or None."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=5).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", "vgrun"))
        return (commit + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(argv=None) -> dict:
    """The software, hardware and command of this process (JAX's backend if it has started)."""
    env = {"versions": {name: _version(name) for name in PACKAGES}, "python": platform.python_version(),
           "git_commit": _git_commit(), "cpu": _cpu(), "platform": platform.platform()}
    if "jax" in sys.modules:
        import jax

        device = jax.config.jax_default_device or jax.devices()[0]
        env.update(backend=jax.default_backend(), device=str(getattr(device, "device_kind", device)))
    argv = sys.argv if argv is None else argv
    env["command"] = " ".join(shlex.quote(a) for a in ["vgrun" if argv[0].endswith(("main.py", "vgrun")) else argv[0],
                                                         *argv[1:]])
    return env


def config_dict(cfg, problem=None) -> dict:
    """The config as stored: only what applies to the run (no doya keys on an MLP, no recurrent keys
    on a feed-forward net, only the data keys its source reads), with the data's real input and
    output sizes when the problem is known."""
    full = asdict(cfg)
    name = cfg.model.name
    full["model"] = {k: v for k, v in full["model"].items() if k in MODEL_KEYS.get(name, full["model"])}
    if name == "doya":
        return {k: full[k] for k in ("model", "doya", "seed", "device", "expect", "check")}
    del full["doya"]
    keys = DATA_KEYS.get(cfg.data.name, ("name",))
    full["data"] = {k: v for k, v in full["data"].items() if k in keys}
    if problem is not None:
        full["data"].update(n_in=problem.n_in, n_out=problem.n_out)
        if problem.seq_steps:
            full["data"]["seq_steps"] = problem.seq_steps
    if cfg.pretrain.name == "none":
        full["pretrain"] = {"name": "none"}
    if name not in RECURRENT and not (name == "custom" and problem is not None and problem.seq_steps):
        del full["seq_len"]
    if cfg.norm != "batchnorm" or name == "custom":
        del full["bn_momentum"]
    if name == "custom":  # its own network: vgrun's layer settings do not apply; depth counts its taps
        for key in ("init", "width", "act", "norm", "pretrain", "lesion", "histograms", "isometry"):
            del full[key]
    return full
