"""Model families: one small declarative adapter per file, found by walking this package.

A family is data: where a causal LM keeps its decoder layers, what each layer calls its attention
and MLP submodules, whether the residual is parallel, and the shape of what each module returns.
Everything else (embedding, masks, final norm, unembedding) is the model's own HF code.  Adding a
family = adding a file here that ends with ``register(Family(...))``.  Nothing here imports torch,
so the CLI can list the families without it.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

from layerdb.errors import LayerdbError

TENSOR, TUPLE = "tensor", "tuple"  # a module returns its residual term alone, or as item 0 of a tuple


@dataclass(frozen=True)
class Family:
    name: str  # canonical name stored in models.family
    model_types: tuple[str, ...]  # config.model_type values this adapter handles
    layers: str  # dotted path from the *ForCausalLM module to the decoder-layer ModuleList
    attn: str  # attribute of a layer: its attention module
    mlp: str  # attribute of a layer: its MLP module
    parallel_residual: Callable[[Any], bool]  # config -> does the MLP read h[k] (not h[k] + attn)?
    layer_output: str = TENSOR  # what a decoder layer returns: the residual h[k+1], or (h, ...)
    attn_output: str = TUPLE  # what the attention module returns: (term, weights) in transformers 5
    mlp_output: str = TENSOR  # what the MLP module returns
    examples: str = ""  # models it covers, for the error listing supported families

    def __post_init__(self):
        for field in ("layer_output", "attn_output", "mlp_output"):
            assert getattr(self, field) in (TENSOR, TUPLE), f"{self.name}.{field}"

    def layer_list(self, model) -> Any:
        """The model's decoder-layer ModuleList."""
        module = model
        for part in self.layers.split("."):
            module = getattr(module, part)
        assert type(module).__name__ == "ModuleList", f"{self.name}: {self.layers} is not a ModuleList"
        return module

    def sites(self, model) -> list[dict[str, Any]]:
        """Per layer: {"block": layer, "attn": its attention, "mlp": its MLP}."""
        return [{"block": layer, "attn": getattr(layer, self.attn), "mlp": getattr(layer, self.mlp)}
                for layer in self.layer_list(model)]

    def output_of(self, component: str) -> str:
        """TENSOR or TUPLE: how the module ablated by ``component`` returns its result."""
        return {"block": self.layer_output, "attn": self.attn_output, "mlp": self.mlp_output}[component]


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    assert family.name not in FAMILIES, f"family {family.name} registered twice"
    FAMILIES[family.name] = family
    return family


def supported() -> str:
    return "; ".join(f"{f.name} ({f.examples or ', '.join(f.model_types)})"
                     for f in FAMILIES.values())


def family_for(config: Any) -> Family:
    """The family of an HF config; a LayerdbError naming the supported ones if there is none."""
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    arch = ",".join(getattr(config, "architectures", None) or []) or "?"
    raise LayerdbError(
        f"unsupported architecture {arch} (model_type {model_type!r}); supported: {supported()}"
    )


def _load_all() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")


_load_all()
