"""Check command-line overrides against the schema before Hydra composes them.

Hydra rejects bad input too, but in several lines, without the valid keys, and with a
hint about stack traces. This pass gives one line per mistake: the key, the bad value,
and what would be valid. Ranges (depth > 0, ...) are checked after composition by
`config.validate`, per job.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from vgrun.config.schema import UNKNOWN, Config, ConfigError
from vgrun.config.names import ACTS, BLOCKS, DEVICES, DTYPES, INPUTS, NORMS, REC_INITS, RNN_FORMS, SCHEDULES

CONF = Path(__file__).parents[1] / "conf"  # vgrun/conf
GROUPS = ("model", "init", "optimizer", "data", "pretrain", "experiment")  # config groups: chosen by file name
# plain keys with a fixed set of names
NAMED = {"act": ACTS, "norm": NORMS, "dtype": DTYPES, "device": DEVICES, "data.inputs": INPUTS,
         "optimizer.schedule": SCHEDULES, "model.block": BLOCKS, "model.form": RNN_FORMS, "model.rec_init": REC_INITS}
_NUMBER = {int: (int,), float: (int, float)}


def is_multirun(args: list[str]) -> bool:
    """Whether a command line runs a sweep (-m / --multirun)."""
    return any(a in ("-m", "--multirun") for a in args)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def launchers() -> list[str]:
    """The `hydra/launcher=` choices installed here: Hydra's basic, vgrun's, and the plugins found."""
    from importlib.util import find_spec

    names = ["basic", "vectorized", *group_options("hydra/launcher")]
    if find_spec("hydra_plugins.hydra_joblib_launcher"):
        names.append("joblib")
    if find_spec("hydra_plugins.hydra_submitit_launcher"):
        names += ["submitit_local", "submitit_slurm"]
    return sorted(set(names) - {"vgrun_cores_schema"})


def named_values(key: str) -> list[str] | None:
    """The valid values of a plain key that has names for them (act: sigmoid, tanh, ...; a switch:
    true, false); None for any other key (a config group, a number, a path) or no key at all."""
    if key in NAMED:
        return list(NAMED[key])
    return ["true", "false"] if is_value_key(key) and _leaf_type(key) is bool else None


def _fields(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _leaf_type(key: str):
    """The schema type of a dotted key, or raise ConfigError listing the valid keys."""
    cls, parts = Config, key.split(".")
    for i, part in enumerate(parts):
        fields = _fields(cls)
        if part not in fields:
            prefix = ".".join(parts[:i])
            valid = ", ".join(sorted((f"{prefix}.{f}" if prefix else f) for f in fields))
            near = [".".join([*parts[:i], f, *parts[i + 1:]]) for f in fields]  # optimzer.lr: optimizer.lr
            raise ConfigError(key, UNKNOWN, f"a known key: {valid}", near)
        cls = fields[part]
    if dataclasses.is_dataclass(cls):
        raise ConfigError(key, UNKNOWN, f"a key inside {key}: " + ", ".join(f"{key}.{f}" for f in _fields(cls)))
    return cls


def is_value_key(key: str) -> bool:
    """Whether `key` is a plain key of the schema (`depth`, `optimizer.lr`), not a config group
    nor anything else: whatever its value, a job's config composes alike, and `check` judges
    the value."""
    if key in GROUPS:
        return False
    try:  # +key, ~key, hydra/launcher, hydra.*: not schema keys either
        _leaf_type(key)
    except ConfigError:
        return False
    return True


def _check_value(key: str, typ, value) -> None:
    optional = typing.get_origin(typ) is typing.Union and type(None) in typing.get_args(typ)
    if optional:
        if value is None:
            return
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    if key in NAMED and value not in NAMED[key]:
        raise ConfigError(key, value, "one of " + ", ".join(NAMED[key]), NAMED[key])
    if typ in _NUMBER and (isinstance(value, bool) or not isinstance(value, _NUMBER[typ])):
        raise ConfigError(key, value, f"{'an integer' if typ is int else 'a number'}" + (" or null" if optional else ""))
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(key, value, "true or false", ("true", "false"))
    if typing.get_origin(typ) is list and not isinstance(value, list):
        raise ConfigError(key, value, "a list, e.g. [...] (expect: a list of claims, see vgrun/claims.py)")


class OverrideSyntaxError(ConfigError):
    """An override Hydra's grammar cannot read (`depth==3`, `depth=[1,2`): which one, and why."""

    def __init__(self, arg: str, why: str):
        self.key, self.value, self.valid = arg, UNKNOWN, "key=value"
        ValueError.__init__(self, f"cannot read the override {arg!r}: {why}; expected key=value, e.g. depth=20, "
                                  "or a sweep "
                                  "with -m: depth=5,10,20, range(5,25,5), init=glob(xavier*) "
                                  "(https://hydra.cc/docs/advanced/override_grammar/basic)")


def _parse(args: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser, parsed = OverridesParser.create(), []
    for a in args:
        try:
            parsed += parser.parse_overrides([a])
        except OverrideParseException as e:
            lines = str(e).splitlines()  # "Error parsing override ...", the grammar's complaint, a link
            why = lines[1] if len(lines) > 1 and not lines[1].startswith("See ") else lines[0]
            raise OverrideSyntaxError(a, why.split(" expecting ")[0]) from None
    return parsed


def _values(o, key: str) -> list:
    """An override's values: one, or a sweep's (a glob picks among a config group's options)."""
    from hydra.core.override_parser.types import Glob

    value = o.value()
    if isinstance(value, Glob):
        pattern = o.input_line.split("=", 1)[1] if o.input_line else str(value)
        if key not in GROUPS:
            raise ConfigError(key, pattern, "a value or a list (glob() picks among a config group's options: "
                                            + ", ".join(GROUPS) + ")")
        options = group_options(key)
        picked = value.filter(options)
        if not picked:
            raise ConfigError(key, pattern, "a pattern matching one of " + ", ".join(options))
        return picked
    return list(o.sweep_iterator()) if o.is_sweep_override() else [value]


def check(args: list[str]) -> None:
    """Raise ConfigError for the first bad override among command-line `args`."""
    multirun = is_multirun(args)
    for o in _parse([a for a in args if "=" in a and not a.startswith("-")]):
        key = o.key_or_group
        if key == "hydra/launcher" and str(o.value()) not in launchers():
            raise ConfigError(key, o.value(), "one of " + ", ".join(launchers()), launchers())
        if o.is_hydra_override() or key.startswith("hydra/") or o.is_delete():
            continue
        if o.is_sweep_override() and not multirun:
            value = o.input_line.split("=", 1)[1]
            raise ConfigError(key, value, f"one value; a sweep needs -m: vgrun -m {o.input_line}")
        values = _values(o, key)
        if key in GROUPS:
            options = group_options(key)
            for v in values:
                if str(v) not in options:
                    raise ConfigError(key, v, "one of " + ", ".join(options), options)
            continue
        typ = _leaf_type(key)
        for v in values:
            _check_value(key, typ, v)
