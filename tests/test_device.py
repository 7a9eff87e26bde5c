"""device=auto|cpu|gpu: asking for a GPU that JAX does not see is one clear error."""

import jax
import pytest

from vgrun.training.backend import setup as setup_jax
from vgrun.config.schema import Config, ConfigError

KEYS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs", "jax_enable_x64")


@pytest.fixture(autouse=True)
def restore_jax_config():
    """setup_jax sets process-wide options (the compilation cache); later tests get them back as they were."""
    saved = {k: getattr(jax.config, k) for k in KEYS}
    yield
    for k, v in saved.items():
        jax.config.update(k, v)


def test_gpu_without_one_is_a_clear_error(tmp_path, monkeypatch):
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")
    monkeypatch.setenv("VGRUN_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        setup_jax(Config(device="gpu"))
    assert (e.value.key, e.value.value) == ("device", "gpu") and "no GPU" in str(e.value)


def test_auto_and_cpu_run_on_the_default_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("VGRUN_CACHE", str(tmp_path))
    for device in ("auto", "cpu"):
        setup_jax(Config(device=device))
    assert jax.numpy.ones(2).sum() == 2
