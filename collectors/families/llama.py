"""The Llama-style family: Llama, Mistral, Qwen2, OLMo, OLMo-2.  Sequential residual
(OLMo-2 normalises each term after the module; a zeroed term stays zero through its RMSNorm)."""
from . import Family, register

register(Family(
    name="llama",
    model_types=("llama", "mistral", "qwen2", "olmo", "olmo2"),
    layers="model.layers",
    attn="self_attn",
    mlp="mlp",
    parallel_residual=lambda config: False,
    examples="Llama, Mistral, Qwen2, OLMo, OLMo-2",
))
