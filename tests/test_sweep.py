"""The sweep: ablations equal hand-written forwards that skip the layer or the term (three parallel-
residual layouts and two sequential ones), optimized == naive, float32 chunked loss, statistics,
fingerprints, non-finite losses."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from collectors.checkpoints import load_checkpoint, resolve_model, weights_fingerprint
from collectors.eval_tokens import EvalTokens, eval_set_id
from collectors.stats import paired_interval, t_quantile
from collectors.sweep import (BASELINE, NonFiniteLoss, SweepOptions, sequence_losses,
                              sweep_checkpoint, sweep_losses)
from layerdb.errors import LayerdbError

pytestmark = pytest.mark.usefixtures("torch_one_thread")

IDS = torch.randint(2, 64, (6, 20), generator=torch.Generator().manual_seed(7))  # (N, T)


def _load(tiny_hub, variant, revision="main"):
    return load_checkpoint(resolve_model(tiny_hub.repo(variant)), revision, torch.float32, "cpu")


def _seq_loss(logits, ids):  # (B, T, V), (B, T) -> (B,)
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                         ids[:, 1:].reshape(-1), reduction="none")
    return ce.view(ids.shape[0], -1).mean(1)


def _neox_by_hand(model, ids, skip):
    """GPT-NeoX, parallel residual: h = h + attn(ln1(h)) + mlp(ln2(h))."""
    m = model.gpt_neox
    h = m.embed_in(ids)
    rope = m.rotary_emb(h, position_ids=torch.arange(ids.shape[1])[None])
    for k, layer in enumerate(m.layers):
        if skip == ("block", k):
            continue
        attn = layer.attention(layer.input_layernorm(h), attention_mask=None,
                               position_embeddings=rope)[0]
        mlp = layer.mlp(layer.post_attention_layernorm(h))
        h = h + (0 if skip == ("attn", k) else attn) + (0 if skip == ("mlp", k) else mlp)
    return _seq_loss(model.get_output_embeddings()(m.final_layer_norm(h)), ids)


def _llama_by_hand(model, ids, skip):
    """Llama, sequential residual: h = h + attn(n1(h)); h = h + mlp(n2(h))."""
    m = model.model
    h = m.embed_tokens(ids)
    rope = m.rotary_emb(h, torch.arange(ids.shape[1])[None])
    for k, layer in enumerate(m.layers):
        if skip == ("block", k):
            continue
        if skip != ("attn", k):
            h = h + layer.self_attn(hidden_states=layer.input_layernorm(h), attention_mask=None,
                                    position_embeddings=rope)[0]
        if skip != ("mlp", k):
            h = h + layer.mlp(layer.post_attention_layernorm(h))
    return _seq_loss(model.lm_head(m.norm(h)), ids)


def _gpt2_by_hand(model, ids, skip):
    """GPT-2, sequential residual with learned positions."""
    t = model.transformer
    h = t.wte(ids) + t.wpe(torch.arange(ids.shape[1])[None])
    for k, block in enumerate(t.h):
        if skip == ("block", k):
            continue
        if skip != ("attn", k):
            h = h + block.attn(block.ln_1(h), attention_mask=None)[0]
        if skip != ("mlp", k):
            h = h + block.mlp(block.ln_2(h))
    return _seq_loss(model.lm_head(t.ln_f(h)), ids)


def _randomize_norms(model, seed=3):
    """Freshly initialised norms are all identity (weight 1, bias 0), so a reference that fed a
    term through the wrong norm would still agree; random affine parameters make every norm count."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm"):
                for name, p in module.named_parameters(recurse=False):
                    p.copy_((name == "weight") + 0.3 * torch.randn(p.shape, generator=g))


def _causal_mask(T):  # (T, T) additive: position t sees 0..t, whatever the attention implementation
    return torch.full((T, T), float("-inf")).triu(1)


