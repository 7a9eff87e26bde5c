"""Compile a job's programs once per machine (or shared cache), not once per process.

A parallel sweep starts its workers together, and each would compile the same programs:
duplicated work that also slows each compile down (timings in benchmarks/README.md).
Here every program is compiled under a lock named by its HLO (`flock` on a file beside
JAX's persistent compilation cache): the first process to take a program's lock compiles
it into the cache, the others take the programs nobody holds, then wait for the rest
and load them from the cache. A process keeps at most one lock at a time, so
none can deadlock, and the kernel drops the lock of a process that dies. Without a
persistent cache on a local path, or without flock, every process compiles its own.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _lock_dir() -> Path | None:
    import jax

    cache = jax.config.jax_compilation_cache_dir
    if not cache or "://" in str(cache):
        return None
    try:
        import fcntl  # noqa: F401

        path = Path(cache) / "vgrun-compiling"
        path.mkdir(parents=True, exist_ok=True)
        return path
    except (ImportError, OSError):
        return None


def _key(lowered) -> str:
    import jax

    text = lowered.as_text()
    return hashlib.sha256(f"{jax.__version__} {jax.default_backend()}\n{text}".encode()).hexdigest()[:32]


class _Lock:
    """A program's lock file. A filesystem without working locks (some cluster mounts
    refuse flock) or an unwritable cache makes every lock a free one: never a failure."""

    def __init__(self, path: Path | None):  # None: no shared cache, nothing to coordinate
        try:
            self.fd = None if path is None else os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            self.fd = None

    def take(self, wait: bool) -> bool:
        if self.fd is None:
            return True
        import fcntl

        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        except OSError:  # no locking here: compile without coordination
            pass
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # drops the lock


def compile_all(lowered: list, workers: int | None = None) -> list:
    """The compiled executables of `lowered` (jax Lowered objects), in order; programs are
    taken longest-first by `workers` threads (default: the cores this process may use)."""
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(lowered)))
    where = _lock_dir()
    paths = [None if where is None else where / f"{_key(program)}.lock" for program in lowered]
    out: list = [None] * len(lowered)
    pending = list(range(len(lowered)))
    guard = threading.Lock()

    def claim():
        """The next program nobody compiles, locked; else the first pending one, waited for."""
        with guard:
            if not pending:
                return None
            for i in pending:
                lock = _Lock(paths[i])
                if lock.take(wait=False):
                    pending.remove(i)
                    return i, lock
                lock.close()
            i = pending.pop(0)
        lock = _Lock(paths[i])
        lock.take(wait=True)  # another process compiles it: this returns once it is in the cache
        return i, lock

    def work():
        while (got := claim()) is not None:
            i, lock = got
            try:
                out[i] = lowered[i].compile()  # a cache hit when another process compiled it meanwhile
            finally:
                lock.close()

    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(work) for _ in range(workers)]:
            f.result()
    return out
