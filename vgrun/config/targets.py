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