def _falcon_7b_by_hand(model, ids, skip):
    """Falcon 7B style, parallel residual with one shared norm: x = ln(h); h = h + attn(x) + mlp(x)."""
    assert model.config.parallel_attn and not model.config.new_decoder_architecture
    assert not model.config.alibi
    t = model.transformer
    h = t.word_embeddings(ids)
    rope = t.rotary_emb(h, position_ids=torch.arange(ids.shape[1])[None])
    mask = _causal_mask(ids.shape[1])
    for k, layer in enumerate(t.h):
        if skip == ("block", k):
            continue
        x = layer.input_layernorm(h)
        attn = layer.self_attention(x, alibi=None, attention_mask=mask, position_embeddings=rope)[0]
        mlp = layer.mlp(x)
        h = h + (0 if skip == ("attn", k) else attn) + (0 if skip == ("mlp", k) else mlp)
    return _seq_loss(model.lm_head(t.ln_f(h)), ids)


def _falcon_40b_by_hand(model, ids, skip):
    """Falcon 40B style (new_decoder_architecture, grouped kv heads), parallel residual with two
    norms: h = h + attn(ln_attn(h)) + mlp(ln_mlp(h))."""
    assert model.config.new_decoder_architecture and model.config.num_ln_in_parallel_attn == 2
    assert not model.config.alibi
    t = model.transformer
    h = t.word_embeddings(ids)
    rope = t.rotary_emb(h, position_ids=torch.arange(ids.shape[1])[None])
    mask = _causal_mask(ids.shape[1])
    for k, layer in enumerate(t.h):
        if skip == ("block", k):
            continue
        attn = layer.self_attention(layer.ln_attn(h), alibi=None, attention_mask=mask,
                                    position_embeddings=rope)[0]
        mlp = layer.mlp(layer.ln_mlp(h))
        h = h + (0 if skip == ("attn", k) else attn) + (0 if skip == ("mlp", k) else mlp)
    return _seq_loss(model.lm_head(t.ln_f(h)), ids)


@pytest.mark.parametrize("variant,by_hand", [("gpt-neox", _neox_by_hand),
                                             ("falcon", _falcon_7b_by_hand),
                                             ("falcon-40b-style", _falcon_40b_by_hand),
                                             ("llama", _llama_by_hand), ("gpt2", _gpt2_by_hand)])
def test_ablations_equal_a_hand_written_forward(tiny_hub, variant, by_hand):
    checkpoint = _load(tiny_hub, variant)
    _randomize_norms(checkpoint.model)
    fast = sweep_losses(checkpoint.model, checkpoint.family, IDS, SweepOptions(batch_size=4))
    with torch.inference_mode():
        for key, seq in fast.items():
            expected = by_hand(checkpoint.model, IDS, None if key == BASELINE else key)
            assert np.abs(seq - expected.double().numpy()).max() < 1e-5, key


def test_optimized_equals_naive_across_batches_and_components(tiny_hub):
    checkpoint = _load(tiny_hub, "falcon")  # tuple-returning layers, in-place adds
    for components in (("block", "attn", "mlp"), ("mlp",)):
        fast = sweep_losses(checkpoint.model, checkpoint.family, IDS,
                            SweepOptions(components=components, batch_size=4))
        naive = sweep_losses(checkpoint.model, checkpoint.family, IDS,
                             SweepOptions(components=components, batch_size=6, reuse_prefix=False))
        assert fast.keys() == naive.keys()
        assert all(np.abs(fast[k] - naive[k]).max() < 1e-5 for k in fast)


def test_chunked_loss_equals_whole_loss(tiny_hub):
    model = _load(tiny_hub, "gpt2").model
    with torch.inference_mode():
        hidden = model.base_model(input_ids=IDS, use_cache=False).last_hidden_state
        whole = sequence_losses(model, hidden, IDS, chunk=10**9)
        chunked = sequence_losses(model, hidden, IDS, chunk=64 * 7)  # 7 positions per chunk
    assert whole.dtype == torch.float32
    assert torch.allclose(whole, chunked, atol=1e-6)


