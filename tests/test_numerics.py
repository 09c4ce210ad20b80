"""Numerics: bfloat16 weights against float32 on the same checkpoint, the loss kept in float32, and
no host-device synchronisation per forward pass."""
import numpy as np
import pytest
import torch

from collectors.checkpoints import load_checkpoint, resolve_model
from collectors.sweep import BASELINE, SweepOptions, sequence_losses, sweep_losses

pytestmark = pytest.mark.usefixtures("torch_one_thread")

IDS = torch.randint(2, 64, (12, 40), generator=torch.Generator().manual_seed(9))
OPTIONS = SweepOptions(spans=(2,), swaps=True, batch_size=4)


@pytest.mark.parametrize("variant", ["gpt-neox", "llama", "falcon-40b-style", "gpt2"])
def test_bf16_deltas_agree_with_float32_within_bf16_rounding(tiny_hub, variant):
    """bfloat16 keeps 8 significant bits: each value it holds is off by at most 2^-9 relative, so
    a loss computed (in float32) from bf16 weights and activations moves by about 2^-9 of itself;
    a delta is the difference of two losses that carry nearly the same rounding, so its error
    stays below 2^-9 x the baseline loss (README, GPU notes)."""
    ref = resolve_model(tiny_hub.repo(variant))
    exact = load_checkpoint(ref, "main", torch.float32, "cpu")
    rounded = load_checkpoint(ref, "main", torch.bfloat16, "cpu")
    a = sweep_losses(exact.model, exact.family, IDS, OPTIONS).losses
    b = sweep_losses(rounded.model, rounded.family, IDS, OPTIONS).losses
    tolerance = 2**-9 * a[BASELINE].mean()
    for key in a:
        delta_a, delta_b = (a[key] - a[BASELINE]).mean(), (b[key] - b[BASELINE]).mean()
        assert abs(delta_a - delta_b) <= tolerance, (key, delta_a, delta_b, tolerance)
    assert max(np.abs(a[k] - b[k]).max() for k in a) > 0  # bf16 really ran


def test_the_loss_is_float32_from_bf16_hidden_states(tiny_hub):
    model = load_checkpoint(resolve_model(tiny_hub.repo("llama")), "main", torch.bfloat16,
                            "cpu").model
    with torch.inference_mode():
        hidden = model.base_model(input_ids=IDS[:2], use_cache=False).last_hidden_state
        losses = sequence_losses(model, hidden, IDS[:2], chunk=64 * 5)
    assert hidden.dtype == torch.bfloat16 and losses.dtype == torch.float32


def test_no_host_sync_per_pass(tiny_hub, monkeypatch):
    """A fixed-budget sweep copies losses to the host once at the end, whatever the number of
    passes (on a GPU each .cpu()/.item()/.tolist() would stall the stream)."""
    checkpoint = load_checkpoint(resolve_model(tiny_hub.repo("gpt-neox")), "main", torch.float32,
                                 "cpu")
    calls = []
    for name in ("cpu", "item", "tolist", "numpy"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, _real=real, _name=name, **k: (calls.append(_name),
                                                                          _real(self, *a, **k))[1])
    for batch_size in (12, 2):  # 1 and 6 batches: 19 and 114 passes
        calls.clear()
        sweep_losses(checkpoint.model, checkpoint.family, IDS,
                     SweepOptions(spans=(2,), swaps=True, batch_size=batch_size))
        assert sorted(calls) == ["cpu", "cpu", "numpy", "tolist"], calls  # losses once, metrics once
