"""GPT-2.  Sequential residual; the attention and MLP outputs include their output-projection bias."""
from . import Family, register

register(Family(
    name="gpt2",
    model_types=("gpt2",),
    layers="transformer.h",
    attn="attn",
    mlp="mlp",
    parallel_residual=lambda config: False,
    examples="GPT-2",
))