def test_t_quantiles():
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile(0.975, 5) == pytest.approx(2.5706, abs=1e-4)
    assert t_quantile(0.975, 100) == pytest.approx(1.9840, abs=1e-4)


def test_paired_interval():
    d = np.array([0.1, 0.3, -0.1, 0.2])
    mean, low, high = paired_interval(d)
    half = 3.1824 * d.std(ddof=1) / 2  # t_{0.975, 3} * sd / sqrt(4)
    assert mean == pytest.approx(0.125)
    assert (low, high) == pytest.approx((0.125 - half, 0.125 + half), abs=1e-4)
    assert paired_interval(np.array([0.5]))[1:] == (None, None)


def _tokens(n=6, t=20):
    ids = IDS[:n, :t].numpy()
    return EvalTokens(ids, eval_set_id(ids), 1234, "test", "tiny")


def test_sweep_checkpoint_rows(tiny_hub):
    checkpoint = _load(tiny_hub, "gpt-neox", "step1")
    rows = sweep_checkpoint(checkpoint, _tokens(), SweepOptions(batch_size=4))
    results = rows.results.to_pandas()
    assert len(results) == 1 + 3 * 3
    base = results[results.component == "none"].iloc[0]
    assert (base.layer, base.delta, base.step) == (-1, 0.0, 1)
    for r in results[results.component != "none"].itertuples():
        deltas = np.array(r.seq_losses) - np.array(base.seq_losses)
        assert r.loss == pytest.approx(np.mean(r.seq_losses))
        assert r.delta == pytest.approx(r.loss - base.loss, abs=1e-12)
        assert (r.delta_ci_low, r.delta_ci_high) == pytest.approx(paired_interval(deltas)[1:])
        assert r.n_tokens == 6 * 19
    assert rows.checkpoints["weights_fingerprint"][0].as_py() == checkpoint.fingerprint
    assert rows.models["parallel_residual"][0].as_py() is True
    assert rows.runs["status"][0].as_py() == "complete"
    assert rows.eval_sets["n_bytes"][0].as_py() == 1234


def test_fingerprints_see_equal_and_different_weights(tiny_hub):
    prints = {r: _load(tiny_hub, "gpt-neox", r).fingerprint for r in ("step0", "step1", "step2", "step4")}
    assert prints["step2"] == prints["step4"]
    assert len({prints["step0"], prints["step1"], prints["step2"]}) == 3
    model = _load(tiny_hub, "gpt-neox", "step2").model
    with torch.no_grad():
        model.get_output_embeddings().weight[3, 3] += 1e-6
    assert weights_fingerprint(model) != prints["step2"]


def test_non_finite_losses_are_refused(tiny_hub):
    with pytest.raises(NonFiniteLoss, match="NaN or infinite loss .*baseline"):
        sweep_checkpoint(_load(tiny_hub, "gpt-neox", "nan"), _tokens(), SweepOptions())


def test_seq_len_above_context_and_foreign_ids_are_refused(tiny_hub):
    config = _load(tiny_hub, "gpt2").model.config  # context 64, vocabulary 64
    long = np.zeros((1, 65), dtype=np.int64)
    with pytest.raises(LayerdbError, match=r"--seq-len 65 is above the context of m \(64 tokens\)"):
        EvalTokens(long, eval_set_id(long), 0, "t", "t").check_fits(config, "m")
    foreign = np.full((1, 8), 64, dtype=np.int64)
    with pytest.raises(LayerdbError, match="token id 64 is outside the vocabulary of m"):
        EvalTokens(foreign, eval_set_id(foreign), 0, "t", "t").check_fits(config, "m")
    fits = np.full((1, 64), 63, dtype=np.int64)
    EvalTokens(fits, eval_set_id(fits), 0, "t", "t").check_fits(config, "m")


def test_bad_options():
    with pytest.raises(LayerdbError, match="unknown component"):
        SweepOptions(components=("block", "heads"))
    with pytest.raises(LayerdbError, match="batch-size"):
        SweepOptions(batch_size=0)
    assert math.isfinite(t_quantile(0.975, 2))
