"""The sweep: ablations equal hand-written forwards that skip the layer or the term (three parallel-
residual layouts and two sequential ones), optimized == naive, float32 chunked loss, statistics,
fingerprints, non-finite losses."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from collectors.checkpoints import load_checkpoint, resolve_model, weights_fingerprint
from collectors.eval_tokens import EvalTokens, eval_set_id
from collectors.stats import paired_interval, t_quantile
from collectors.sweep import (BASELINE, NonFiniteLoss, SweepOptions, sequence_losses,
                              sweep_checkpoint, sweep_losses)
from layerdb.errors import LayerdbError
from tests.references import change_for, forward_by_hand, means_by_hand

pytestmark = pytest.mark.usefixtures("torch_one_thread")

IDS = torch.randint(2, 64, (6, 20), generator=torch.Generator().manual_seed(7))  # (N, T)
# enough sequences for --precision to stop some ablations early (the adaptive tests)
ADAPTIVE_IDS = torch.randint(2, 64, (96, 24), generator=torch.Generator().manual_seed(5))


def _load(tiny_hub, variant, revision="main"):
    return load_checkpoint(resolve_model(tiny_hub.repo(variant)), revision, torch.float32, "cpu")


def _randomize_norms(model, seed=3):
    """Freshly initialised norms are all identity (weight 1, bias 0), so a reference that fed a
    term through the wrong norm would still agree; random affine parameters make every norm count."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm"):
                for name, p in module.named_parameters(recurse=False):
                    p.copy_((name == "weight") + 0.3 * torch.randn(p.shape, generator=g))


EVERYTHING = SweepOptions(spans=(2, 3), swaps=True, batch_size=4)  # 3-layer models: all spans


@pytest.mark.parametrize("variant", ["gpt-neox", "falcon", "falcon-40b-style", "llama", "gpt2"])
@pytest.mark.parametrize("method", ["zero", "mean"])
def test_ablations_equal_a_hand_written_forward(tiny_hub, variant, method):
    """Single drops, spans and swaps (zero), and mean ablation of terms and spans, against the
    family's forward written out by hand (tests/references.py), to 1e-5 in float32."""
    checkpoint = _load(tiny_hub, variant)
    _randomize_norms(checkpoint.model)
    options = replace(EVERYTHING, method=method, swaps=method == "zero")
    fast = sweep_losses(checkpoint.model, checkpoint.family, IDS, options).losses
    n_layers = checkpoint.model.config.num_hidden_layers
    assert len(fast) == 1 + 3 * 3 + 2 + 1 + (2 if method == "zero" else 0)
    with torch.inference_mode():
        means = means_by_hand(checkpoint.model, IDS) if method == "mean" else None
        for key, seq in fast.items():
            expected = forward_by_hand(checkpoint.model, IDS, change_for(key, n_layers, means))
            assert np.abs(seq - expected.double().numpy()).max() < 1e-5, key
    if method == "zero":  # a swap reorders: it is not the same as leaving the layers be
        assert np.abs(fast[("swap", 0, 2)] - fast[BASELINE]).max() > 1e-4


def test_optimized_equals_naive_across_batches_and_kinds(tiny_hub):
    checkpoint = _load(tiny_hub, "falcon")  # tuple-returning layers, in-place adds
    for options in (EVERYTHING, SweepOptions(components=("mlp",), batch_size=4),
                    replace(EVERYTHING, method="mean", swaps=False)):
        fast = sweep_losses(checkpoint.model, checkpoint.family, IDS, options)
        naive = sweep_losses(checkpoint.model, checkpoint.family, IDS,
                             replace(options, batch_size=6, reuse_prefix=False))
        assert fast.losses.keys() == naive.losses.keys()
        assert all(np.abs(fast.losses[k] - naive.losses[k]).max() < 1e-5 for k in fast.losses)
        assert fast.metrics == pytest.approx(naive.metrics, abs=1e-9)


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


