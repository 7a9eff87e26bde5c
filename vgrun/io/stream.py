"""A run's measurements as they are made: after every chunk, on disk, so that a run killed
without a word (SIGKILL, out of memory, a power cut) keeps every chunk it finished, and
`resume=<run folder>` continues from the last one.

    <run>/partial/chunk-0003.npz   chunk 3: its metrics (m/<name>, [members,] steps) and traces
                                   (t/<field>), and the histograms at its end (h/<quantity>)
    <run>/partial/start.npz        the histograms at step 0 (when histograms=true)
    <run>/partial/state.npz        the training state after a chunk: the carry's leaves
                                   (parameters, optimizer state, batch key, step, hp),
                                   `chunks_done`, and each member's end (ends, status, tests);
                                   after every chunk while the state is small (16 MiB), else
                                   at most every 10 s and when the run ends or stops

Each file is NumPy's .npz, written to a temporary name and renamed into place, and the state
after the chunk it follows, so `state.npz` never names a chunk that is not on disk. The
writing happens on a thread of its own (a recurrent chunk's traces are completed there too);
a failed write (a full disk) is raised in the training loop at the next chunk. When the run
has written its tables the folder is removed. `load` reads it back.
"""

from __future__ import annotations

import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vgrun.io.store import atomic_write

PARTIAL = "partial"
SMALL_STATE = 16 << 20  # a training state this small is written after every chunk
STATE_EVERY_S = 10.0  # a larger one at most this often (and when the run ends or stops)


class Partial(NamedTuple):
    chunks_done: int
    metrics: list  # per chunk: dict name -> array ([members,] chunk_steps)
    traces: list  # per chunk: the trace namedtuple (fields [members,] traced steps, ...)
    hists: list  # the histograms at step 0 and after each chunk (empty without histograms)
    leaves: list  # the carry's leaves after chunk chunks_done - 1
    ends: list  # per member: the chunk count it ran (the run's n_chunks while it is live)
    status: list  # per member: completed (still running), diverged, ...
    tests: list  # per member: (held-out loss, accuracy) where it ended, else None


def _save(path: Path, arrays: dict) -> None:
    def write(tmp: Path):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


class Stream:
    """Writes one run's chunks into <run>/partial as they finish (see the module docstring)."""

    def __init__(self, run_dir):
        self.dir = Path(run_dir) / PARTIAL
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="vgrun-stream")
        self.pending: list[Future] = []
        self.state_bytes, self.state_at = 0, 0.0

    def wants_state(self, last: bool) -> bool:
        """Whether the next chunk's record should carry the training state (see SMALL_STATE)."""
        import time

        return last or self.state_bytes <= SMALL_STATE or time.monotonic() - self.state_at >= STATE_EVERY_S

    def start(self, hist) -> None:
        """The histograms at step 0 (a dict, or a Future of one), when there are any."""
        if hist is not None:
            self._submit(lambda: _save(self.dir / "start.npz", {f"h/{k}": np.asarray(v) for k, v in
                                                                _resolved(hist).items()}))

    def chunk(self, c: int, metrics: dict, traces, hist: dict | None, leaves: list | None, ends, status,
              tests) -> None:
        """Chunk c's record; `traces` and `hist` may be Futures (a recurrent chunk's spectra, the
        histograms); `leaves` a host copy of the training state, or None (not this chunk, see wants_state)."""
        import time

        self._raise_failed()
        if leaves is not None:
            self.state_bytes, self.state_at = sum(v.nbytes for v in leaves), time.monotonic()
        self._submit(self._write, c, metrics, traces, hist, leaves, list(ends), list(status), list(tests))

    def _write(self, c, metrics, traces, hist, leaves, ends, status, tests) -> None:
        traces, hist = _resolved(traces), _resolved(hist)
        arrays = {f"m/{k}": np.asarray(v) for k, v in metrics.items()}
        arrays.update({f"t/{f}": np.asarray(getattr(traces, f)) for f in traces._fields})
        arrays["trace_kind"] = np.array(type(traces).__name__)
        if hist is not None:
            arrays.update({f"h/{k}": np.asarray(v) for k, v in hist.items()})
        _save(self.dir / f"chunk-{c:04d}.npz", arrays)
        if leaves is None:
            return
        test = np.array([t if t is not None else (np.nan, np.nan) for t in tests], np.float64)
        _save(self.dir / "state.npz", {"chunks_done": np.array(c + 1), "ends": np.array(ends), "status": np.array(status),
                                       "tested": np.array([t is not None for t in tests]), "tests": test,
                                       **{f"leaf_{i}": np.asarray(v) for i, v in enumerate(leaves)}})

    def _submit(self, fn, *args) -> None:
        self.pending = [f for f in self.pending if not f.done() or f.exception() is not None]
        self.pending.append(self.pool.submit(fn, *args))

    def _raise_failed(self) -> None:
        for f in self.pending:
            if f.done() and f.exception() is not None:
                raise f.exception()

    def close(self, remove: bool) -> None:
        """Wait for every write (raising a failed one); remove the folder once the run's tables hold it all."""
        for f in self.pending:
            f.result()
        self.pool.shutdown()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


def _resolved(x):
    return x.result() if isinstance(x, Future) else x


def exists(run_dir) -> bool:
    return (Path(run_dir) / PARTIAL / "state.npz").exists()


def load(run_dir) -> Partial:
    """What a run streamed: every chunk up to the last one whose state was written."""
    from vgrun.probes.layers import LeafTrace, Trace
    from vgrun.probes.time import TimeTrace

    folder = Path(run_dir) / PARTIAL
    with np.load(folder / "state.npz") as s:
        done = int(s["chunks_done"])
        leaves = [s[f"leaf_{i}"] for i in range(sum(k.startswith("leaf_") for k in s.files))]
        ends, status = [int(e) for e in s["ends"]], [str(x) for x in s["status"]]
        tests = [tuple(float(v) for v in t) if ok else None for t, ok in zip(s["tests"], s["tested"])]
    kinds = {"Trace": Trace, "TimeTrace": TimeTrace, "LeafTrace": LeafTrace}
    metrics, traces, hists = [], [], []
    if (folder / "start.npz").exists():
        with np.load(folder / "start.npz") as h:
            hists.append({k[2:]: h[k] for k in h.files})
    for c in range(done):
        with np.load(folder / f"chunk-{c:04d}.npz") as f:
            metrics.append({k[2:]: f[k] for k in f.files if k.startswith("m/")})
            kind = kinds[str(f["trace_kind"])]
            traces.append(kind(**{k[2:]: f[k] for k in f.files if k.startswith("t/")}))
            if any(k.startswith("h/") for k in f.files):
                hists.append({k[2:]: f[k] for k in f.files if k.startswith("h/")})
    return Partial(done, metrics, traces, hists, leaves, ends, status, tests)
