"""Networks written as a researcher writes their own (Flax NNX, plain JAX), traced through `vgrun.tap`:
the presets' models for `model=custom`, and examples of it."""