def test_span_swap_and_metric_rows(tiny_hub):
    checkpoint = _load(tiny_hub, "llama")
    rows = sweep_checkpoint(checkpoint, _tokens(), replace(EVERYTHING, spans=(2,)))
    keys = rows.results.select(["component", "layer", "span"]).to_pylist()
    spans = [(r["layer"], r["span"]) for r in keys if r["component"] == "block"]
    assert spans == [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]
    assert [(r["layer"], r["span"]) for r in keys if r["component"] == "swap"] == [(0, 2), (1, 2)]
    run = rows.runs.to_pylist()[0]
    assert (run["components"], run["spans"], run["swaps"], run["method"]) == (
        "block,attn,mlp", "2", True, "zero")
    metrics = rows.layer_metrics.to_pandas()
    per = metrics.groupby(["metric", "span"])["layer"].apply(list).to_dict()
    assert per == {("angular_distance", 1): [0, 1, 2], ("angular_distance", 2): [0, 1],
                   **{(m, 1): [0, 1, 2] for m in ("attn_ratio", "block_influence", "mlp_ratio",
                                                  "update_ratio")}}
    assert set(metrics["run_id"]) == {run["run_id"]}


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
    with pytest.raises(LayerdbError, match=r"--spans must be lengths of at least 1 \(got 0,2\)"):
        SweepOptions(spans=(0, 2))
    with pytest.raises(LayerdbError, match="unknown --method 'median': use zero or mean"):
        SweepOptions(method="median")
    with pytest.raises(LayerdbError, match="no mean variant"):
        SweepOptions(method="mean", swaps=True)
    with pytest.raises(LayerdbError, match="--spans 5: longer than m, which has 4 layer"):
        SweepOptions(spans=(2, 5)).check_fits(4, "m")
    with pytest.raises(LayerdbError, match="--swaps needs two layers or more; m has 1"):
        SweepOptions(swaps=True).check_fits(1, "m")
    assert math.isfinite(t_quantile(0.975, 2))


def test_adaptive_agrees_with_fixed_within_each_interval(tiny_hub):
    """--precision: the same checkpoint, fixed budget vs adaptive; every fixed delta lies in the
    adaptive row's interval, rows used fewer sequences, and deltas pair with the same sequences."""
    checkpoint = _load(tiny_hub, "gpt-neox", "step1")
    tokens = EvalTokens(ADAPTIVE_IDS.numpy(), eval_set_id(ADAPTIVE_IDS.numpy()), 0, "t", "t")
    fixed = sweep_checkpoint(checkpoint, tokens, SweepOptions(batch_size=8)).results.to_pandas()
    options = SweepOptions(batch_size=8, precision=0.05, order_seed=3)
    swept = sweep_checkpoint(checkpoint, tokens, options)
    adaptive = swept.results.to_pandas()
    key = ["component", "layer", "span"]
    both = fixed.merge(adaptive, on=key, suffixes=("_f", "_a"))
    ablated = both[both.component != "none"]
    assert len(ablated) == 9
    assert ((ablated.delta_ci_low_a <= ablated.delta_f) & (ablated.delta_f <= ablated.delta_ci_high_a)).all()
    assert (ablated.n_sequences_a >= 32).all() and (ablated.n_sequences_a < 96).any()
    base = np.array(adaptive[adaptive.component == "none"].seq_losses.iloc[0])
    order = np.random.default_rng(3).permutation(96)
    full_base = np.array(fixed[fixed.component == "none"].seq_losses.iloc[0])
    assert np.allclose(base, full_base[order][:len(base)], atol=1e-6)  # the seeded order
    for row in ablated.itertuples():
        n = row.n_sequences_a
        assert row.delta_a == pytest.approx(np.mean(row.seq_losses_a) - base[:n].mean(), abs=1e-9)
        assert row.n_tokens_a == n * 23 and 0 < row.p_value_a <= 1
    run = swept.runs.to_pylist()[0]
    assert (run["precision"], run["order_seed"]) == (0.05, 3)
    assert run["ablated_sequences"] == int(ablated.n_sequences_a.sum())


def test_adaptive_progress_reports_active_ablations_and_tokens_saved(tiny_hub):
    checkpoint = _load(tiny_hub, "gpt-neox", "step1")
    calls = []
    result = sweep_losses(checkpoint.model, checkpoint.family, ADAPTIVE_IDS,
                          SweepOptions(batch_size=8, precision=0.05),
                          on_batch=lambda *args: calls.append(args))
    active = [c[0] for c in calls]
    assert all(c[1] == 9 for c in calls) and active == sorted(active, reverse=True)
    assert active[-1] < 9  # some ablations stopped early
    used = sum(len(seq) for key, seq in result.losses.items() if key != BASELINE)
    assert calls[-1][2] == (9 * len(result.losses[BASELINE]) - used) * 24  # tokens not evaluated
    assert calls[-1][3] == (0 if active[-1] == 0 else
                            (96 - len(result.losses[BASELINE])) // 8 * (1 + active[-1]))
