"""Models by name: (init, apply) pairs over stacked layer parameters."""

from vgrun.models import mlp

MODELS = {"mlp": mlp, "resmlp": mlp}  # resmlp is mlp with residual blocks (cfg.model.name)
