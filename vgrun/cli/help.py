"""What vgrun's command line tells its user: `vgrun --help`, and shell completion of values.

`vgrun --help` prints `help_text()`, before Hydra starts: what vgrun is, examples, the presets,
the companion commands and the valid values of every key. `vgrun --cfg job` (Hydra's) prints
the composed config and `vgrun --hydra-help` Hydra's own help.

Shell completion is Hydra's (`vgrun -sc install=bash`, zsh, fish): it completes keys and a
group's options (model=r: model=resmlp, model=rnn). A plain key such as `act` holds one value
in the config, so Hydra can offer only that one; `answer_query` answers for those keys itself.
"""

from __future__ import annotations

import os
import sys
import textwrap

from vgrun.config import overrides
from vgrun.config.names import DATASETS, GRADIENT_FREE, INIT_NAMES, MODELS, OPTIMIZERS, PRETRAIN, TASKS

COMPLETION_FLAGS = ("-sc", "--shell-completion")
SHELLS = ("bash", "zsh", "fish")  # Hydra's completion plugins
HELP_FLAGS = ("--help", "-h")  # `--hydra-help` is Hydra's
WIDTH = 79  # an 80-column terminal

INTRO = """\
vgrun: a laboratory for the vanishing and exploding gradient problem. It
trains a network, records how the gradient flows back through every layer
(and time step) at every step, and gives a verdict (vanishing, exploding or
healthy) with the numbers behind it, a figure and a run folder.

Usage: vgrun [-m] [key=value ...]

Examples
  vgrun model=mlp depth=20 act=sigmoid          # one run
  vgrun -m depth=5,10,20 act=sigmoid,relu       # a sweep: every combination
  vgrun experiment=he2015                       # a preset, checking a paper
  vgrun model=custom model.target=PKG.MODULE:FACTORY    # your own JAX network
"""

COMPANIONS = """\
Companion commands
  vgrun-compare PATH... [--where K=V] [--by K]   runs and sweeps side by side
  vgrun-report PATH... [-o report.html]          one HTML page: runs, claims
"""

FLAGS = """\
Options
  -m, --multirun      a sweep over every list (a,b), range(5,25,5), glob(x*)
  --cfg job           print the config composed with the overrides, run nothing
  -sc install=bash    shell completion (also zsh, fish):
                        eval "$(vgrun -sc install=bash)"
  --version           vgrun's version
  --hydra-help        Hydra's own help and options
"""


def keys() -> list[tuple[str, str]]:
    """Every key with a fixed set of values, and those values as the help lists them."""
    named = overrides.NAMED
    one = ", ".join
    return [
        ("model", one(MODELS) + " (custom: your own network, model.target=PKG.MODULE:FACTORY)"),
        ("model.block", one(named["model.block"]) + " (resmlp: layers per residual block)"),
        ("model.form", one(named["model.form"]) + " (rnn)"),
        ("model.rec_init", one(named["model.rec_init"]) + " (recurrent weights)"),
        ("init", one(INIT_NAMES)),
        ("act", one(named["act"])),
        ("norm", one(named["norm"])),
        ("optimizer", one(OPTIMIZERS) + "; gradient-free: " + one(GRADIENT_FREE)),
        ("optimizer.schedule", one(named["optimizer.schedule"])),
        ("data", one(DATASETS) + "; sequence tasks (recurrent models): " + one(TASKS)),
        ("data.inputs", one(named["data.inputs"])),
        ("pretrain", one(PRETRAIN)),
        ("dtype", one(named["dtype"])),
        ("device", one(named["device"])),
        ("hydra/launcher", one(overrides.launchers()) + " (with -m)"),
    ]


def _rows(rows: list[tuple[str, str]], indent: int = 22) -> str:
    """`  key                 values`, wrapped under the values."""
    return "\n".join(textwrap.fill(text, WIDTH, initial_indent=f"  {name:<{indent - 2}}",
                                   subsequent_indent=" " * indent, break_on_hyphens=False)
                     for name, text in rows)


def help_text() -> str:
    """vgrun's help."""
    presets = textwrap.fill(", ".join(overrides.group_options("experiment")), WIDTH, initial_indent="  ",
                            subsequent_indent="  ")
    return "\n".join([
        INTRO,
        "Presets (experiment=NAME, files in vgrun/conf/experiment/)",
        presets,
        "",
        "Keys with named values (key=value; with -m, a list: act=sigmoid,relu)",
        _rows(keys()),
        "  and numbers and switches: depth=20, optimizer.lr=0.01, histograms=true, ...;",
        "  a group's fields take a dot: init.gain=2. Every key with its value:",
        "  vgrun --cfg job [key=value ...]",
        "",
        COMPANIONS,
        FLAGS,
    ])


def show(text: str) -> None:
    """Print `text`; a reader that stops early (`vgrun --help | head`) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit must not fail either


def complete(line: str) -> list[str] | None:
    """The completions of the last word of a command line being typed, when it is KEY=PARTIAL
    for a key with named values that is no config group (act=si: act=sigmoid); in a list, the
    last item (act=relu,si: act=relu,sigmoid). None: a word Hydra completes."""
    words = line.split()
    if line.endswith(" ") or len(words) < 2 or "=" not in words[-1]:
        return None
    key, value = words[-1].split("=", 1)
    names = overrides.named_values(key)
    if names is None:
        return None
    done, _, partial = value.rpartition(",")
    head = f"{key}={done}," if done else f"{key}="
    return [head + n for n in names if n.startswith(partial)]


def answer_query(args: list[str]) -> bool:
    """`vgrun -sc query=SHELL` with COMP_LINE set (what an installed completion runs): print the
    completions of a plain key's value, as Hydra's plugin for that shell would, and say whether
    it did; for any other word, False (Hydra answers)."""
    shell = next((a.split("=", 1)[1] for a in args if a.startswith("query=")), None)
    found = complete(os.environ.get("COMP_LINE", "")) if shell else None
    if found is None:
        return False
    print(("\n" if shell == "fish" else " ").join(found))
    return True
