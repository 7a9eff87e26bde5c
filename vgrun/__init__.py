"""vgrun: a command-line laboratory for the vanishing and exploding gradient problem.

The public API (see vgrun.api): compose, train, diagnose, save, load_run, load_runs, load_table;
tap and traced_value_and_grad (vgrun.probes.taps) for any JAX function, and Recorder
(vgrun.recorder) to write a loop of one's own as a run folder.
Imported on first use, so `import vgrun` stays light.
"""

__version__ = "0.1.0"

_API = {
    "compose": "vgrun.api", "train": "vgrun.api", "diagnose": "vgrun.api", "save": "vgrun.api", "Run": "vgrun.api",
    "Recorder": "vgrun.recorder", "tap": "vgrun.probes.taps", "traced_value_and_grad": "vgrun.probes.taps",
    "load_run": "vgrun.io.store", "load_runs": "vgrun.io.store", "load_table": "vgrun.io.table",
}
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'vgrun' has no attribute {name!r}")
