"""Hydra config files (YAML): the defaults and the choices of every config group."""
