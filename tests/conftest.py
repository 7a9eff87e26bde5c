import os

# tests share one persistent compilation cache, away from the user's
os.environ.setdefault("VGRUN_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax"))


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _xla_optimizations(request):
    """The suite's in-process programs are compiled without XLA's costly optimization passes (most of
    the suite's time is compiling): the tests check vgrun's logic and numbers, which these passes must
    not change. Tests marked `optimized` (underflow and overflow at the edge of float32's range, where
    an optimization could change the answer) and the long tests (full-size programs that run long
    enough for the unoptimized code to cost more than compiling it) compile with every pass, as the
    command line does."""
    import jax

    optimized = any(request.node.get_closest_marker(m) for m in ("optimized", "long", "slow"))
    jax.config.update("jax_disable_most_optimizations", not optimized)
    yield


@pytest.fixture(autouse=True)
def _restore_float64_flag():
    """A test that turns on float64 (dtype=float64 does) must not change the tests after it."""
    import jax

    before = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", before)
