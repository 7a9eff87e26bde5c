"""Import paths of a researcher's own code (model.target, data.target), Hydra's way.

"pkg.module:name" or "pkg.module.name"; the module is looked up on sys.path and in the folder
vgrun runs from (a console script's sys.path does not hold it).
"""

from __future__ import annotations

import os
import sys

FORM = "an import path PKG.MODULE:NAME (or PKG.MODULE.NAME)"


def split(target) -> tuple[str, str]:
    """-> (module, attribute); ("", "") where target is not an import path."""
    module, sep, attr = str(target or "").partition(":")
    if not sep:
        module, _, attr = str(target or "").rpartition(".")
    return (module, attr) if module and attr and target else ("", "")


def with_cwd() -> None:
    """The folder vgrun runs from, on sys.path (last: installed packages win)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())


def module_found(module: str) -> bool:
    """Whether `module` can be imported, without importing it (its parent packages are)."""
    import importlib.util

    with_cwd()
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def load(key: str, target, arity: int):
    """The callable named by `target`, imported; a ConfigError (one line, naming the value) if it is
    missing, its module raises, or it cannot take `arity` positional arguments."""
    import importlib
    import inspect

    from vgrun.config.errors import ConfigError

    module, attr = split(target)
    if not module:
        raise ConfigError(key, target, FORM)
    with_cwd()
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # the user's module: whatever it raises on import
        raise ConfigError(key, target, f"an importable module (importing {module!r} raised "
                                       f"{type(e).__name__}: {e})") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        found = "not callable" if fn is not None else "no such attribute"
        raise ConfigError(key, target, f"a callable in {module} ({attr!r}: {found})")
    try:
        inspect.signature(fn).bind(*range(arity))
    except TypeError:
        raise ConfigError(key, target, f"a callable of {arity} positional arguments") from None
    except ValueError:  # no signature to read (a builtin): let the call decide
        pass
    return fn
