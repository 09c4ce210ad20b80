"""Prefetch on and off: one small sweep from a throttled test hub, twice in one run.

    python benchmarks/hub.py                     # 8 revisions of a 4 x 256 GPT-NeoX
    python benchmarks/hub.py --revisions 3 --layers 2 --width 64 --tokens 256 --bytes-per-s 2e6

The checkpoints (distinct weights, one tokenizer) are served by the test hub of
tests/fixtures/hub_server.py over HTTP, throttled so that downloading a revision takes about as
long as sweeping it (measured first, unthrottled, unless --bytes-per-s is given).  Each sweep runs
`collect` in a fresh process with a fresh HF cache and store (the client reads HF_ENDPOINT at
import); wall time is the `collect` call's, so imports are not counted.  Downloading and sweeping
are the summed times of collectors.hub.download_revision (in the prefetch thread too) and of the
sweeps.  With prefetch, revision N+1 downloads while revision N is swept: with download time equal
to sweep time and N revisions the ratio tends to (N + 1) / 2N.  The last line reads
`prefetch ratio R`: wall time with prefetch over wall time without.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO = "layerdb-bench/hub-sweep"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--revisions", type=int, default=8, help="checkpoints to sweep")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--tokens", type=int, default=6144, help="evaluation tokens per checkpoint")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bytes-per-s", type=float, default=None,
                   help="the hub's throttle; default: download time = the measured sweep time")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_repo(args, root: Path):
    """``REPO`` with branches step1000 ... one per revision, each of its own random weights."""
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    from tests.fixtures.hub import WORDS, build_tokenizer, save_checkpoint
    from tests.fixtures.hub_server import HubRepo

    config = GPTNeoXConfig(vocab_size=2 + len(WORDS), hidden_size=args.width,
                           num_hidden_layers=args.layers, num_attention_heads=max(1, args.width // 32),
                           intermediate_size=4 * args.width, max_position_embeddings=args.seq_len)
    tokenizer = build_tokenizer()
    repo = HubRepo(REPO)
    for i in range(args.revisions):
        torch.manual_seed(i)
        branch = f"step{1000 * (i + 1)}"
        folder = save_checkpoint(AutoModelForCausalLM.from_config(config), tokenizer,
                                 root / f"revision-{i}", f"revision {branch}")
        repo.add_revision(branch, folder)
    return repo


def run_worker(server, args, root: Path, name: str, prefetch: bool, revisions: int) -> dict:
    """One `collect` of the first ``revisions`` in a fresh process, cache and store; its timings."""
    from tests.fixtures.hub_server import client_env

    job = dict(db=str(root / f"{name}.duckdb"), data=str(root / "corpus.txt"), prefetch=prefetch,
               tokens=args.tokens, seq_len=args.seq_len, batch_size=args.batch_size,
               steps=",".join(str(1000 * (i + 1)) for i in range(revisions)))
    env = client_env(server, root / f"hf-{name}")
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: the collect failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker(job: dict) -> dict:
    """In the child: collect with timers around downloads and sweeps."""
    import threading

    import torch

    import collectors.collect as collect_module
    import collectors.hub as hub_module

    torch.set_num_threads(1)
    spent = {"download": 0.0, "sweep": 0.0}
    lock = threading.Lock()

    def timed(kind, function):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                with lock:
                    spent[kind] += time.perf_counter() - start
        return wrapper

    download = timed("download", hub_module.download_revision)
    hub_module.download_revision = collect_module.download_revision = download
    collect_module.sweep_checkpoint = timed("sweep", collect_module.sweep_checkpoint)
    start = time.perf_counter()
    report = collect_module.collect(
        job["db"], REPO, steps=job["steps"], data=job["data"], tokens=job["tokens"],
        seq_len=job["seq_len"], batch_size=job["batch_size"],
        executor=collect_module.LocalExecutor(prefetch=job["prefetch"]))
    return dict(spent, wall=time.perf_counter() - start, collected=len(report.written))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.hub import corpus
    from tests.fixtures.hub_server import HubServer

    with tempfile.TemporaryDirectory(prefix="layerdb-bench-hub-") as tmp:
        root = Path(tmp)
        repo = build_repo(args, root)
        (root / "corpus.txt").write_text("\n".join(corpus(n_docs=max(40, args.tokens // 30))))
        size = repo.commit("step1000").files["model.safetensors"].size
        print(f"hub benchmark: {args.revisions} revisions of a {args.layers} x {args.width} "
              f"GPT-NeoX, {size / 1e6:.1f} MB of weights each, {args.tokens} tokens per sweep")
        with HubServer([repo]) as server:
            rate = args.bytes_per_s
            if rate is None:
                n = min(2, args.revisions)
                calibration = run_worker(server, args, root, "calibration", False, n)
                per_revision = calibration["sweep"] / n
                rate = size / per_revision
                print(f"calibration ({n} revisions, unthrottled, no prefetch): sweeping "
                      f"{per_revision:.2f} s per revision")
            server.faults.throttle(rate)
            print(f"hub throttled to {rate / 1e6:.2f} MB/s: {size / rate:.2f} s to download a "
                  "revision's weights")
            runs = {}
            for name, prefetch in (("prefetch off", False), ("prefetch on", True)):
                runs[name] = r = run_worker(server, args, root, name.replace(" ", "-"), prefetch,
                                            args.revisions)
                assert r["collected"] == args.revisions, r
                print(f"{name + ':':14} wall {r['wall']:6.2f} s, downloading {r['download']:6.2f} s,"
                      f" sweeping {r['sweep']:6.2f} s")
    print(f"prefetch ratio {runs['prefetch on']['wall'] / runs['prefetch off']['wall']:.2f}")


if __name__ == "__main__":
    main()
