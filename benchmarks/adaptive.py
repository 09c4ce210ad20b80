"""Fixed budget vs adaptive evaluation (`collect --precision EPS`) on trained checkpoints, in one run.

    python benchmarks/adaptive.py                      # the demo's models, EPS 0.01, 512 sequences
    python benchmarks/adaptive.py --precision 0.005 --revisions step300
    python benchmarks/adaptive.py --quick              # the --quick demo's models: a smoke run

The demo's two models are trained first (as `layerdb demo` does) unless they are cached in --out.
Each planned checkpoint is collected twice through `collectors.collect.collect`, into two fresh
stores: with the fixed budget (every ablation on every sequence) and with --precision EPS.  Printed:
the ablated-pass sequences used and the wall time, each as the ratio adaptive/fixed; the decisions
compared (every ablation significant at FDR 0.05 in the fixed run should be significant with the
same sign in the adaptive run, or be pinned down there to within EPS: a confidence-sequence half-
width below EPS); the count of sign contradictions (an adaptive decision of the opposite sign,
which must be 0); and last, `work ratio R` (adaptive/fixed ablated-pass sequences).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

FDR = 0.05


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="layerdb-demo", help="the demo folder (models are reused)")
    p.add_argument("--precision", type=float, default=0.01, help="EPS in nats")
    p.add_argument("--tokens", type=int, default=65536, help="evaluation tokens per checkpoint")
    p.add_argument("--revisions", default="step8,step64,step256", help="comma list, per model")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="the --quick demo's models, few tokens")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    os.environ["HF_HOME"] = str(out / "hf_home")  # before huggingface_hub is imported
    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from collectors.demo.specs import FULL, QUICK
    from collectors.demo.train import train_demo

    size = QUICK if args.quick else FULL
    tokens = 2048 if args.quick else args.tokens
    revisions = "step2,step24" if args.quick else args.revisions
    print(f"training (or reusing) {', '.join(s.repo_id for s in size.specs)} in {out}", flush=True)
    training = train_demo(out, specs=size.specs, max_docs=size.max_docs)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for mode, precision in (("fixed", None), ("adaptive", args.precision)):
            runs[mode] = str(Path(tmp) / f"{mode}.duckdb")
            for spec in size.specs:
                collect_model(runs[mode], spec, training, revisions.split(","), tokens, precision,
                              args)
        report(runs, args.precision)


def collect_model(db, spec, training, revisions, tokens, precision, args) -> None:
    from collectors.collect import collect

    collect(db, spec.repo_id, revisions=revisions, data=str(training.heldout_path), tokens=tokens,
            seq_len=spec.seq_len, batch_size=args.batch_size, precision=precision, device="cpu")


ROWS_SQL = """
SELECT model, revision, component, layer, span, delta, delta_ci_low, delta_ci_high, q_value,
       n_sequences
FROM ablations ORDER BY model, revision, component, layer, span
"""


def report(runs: dict, eps: float) -> None:
    from layerdb import Store

    rows, work, seconds = {}, {}, {}
    for mode, db in runs.items():
        with Store.open(db, read_only=True) as store:
            rows[mode] = store.sql(ROWS_SQL)
            totals = store.sql("SELECT sum(ablated_sequences) AS n, sum(wall_seconds) AS s FROM runs")
            work[mode], seconds[mode] = int(totals["n"][0]), float(totals["s"][0])
    key = ["model", "revision", "component", "layer", "span"]
    both = rows["fixed"].merge(rows["adaptive"], on=key, suffixes=("_f", "_a"))
    assert len(both) == len(rows["fixed"]) == len(rows["adaptive"]), "the runs hold other rows"
    sig_f = both.q_value_f <= FDR
    sig_a = both.q_value_a <= FDR
    same_sign = (both.delta_f > 0) == (both.delta_a > 0)
    pinned = (both.delta_ci_high_a - both.delta_ci_low_a) / 2 < eps
    agree = sig_f & sig_a & same_sign
    within = sig_f & ~agree & pinned
    missed = sig_f & ~agree & ~pinned
    contradictions = int((sig_a & sig_f & ~same_sign).sum()
                         + (sig_a & ~sig_f & (both.delta_ci_low_f > 0) & (both.delta_a < 0)).sum()
                         + (sig_a & ~sig_f & (both.delta_ci_high_f < 0) & (both.delta_a > 0)).sum())
    print(f"ablations: {len(both)} ({both.model.nunique()} models, "
          f"{both[['model', 'revision']].drop_duplicates().shape[0]} checkpoints), EPS {eps} nats")
    print(f"ablated-pass sequences: fixed {work['fixed']:,}, adaptive {work['adaptive']:,}, "
          f"ratio {work['adaptive'] / work['fixed']:.3f}")
    print(f"sweep wall time (runs.wall_seconds, loading excluded): fixed {seconds['fixed']:.1f} s, "
          f"adaptive {seconds['adaptive']:.1f} s, ratio {seconds['adaptive'] / seconds['fixed']:.3f}")
    print(f"significant at FDR {FDR} in the fixed run: {int(sig_f.sum())}; in the adaptive run "
          f"with the same sign: {int(agree.sum())}; pinned within EPS instead: {int(within.sum())}; "
          f"neither: {int(missed.sum())}")
    print(f"significant in the adaptive run only: {int((sig_a & ~sig_f).sum())}")
    print(f"sign contradictions: {contradictions}")
    print(f"work ratio {work['adaptive'] / work['fixed']:.3f}")


if __name__ == "__main__":
    main()
