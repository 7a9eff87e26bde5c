"""Models by name. Feed-forward: `make(cfg, d_in, d_out, dtype)` -> (init, apply) over stacked
layers; recurrent: `rnn.make`; doya: an analysis, not a trained network (`vgrun.doya`)."""

from vgrun.models import mlp, rnn

MODELS = {"mlp": mlp, "resmlp": mlp, "rnn": rnn, "lstm": rnn, "gru": rnn, "doya": None}
