"""Falcon: the 7B style (parallel_attn, one shared layer norm) and the 40B style
(new_decoder_architecture, separate ln_attn/ln_mlp).  Both are parallel-residual; the layer adds the
attention term into the MLP output in place, so ablations return fresh tensors.  Unlike the other
families, a Falcon decoder layer returns a tuple (hidden, attention weights)."""
from . import TUPLE, Family, register

register(Family(
    name="falcon",
    model_types=("falcon",),
    layers="transformer.h",
    attn="self_attention",
    mlp="mlp",
    parallel_residual=lambda config: bool(config.new_decoder_architecture or config.parallel_attn),
    layer_output=TUPLE,
    examples="Falcon-7B, Falcon-40B",
))
