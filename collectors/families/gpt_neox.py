"""GPT-NeoX: Pythia, GPT-NeoX-20B.  Parallel residual unless config.use_parallel_residual is off."""
from . import Family, register

register(Family(
    name="gpt_neox",
    model_types=("gpt_neox",),
    layers="gpt_neox.layers",
    attn="attention",
    mlp="mlp",
    parallel_residual=lambda config: bool(config.use_parallel_residual),
    examples="Pythia, GPT-NeoX-20B",
))
