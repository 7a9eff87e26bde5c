"""vgrun/compiling.py: processes sharing the compilation cache compile each program once."""

import json
import subprocess

import pytest
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vgrun.training.compiling import compile_all

WORKER = """
import json, sys
import jax
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
from jax import monitoring
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
import jax.numpy as jnp
from vgrun.training.compiling import compile_all

def program(k):
    def f(x):
        for i in range(k):
            x = jnp.tanh(x @ x.T + i) * jnp.sin(x)
        return x
    return jax.jit(f)

x = jnp.ones((8, 8))
events.clear()
out = compile_all([program(k).lower(x) for k in (60, 40, 20)], workers=1)
counts = {"misses": events.count("/jax/compilation_cache/cache_misses"),
          "hits": events.count("/jax/compilation_cache/cache_hits")}
print(json.dumps({**counts, "values": [[float(v) for v in o(x).ravel()] for o in out]}))
"""


@pytest.mark.long  # two processes compiling side by side (7 s): run by .ci/run after the fast suite
def test_two_processes_compile_each_program_once(tmp_path):
    """Started together on one cache, two processes compile 3 programs: 3 compilations in
    all (cache misses) and 3 loads (hits), where each compiling its own made 6."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-c", WORKER, str(tmp_path / "cache")]
    procs = [subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    runs = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sum(r["misses"] for r in runs) == 3
    assert sum(r["hits"] for r in runs) == 3
    assert runs[0]["values"] == runs[1]["values"]


def test_without_a_cache_every_program_compiles_here(monkeypatch):
    from vgrun.training import compiling

    monkeypatch.setattr(compiling, "_lock_dir", lambda: None)
    x = jnp.arange(6.0)
    fs = [jax.jit(lambda v: v * 2), jax.jit(lambda v: v + 1)]
    out = compile_all([f.lower(x) for f in fs], workers=2)
    np.testing.assert_array_equal(out[0](x), x * 2)
    np.testing.assert_array_equal(out[1](x), x + 1)
