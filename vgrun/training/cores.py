"""One core per job: parallel sweep workers each claim a free core and pin themselves to it.

At width ~128 one network does not fill a CPU: two single-threaded XLA processes, one per
core, train faster in total than one process with two threads (README,
"Sweeps"). A worker takes the first core whose lock file it can lock (`flock`, released by
the kernel when the job ends or the process dies, so a crash never leaks a core), and
pins itself there before JAX starts. When every core is taken, or the platform has no
affinity or no flock, the job runs unpinned: pinning is an optimisation, never a failure.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

_ORIGINAL = None  # the affinity the process started with: a reused worker must not stay on its last core


def lock_dir() -> Path:
    """Machine-wide, per user: two sweeps running at once share out the same cores."""
    return Path(os.environ.get("VGRUN_CORE_LOCKS", Path(tempfile.gettempdir()) / f"vgrun-cores-{os.getuid()}"))


class CoreClaim:
    """Held for the duration of one job: `core` is the core this process is pinned to, or None."""

    def __init__(self):
        self.core, self._fd = None, None

    def claim(self) -> CoreClaim:
        global _ORIGINAL
        try:
            import fcntl

            if _ORIGINAL is None:
                _ORIGINAL = sorted(os.sched_getaffinity(0))
            pin_all(_ORIGINAL)
            if len(_ORIGINAL) < 2:
                return self
            lock_dir().mkdir(parents=True, exist_ok=True)
            for core in _ORIGINAL:
                fd = os.open(lock_dir() / f"core-{core}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                pin_all([core])
                self.core, self._fd = core, fd
                logging.getLogger("vgrun").info("pinned to core %d of %s (process %d)", core, _ORIGINAL, os.getpid())
                return self
        except (AttributeError, ImportError, OSError):
            pass  # no affinity (macOS, Windows) or no flock: run unpinned
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self.core, self._fd = None, None


def pin_all(cpus) -> None:
    """Set the affinity of every thread of this process: on Linux sched_setaffinity(0) moves only the
    calling thread, and a reused worker's XLA threads were started on the previous job's core."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass  # a thread that just exited


def lowest_priority() -> None:
    """The calling thread at the lowest priority (Linux: nice 19, this thread only): host work
    that should take only what the training program or a sweep's workers leave idle. Where
    the platform cannot, nothing happens."""
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
