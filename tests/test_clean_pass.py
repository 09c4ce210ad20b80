"""The clean pass's per-layer metrics against a direct computation from output_hidden_states.

HF's hidden_states are (embeddings, after layer 0, ..., after layer L-2, final_norm(after layer
L-1)): the residual after the last layer is NOT in it, so it is taken here by a hook on the last
layer (the final norm's input)."""
import math

import pytest
import torch
import torch.nn.functional as F

from collectors.checkpoints import load_checkpoint, resolve_model
from collectors.sweep import SweepOptions, sweep_losses

pytestmark = pytest.mark.usefixtures("torch_one_thread")

IDS = torch.randint(2, 64, (5, 16), generator=torch.Generator().manual_seed(11))


def residuals_and_terms(checkpoint):
    """h[0..L] (h[L] before the final norm) and each layer's attention and MLP terms, (N, T, d)."""
    model, family = checkpoint.model, checkpoint.family
    layers = family.layer_list(model)
    terms = {}

    def keep(key):
        def hook(module, args, out):  # returns None: the output stays as it is
            terms[key] = (out[0] if isinstance(out, tuple) else out).clone()
        return hook

    hooks = [layers[-1].register_forward_hook(keep("last"))]
    for k, site in enumerate(family.sites(model)):
        hooks += [site[c].register_forward_hook(keep((c, k))) for c in ("attn", "mlp")]
    try:
        with torch.no_grad():
            hidden = model(input_ids=IDS, output_hidden_states=True, use_cache=False).hidden_states
    finally:
        for hook in hooks:
            hook.remove()
    return [h.double() for h in hidden[:-1]] + [terms["last"].double()], terms


@pytest.mark.parametrize("variant", ["gpt-neox", "falcon", "llama", "gpt2"])
def test_metrics_equal_a_direct_computation(tiny_hub, variant):
    checkpoint = load_checkpoint(resolve_model(tiny_hub.repo(variant)), "main", torch.float32, "cpu")
    metrics = sweep_losses(checkpoint.model, checkpoint.family, IDS,
                           SweepOptions(components=(), spans=(2, 3), batch_size=2)).metrics
    h, terms = residuals_and_terms(checkpoint)
    n = len(h) - 1

    def mean(x):
        return x.mean().item()

    expected = {}
    for k in range(n):
        norm_k = h[k].norm(dim=-1)
        expected[("block_influence", k, 1)] = mean(1 - F.cosine_similarity(h[k], h[k + 1], dim=-1))
        expected[("update_ratio", k, 1)] = mean((h[k + 1] - h[k]).norm(dim=-1) / norm_k)
        expected[("attn_ratio", k, 1)] = mean(terms["attn", k].double().norm(dim=-1) / norm_k)
        expected[("mlp_ratio", k, 1)] = mean(terms["mlp", k].double().norm(dim=-1) / norm_k)
        for span in (1, 2, 3):
            if k + span <= n:
                cos = F.cosine_similarity(h[k], h[k + span], dim=-1).clamp(-1, 1)
                expected[("angular_distance", k, span)] = mean(torch.arccos(cos) / math.pi)
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    assert all(0 <= metrics[k] <= 1 for k in metrics if k[0] == "angular_distance")
