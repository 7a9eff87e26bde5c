"""vgrun: a command-line laboratory for the vanishing and exploding gradient problem."""

from vgrun.compare import load_table
from vgrun.store import load_run, load_runs

__all__ = ["load_run", "load_runs", "load_table"]
__version__ = "0.1.0"
