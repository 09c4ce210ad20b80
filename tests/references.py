"""Hand-written forwards of every family, the independent reference for the sweep's ablations.

Each family's forward is written out from the model's own submodules (embeddings, norms,
attention, MLP, final norm, head) the way its HF code wires the residual, so a sweep bug in which
module is hooked, which residual is handed on or how layers are reordered shows up as a different
loss.  ``Change`` says what one ablation does to the clean forward; ``change_for(key, means)``
builds it from a sweep key; ``means_by_hand`` takes the clean model's mean terms by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class Change:
    order: list[int]  # the layers in the order they run (a swap exchanges two)
    skip: set[int] = field(default_factory=set)  # blocks whose output is their input
    block_add: dict = field(default_factory=dict)  # block k -> its mean update instead of itself
    terms: dict = field(default_factory=dict)  # ("attn"|"mlp", k) -> 0 or a mean vector


def change_for(key, n_layers: int, means: dict | None = None) -> Change:
    """The Change of sweep key (component, layer, span); ``means`` for the mean method."""
    change = Change(order=list(range(n_layers)))
    if key is None or key[0] == "none":
        return change
    component, k, span = key
    if component == "swap":
        change.order[k], change.order[k + 1] = k + 1, k
    elif component == "block":
        for j in range(k, k + span):
            if means is None:
                change.skip.add(j)
            else:
                change.block_add[j] = means[("block", j)]
    else:
        change.terms[(component, k)] = 0 if means is None else means[(component, k)]
    return change


def seq_loss(logits, ids):  # (B, T, V), (B, T) -> (B,)
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                         ids[:, 1:].reshape(-1), reduction="none")
    return ce.view(ids.shape[0], -1).mean(1)


def forward_by_hand(model, ids, change: Change, record: dict | None = None):
    """Per-sequence losses (B,) of the family's forward written out, with ``change`` applied;
    ``record`` (a dict) collects each term and block update, summed over positions."""
    family = FORWARDS[type(model).__name__]
    embed, layer_step, head = family(model, ids)

    def term(kind, k, value):  # the term as computed, then as the change leaves it
        if record is not None:
            _add(record, (kind, k), value)
        return change.terms.get((kind, k), value)

    h = embed()
    for k in change.order:
        if k in change.skip:
            continue
        if k in change.block_add:
            h = h + change.block_add[k]
            continue
        h_in = h
        h = layer_step(k, h, term)
        if record is not None:
            _add(record, ("block", k), h - h_in)
    return seq_loss(head(h), ids)


def means_by_hand(model, ids) -> dict:
    """(kind, layer) -> the clean model's mean term / block update over every position."""
    sums: dict = {}
    forward_by_hand(model, ids, change_for(None, _n_layers(model)), record=sums)
    n = ids.shape[0] * ids.shape[1]
    return {key: value / n for key, value in sums.items()}


def _add(record: dict, key, value: torch.Tensor) -> None:
    total = value.double().sum(dim=(0, 1)).float()
    record[key] = record[key] + total if key in record else total


def _n_layers(model) -> int:
    return model.config.num_hidden_layers


def _causal_mask(T):  # (T, T) additive: position t sees 0..t, whatever the attention implementation
    return torch.full((T, T), float("-inf")).triu(1)


def _neox(model, ids):
    """GPT-NeoX, parallel residual: h = h + attn(ln1(h)) + mlp(ln2(h))."""
    m = model.gpt_neox
    rope = m.rotary_emb(m.embed_in(ids), position_ids=torch.arange(ids.shape[1])[None])

    def step(k, h, term):
        layer = m.layers[k]
        attn = term("attn", k, layer.attention(layer.input_layernorm(h), attention_mask=None,
                                               position_embeddings=rope)[0])
        mlp = term("mlp", k, layer.mlp(layer.post_attention_layernorm(h)))
        return h + attn + mlp
    return (lambda: m.embed_in(ids)), step, lambda h: model.get_output_embeddings()(m.final_layer_norm(h))


def _llama(model, ids):
    """Llama-style, sequential residual: h = h + attn(n1(h)); h = h + mlp(n2(h))."""
    m = model.model
    rope = m.rotary_emb(m.embed_tokens(ids), torch.arange(ids.shape[1])[None])

    def step(k, h, term):
        layer = m.layers[k]
        h = h + term("attn", k, layer.self_attn(hidden_states=layer.input_layernorm(h),
                                                attention_mask=None, position_embeddings=rope)[0])
        return h + term("mlp", k, layer.mlp(layer.post_attention_layernorm(h)))
    return (lambda: m.embed_tokens(ids)), step, lambda h: model.lm_head(m.norm(h))


def _gpt2(model, ids):
    """GPT-2, sequential residual with learned positions."""
    t = model.transformer

    def step(k, h, term):
        block = t.h[k]
        h = h + term("attn", k, block.attn(block.ln_1(h), attention_mask=None)[0])
        return h + term("mlp", k, block.mlp(block.ln_2(h)))
    embed = lambda: t.wte(ids) + t.wpe(torch.arange(ids.shape[1])[None])  # noqa: E731
    return embed, step, lambda h: model.lm_head(t.ln_f(h))


def _falcon(model, ids):
    """Falcon, parallel residual: 7B style, one shared norm, x = ln(h); h = h + attn(x) + mlp(x);
    40B style (new_decoder_architecture), two: h = h + attn(ln_attn(h)) + mlp(ln_mlp(h))."""
    assert not model.config.alibi
    t = model.transformer
    rope = t.rotary_emb(t.word_embeddings(ids), position_ids=torch.arange(ids.shape[1])[None])
    mask = _causal_mask(ids.shape[1])
    two_norms = model.config.new_decoder_architecture
    assert two_norms == (model.config.num_ln_in_parallel_attn == 2) or not two_norms

    def step(k, h, term):
        layer = t.h[k]
        x_attn = layer.ln_attn(h) if two_norms else layer.input_layernorm(h)
        x_mlp = layer.ln_mlp(h) if two_norms else x_attn
        attn = term("attn", k, layer.self_attention(x_attn, alibi=None, attention_mask=mask,
                                                    position_embeddings=rope)[0])
        return h + attn + term("mlp", k, layer.mlp(x_mlp))
    return (lambda: t.word_embeddings(ids)), step, lambda h: model.lm_head(t.ln_f(h))


FORWARDS = {
    "GPTNeoXForCausalLM": _neox, "FalconForCausalLM": _falcon, "GPT2LMHeadModel": _gpt2,
    **{name: _llama for name in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                 "OlmoForCausalLM")},
}
