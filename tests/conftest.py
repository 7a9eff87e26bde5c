import os

# tests share one persistent compilation cache, away from the user's
os.environ.setdefault("VGRUN_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax"))


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_float64_flag():
    """A test that turns on float64 (dtype=float64 does) must not change the tests after it."""
    import jax

    before = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", before)
