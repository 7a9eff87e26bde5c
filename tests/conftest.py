import os

# tests share one persistent compilation cache, away from the user's
os.environ.setdefault("VGRUN_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax"))
