"""A full layer-ablation sweep of Pythia-shaped models on one accelerator, through the collectors'
own code, measured against the device's own matmul rate: the one prepared GPU benchmark.

    python benchmarks/gpu_sweep.py --out benchmarks/RESULTS.md           # the default run
    python benchmarks/gpu_sweep.py --models pythia-160m --sequences 8    # a quick look
    python benchmarks/gpu_sweep.py --smoke                               # CPU, tiny, seconds

Models: GPT-NeoX with Pythia's shapes and random weights (no download), bfloat16 weights, the loss
in float32 (collectors.sweep), on fixed random tokens.  The sweep is the default `layerdb collect`
sweep: the baseline, then the block, the attention and the MLP of every layer dropped, with prefix
reuse.  Per model it prints wall time and tokens/s, the FLOPs the sweep needs and the TFLOP/s
achieved, that rate as a fraction of the bf16 matmul rate measured on this device in the same run
and of a nominal peak (--peak-tflops), the peak device memory, the optimized/naive time ratio
(both on the first --ratio-sequences sequences, in the same run), and for the smallest model the
largest |loss difference| between bfloat16 and float32 weights.

FLOPs.  Per token, a decoder layer costs 24 d² (its linear maps: 4 d² attention, 8 d² MLP, two
FLOPs per multiply-add) plus 4 T d (attention scores and the weighted sum over T positions, counted
in full), and the unembedding 2 d V.  A sweep of L layers runs, per batch, the baseline (L layers)
and per ablation the layers from the first one it changes: attention or MLP at k, L - k layers;
the block at k, L - k - 1; every pass ends with the unembedding.  The zeroed module's own cost is
not subtracted (a small overcount), the embedding and norms are not counted:

    FLOPs = tokens · [ (L + Σ_k (2 (L - k) + (L - k - 1))) · (24 d² + 4 T d) + (1 + 3 L) · 2 d V ]

Sized for one H200 (about 790 dense bf16 TFLOP/s nominal) and a 15-minute device budget, start-up
included: the default (3 models, 32 x 2048 tokens, ratios on 4 sequences, best of two) is 28.6
PFLOP of optimized sweep (pythia-2.8b 20.1, 1.4b 7.9, 160m 0.5) plus 20.4 for the ratio passes:
49 PFLOP, about 3 minutes at a third of peak, 6 at a sixth.  Scale with --sequences and
--ratio-sequences.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Shape:
    layers: int
    width: int
    heads: int
    vocab: int = 50304


SHAPES = {  # Pythia's (https://github.com/EleutherAI/pythia, models/*.yml)
    "pythia-160m": Shape(12, 768, 12),
    "pythia-1.4b": Shape(24, 2048, 16),
    "pythia-2.8b": Shape(32, 2560, 32),
}
SMOKE = Shape(2, 64, 4, vocab=512)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--models", default=",".join(SHAPES), help="comma list of " + ", ".join(SHAPES))
    p.add_argument("--sequences", type=int, default=32, help="sequences of --seq-len tokens")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--ratio-sequences", type=int, default=4,
                   help="sequences on which naive and optimized are timed against each other")
    p.add_argument("--peak-tflops", type=float, default=790.0,
                   help="nominal dense bf16 peak of the device (H200 SXM: ~790)")
    p.add_argument("--out", help="append a dated markdown section to this file")
    p.add_argument("--smoke", action="store_true", help="CPU, a tiny shape: seconds")
    return p.parse_args(argv)


def sweep_flops(shape: Shape, tokens: int, seq_len: int) -> float:
    """The formula in the module docstring."""
    L, d = shape.layers, shape.width
    layer_passes = L + sum(2 * (L - k) + (L - k - 1) for k in range(L))
    return tokens * (layer_passes * (24 * d * d + 4 * seq_len * d) + (1 + 3 * L) * 2 * d * shape.vocab)


def build(shape: Shape, seq_len: int, dtype, device):
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    config = GPTNeoXConfig(vocab_size=shape.vocab, hidden_size=shape.width,
                           num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                           intermediate_size=4 * shape.width, max_position_embeddings=seq_len,
                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                            "partial_rotary_factor": 0.25},
                           use_parallel_residual=True, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=dtype)
    return model.eval().requires_grad_(False)


def matmul_tflops(device, dtype, n: int, repeats: int = 10) -> float:
    """The device's own rate on one large square matmul (dense, in ``dtype``)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def measure(name: str, shape: Shape, args, device, dtype, first: bool) -> dict:
    import torch

    from collectors.families import family_for
    from collectors.sweep import SweepOptions, sweep_losses

    model = build(shape, args.seq_len, dtype, device)
    family = family_for(model.config)
    ids = torch.randint(0, shape.vocab, (args.sequences, args.seq_len),
                        generator=torch.Generator().manual_seed(1))
    options = SweepOptions(batch_size=args.batch_size)
    sweep_losses(model, family, ids[:1], options)  # warm up: kernels, allocator
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    result = sweep_losses(model, family, ids, options)
    _sync(device)
    seconds = time.perf_counter() - start
    out = {"model": name, "shape": f"{shape.layers} x {shape.width}", "seconds": seconds,
           "tokens_per_s": ids.numel() / seconds,
           "pflop": sweep_flops(shape, ids.numel(), args.seq_len) / 1e15,
           "peak_gib": (torch.cuda.max_memory_allocated(device) / 2**30
                        if device.type == "cuda" else float("nan")),
           "passes": len(result.losses)}
    out["tflops"] = out["pflop"] * 1e3 / seconds
    few = ids[:args.ratio_sequences]
    timed = {}
    for reuse in (False, True, False, True):  # interleaved, best of two
        _sync(device)
        start = time.perf_counter()
        swept = sweep_losses(model, family, few, replace(options, reuse_prefix=reuse))
        _sync(device)
        timed[reuse] = min(timed.get(reuse, float("inf")), time.perf_counter() - start)
        if reuse:
            approx = swept.losses  # the bf16 losses of ``options`` (which reuses prefixes) on few
    out["ratio"] = timed[True] / timed[False]
    if first:  # bf16 against float32 weights, same tokens
        exact = build(shape, args.seq_len, torch.float32, device)
        exact.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
        reference = sweep_losses(exact, family, few, options).losses
        out["bf16_max_diff"] = max(float(abs(approx[k] - reference[k]).max()) for k in reference)
        del exact
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> None:
    import torch

    args = parse_args(argv)
    if args.smoke:
        args.sequences, args.seq_len, args.batch_size, args.ratio_sequences = 4, 32, 2, 2
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16
    shapes = {"smoke": SMOKE} if args.smoke else {m: SHAPES[m] for m in args.models.split(",")}
    rate = matmul_tflops(device, dtype, 256 if device.type == "cpu" else 8192)
    rows = [measure(name, shape, args, device, dtype, first=i == 0)
            for i, (name, shape) in enumerate(shapes.items())]
    table = render(rows, rate, args.peak_tflops)
    print(f"device: {describe(device)}; bf16 matmul {rate:.1f} TFLOP/s measured")
    print(table)
    if args.out:
        append(Path(args.out), device, rate, table, argv)


def render(rows: list[dict], matmul: float, peak: float) -> str:
    head = ("| model | shape | tokens | s | tokens/s | PFLOP | TFLOP/s | of matmul | of peak "
            "| peak GiB | optimized/naive | bf16 vs fp32 max abs Δloss |")
    lines = [head, "|" + " --- |" * (head.count(" | ") + 1)]
    for r in rows:
        diff = f"{r['bf16_max_diff']:.2e}" if "bf16_max_diff" in r else ""
        lines.append(
            f"| {r['model']} | {r['shape']} | {r['tokens_per_s'] * r['seconds']:,.0f} | "
            f"{r['seconds']:.1f} | {r['tokens_per_s']:,.0f} | {r['pflop']:.3g} | "
            f"{r['tflops']:.3g} | {r['tflops'] / matmul:.1%} | {r['tflops'] / peak:.1%} | "
            f"{'n/a' if r['peak_gib'] != r['peak_gib'] else format(r['peak_gib'], '.1f')} | "
            f"{r['ratio']:.3f} | {diff} |")
    return "\n".join(lines)


def describe(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def append(path: Path, device, matmul: float, table: str, argv) -> None:
    import torch
    import transformers

    command = "python benchmarks/gpu_sweep.py " + shlex.join(argv if argv is not None
                                                               else sys.argv[1:])
    section = (f"\n## {dt.datetime.now():%Y-%m-%d %H:%M} — {describe(device)}\n\n"
               f"- command: `{command}`\n- torch {torch.__version__}, transformers "
               f"{transformers.__version__}, Python {platform.python_version()}\n"
               f"- bf16 matmul measured on this device: {matmul:.1f} TFLOP/s\n\n{table}\n")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(section)
    print(f"appended to {path}")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
