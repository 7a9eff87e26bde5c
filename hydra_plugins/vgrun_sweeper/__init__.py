"""`hydra/sweeper=vgrun` (the default): Hydra's basic sweeper, validating a sweep's jobs
before launching them without composing every one (vgrun/overrides.py checks the values).
"""
