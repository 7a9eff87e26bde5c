"""The writers' libraries (matplotlib, pandas, pyarrow), imported in the background while XLA works."""

from __future__ import annotations

import threading
import time


def preload(delay: float = 0.0) -> threading.Thread:
    """Import the writers' libraries (slow; see benchmarks/README.md) in the background while XLA works.
    delay: start after this many seconds, at the lowest priority (Linux: nice 19, this
    thread only): a sweep's parent waiting for its workers, whose start it must not slow."""
    def work():
        if delay:
            time.sleep(delay)  # the imports hold the GIL: the parent first hands the workers their jobs
            from vgrun.training.cores import lowest_priority

            lowest_priority()
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401

    # numpy.ma walks numpy's dtype table when first imported (matplotlib imports it); in the
    # thread that walk raced with JAX registering its dtypes here ("dictionary changed size
    # during iteration"), leaving a half-imported matplotlib that failed the run's plots
    import numpy.ma  # noqa: F401

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread
