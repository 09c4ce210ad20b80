"""Naive vs optimized ablation sweep on the same model and tokens, in one run.

    python benchmarks/sweep.py                     # 12 x 256 GPT-NeoX, vocab 2048, 4 x 256 tokens
    python benchmarks/sweep.py --vocab 50304       # Pythia's vocabulary: the unembedding dominates
    python benchmarks/sweep.py --malloc default    # only the default glibc malloc settings
    python benchmarks/sweep.py --cases spans       # only the --spans 2,4 --swaps case

Two cases, each in the same run: "single" = the single-layer drops (block, attn, mlp of every
layer), what `layerdb collect` does by default; "spans" = those plus every span of 2 and 4 blocks
and every adjacent swap (`layerdb collect --spans 2,4 --swaps`).

naive = one full forward per ablation (forward hooks); optimized = the clean pass caches the
residual entering each layer and each ablated pass starts at its layer (collectors.sweep).  Both
give the same losses (checked here, to 1e-5).  Each malloc setting runs in its own process:
"default" is glibc as the process starts; "tuned" applies collectors.cpu_malloc (what
`layerdb collect` does on CPU), keeping big buffers in the heap instead of returning them to the OS
after every pass (DESIGN.md: page faults cost up to 40% of some CPU runs).  Times are the best of
--repeats interleaved runs, so a busy machine biases neither method, and the order alternates:
naive runs first on even repeats (0, 2, ...), optimized first on odd ones, so neither always
inherits the other's warm caches and heap.  CPU seconds (process time, all threads) are printed
too, as they suffer less from other processes.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--vocab", type=int, default=2048, help="default: the demo tokenizer's size")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2, help="best of N for each method")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--malloc", choices=("both", "default", "tuned"), default="both")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate the malloc settings' processes N times; best of all")
    p.add_argument("--cases", default="single,spans",
                   help="comma list of: single (block, attn, mlp drops), spans (those plus "
                        "--spans 2,4 --swaps)")
    p.add_argument("--child", choices=("default", "tuned"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def measure(args) -> dict:
    """Runs in a child process: time both sweeps, return seconds, page faults and max difference."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from collectors.cpu_malloc import tune_glibc_malloc

    if args.child == "tuned":
        tune_glibc_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)

    from collectors.families import family_for
    from collectors.sweep import SweepOptions, sweep_losses

    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=args.vocab, hidden_size=args.width,
                           num_hidden_layers=args.layers, num_attention_heads=args.width // 32,
                           intermediate_size=4 * args.width, max_position_embeddings=args.seq_len)
    model = GPTNeoXForCausalLM(config).eval()
    family = family_for(config)
    ids = torch.randint(0, args.vocab, (args.sequences, args.seq_len))
    sweep_losses(model, family, ids[:1], SweepOptions(batch_size=1))  # warm up
    return {case: time_case(model, family, ids, CASES[case], args)
            for case in args.cases.split(",")}


CASES = {"single": {}, "spans": {"spans": (2, 4), "swaps": True}}  # SweepOptions beyond defaults


def time_case(model, family, ids, extra: dict, args) -> dict:
    """Both methods on one case: best seconds, CPU seconds, page faults, passes, max difference."""
    import torch

    from collectors.sweep import SweepOptions, sweep_losses

    out: dict = {"threads": torch.get_num_threads()}
    losses: dict = {}
    methods = (("naive", False), ("optimized", True))
    for repeat in range(args.repeats):  # interleaved, best of N: fair under a changing machine load
        for name, reuse in methods if repeat % 2 == 0 else methods[::-1]:  # odd: optimized first
            options = SweepOptions(batch_size=args.batch_size, reuse_prefix=reuse, **extra)
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0, c0 = time.perf_counter(), time.process_time()
            losses[name] = sweep_losses(model, family, ids, options).losses
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            out[f"{name}_cpu"] = min(cpu, out.get(f"{name}_cpu", float("inf")))
            if seconds < out.get(name, float("inf")):
                out[name] = seconds
                out[f"{name}_faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    out["passes"] = len(losses["naive"])
    out["max_diff"] = max(float(abs(losses["naive"][k] - losses["optimized"][k]).max())
                          for k in losses["naive"])
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return
    settings = ["default", "tuned"] if args.malloc == "both" else [args.malloc]
    print(f"GPT-NeoX {args.layers} x {args.width}, vocab {args.vocab}, {args.sequences} x "
          f"{args.seq_len} tokens, batch {args.batch_size}, best of {args.repeats} x {args.rounds} rounds")
    print(f"{'case':7} {'malloc':8} {'passes':>6} {'naive s':>8} {'optim s':>8} {'ratio':>6} "
          f"{'naive cpu s':>11} {'optim cpu s':>11} {'cpu ratio':>9} "
          f"{'faults naive':>13} {'faults optim':>13} {'max diff':>9}")
    here = os.path.dirname(os.path.abspath(__file__))
    best: dict[tuple[str, str], dict] = {}
    for _ in range(args.rounds):
        for setting in settings:
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), env.get("PYTHONPATH", "")])
            child = subprocess.run([sys.executable, __file__, "--child", setting,
                                    *(argv if argv is not None else sys.argv[1:])],
                                   env=env, capture_output=True, text=True, check=True)
            for case, r in json.loads(child.stdout.strip().splitlines()[-1]).items():
                b = best.setdefault((case, setting), r)
                for name in ("naive", "optimized"):
                    b[f"{name}_cpu"] = min(b[f"{name}_cpu"], r[f"{name}_cpu"])
                    if r[name] < b[name]:
                        b[name], b[f"{name}_faults"] = r[name], r[f"{name}_faults"]
    for (case, setting), r in best.items():
        print(f"{case:7} {setting:8} {r['passes']:>6} {r['naive']:>8.2f} {r['optimized']:>8.2f} "
              f"{r['optimized'] / r['naive']:>6.3f} {r['naive_cpu']:>11.2f} "
              f"{r['optimized_cpu']:>11.2f} {r['optimized_cpu'] / r['naive_cpu']:>9.3f} "
              f"{r['naive_faults']:>13,} "
              f"{r['optimized_faults']:>13,} {r['max_diff']:>9.1e}")


if __name__ == "__main__":
    main()
