"""Every registered family: its sites resolve, its declared output shapes hold, and ablating each
component changes the loss.  That the families are torch-free data is checked with the rest of
the torch-free imports in test_collect_cli.py."""
from dataclasses import replace

import pytest
import torch

from collectors.checkpoints import load_checkpoint, resolve_model
from collectors.families import FAMILIES, TENSOR, TUPLE, family_for, supported
from collectors.sweep import BASELINE, SweepOptions, sweep_losses
from layerdb.errors import LayerdbError
from tests.fixtures.hub import DIMS, FAMILY_OF, VARIANTS

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_every_family_file_is_registered():
    assert set(FAMILIES) == {"gpt_neox", "falcon", "llama", "gpt2"}
    assert set(FAMILY_OF.values()) == set(FAMILIES)  # the fixture covers every family


def test_unknown_architecture_lists_the_supported_ones():
    from transformers import GPTJConfig

    with pytest.raises(LayerdbError) as err:
        family_for(GPTJConfig())
    message = str(err.value)
    assert "GPTJ" in message or "gptj" in message
    for name in FAMILIES:
        assert name in message
    assert supported() in message


@pytest.mark.parametrize("variant", VARIANTS)
def test_sites_resolve_and_every_ablation_changes_the_loss(tiny_hub, variant):
    checkpoint = load_checkpoint(resolve_model(tiny_hub.repo(variant)), "main", torch.float32, "cpu")
    assert checkpoint.family.name == FAMILY_OF[variant]
    sites = checkpoint.family.sites(checkpoint.model)
    assert len(sites) == DIMS["num_hidden_layers"]
    for site in sites:
        assert all(isinstance(m, torch.nn.Module) for m in site.values())
    ids = torch.randint(2, 64, (5, 24), generator=torch.Generator().manual_seed(1))
    n = DIMS["num_hidden_layers"]
    with torch.no_grad():  # the baseline is the model's own loss
        hf_loss = checkpoint.model(input_ids=ids, labels=ids, use_cache=False).loss.item()
    for method in ("zero", "mean"):  # single drops, spans 2 and 3, swaps (zero only)
        options = SweepOptions(spans=(2, 3), swaps=method == "zero", method=method, batch_size=2)
        fast = sweep_losses(checkpoint.model, checkpoint.family, ids, options).losses
        naive = sweep_losses(checkpoint.model, checkpoint.family, ids,
                             replace(options, reuse_prefix=False)).losses
        assert fast[BASELINE].mean() == pytest.approx(hf_loss, abs=1e-5)
        assert len(fast) == 1 + 3 * n + (n - 1) + (n - 2) + (n - 1 if method == "zero" else 0)
        for key, seq in fast.items():
            assert seq.shape == (5,)
            assert abs(seq - naive[key]).max() < 1e-5, key
            if key != BASELINE:
                assert abs(seq.mean() - fast[BASELINE].mean()) > 1e-6, f"{variant}: {key} changes nothing"


@pytest.mark.parametrize("variant", VARIANTS)
def test_declared_output_shapes_match_what_the_modules_return(tiny_hub, variant):
    """The sweep trusts the adapter's layer_output / attn_output / mlp_output: check them."""
    checkpoint = load_checkpoint(resolve_model(tiny_hub.repo(variant)), "main", torch.float32, "cpu")
    family, seen = checkpoint.family, {}

    def record(component):
        def hook(module, args, out):
            seen[component] = TUPLE if isinstance(out, tuple) else TENSOR
        return hook

    site = family.sites(checkpoint.model)[0]
    hooks = [module.register_forward_hook(record(c)) for c, module in site.items()]
    try:
        with torch.no_grad():
            checkpoint.model(input_ids=torch.tensor([[2, 3, 4, 5]]), use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {c: family.output_of(c) for c in ("block", "attn", "mlp")}
