"""Ingest rate: 1,000,000 result rows through Store.write_results vs a bare DuckDB Arrow insert.

Run: python benchmarks/ingest.py [--rows N]
Both write into fresh files with the same schema (migration 0001) in the same run; the ratio
store/bare is the figure of merit (goal >= 0.8).
"""
from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from layerdb import Store


def make_rows(n: int, n_seq: int = 8) -> pa.Table:
    """n result rows: 32 layers x 3 components + a baseline per (model, revision)."""
    rng = np.random.default_rng(0)
    per_ckpt = 32 * 3 + 1
    idx = np.arange(n)
    ckpt, within = idx // per_ckpt, idx % per_ckpt
    component = np.where(within == 0, "none", np.array(["block", "attn", "mlp"])[(within - 1) % 3])
    layer = np.where(within == 0, -1, (within - 1) // 3)
    loss = 3 + rng.random(n)
    seq = pa.FixedSizeListArray.from_arrays(pa.array(rng.random(n * n_seq) + 3), n_seq)
    return pa.table({
        "model": pa.array([f"model-{c % 7}" for c in ckpt]),
        "revision": pa.array([f"step{c // 7}" for c in ckpt]),
        "step": pa.array(ckpt // 7, pa.int64()),
        "eval_set": pa.array(["e" * 16] * n),
        "method": pa.array(["zero"] * n),
        "component": pa.array(component),
        "layer": pa.array(layer, pa.int32()),
        "span": pa.array(np.ones(n, np.int32)),
        "loss": pa.array(loss),
        "n_tokens": pa.array(np.full(n, 65536), pa.int64()),
        "delta": pa.array(loss - 3),
        "delta_ci_low": pa.array(loss - 3.1),
        "delta_ci_high": pa.array(loss - 2.9),
        "seq_losses": seq.cast(pa.list_(pa.float64())),
        "run_id": pa.array([f"run-{c}" for c in ckpt]),
        "created_at": pa.array([dt.datetime(2026, 11, 29)] * n, pa.timestamp("us")),
    })


def bare_insert(path: Path, table: pa.Table) -> float:
    Store.open(path).close()  # same schema, then a plain DuckDB connection
    con = duckdb.connect(str(path))
    con.register("incoming", table)
    start = time.perf_counter()
    con.execute("BEGIN")
    con.execute("INSERT INTO results SELECT * FROM incoming")
    con.execute("COMMIT")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def store_insert(path: Path, table: pa.Table) -> float:
    with Store.open(path) as store:
        start = time.perf_counter()
        store.write_results(table)
        elapsed = time.perf_counter() - start
        assert store.sql("SELECT count(*) AS n FROM results")["n"][0] == table.num_rows
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each")
    args = parser.parse_args()
    table = make_rows(args.rows)
    bare, store = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            bare.append(bare_insert(Path(tmp) / f"bare{i}.duckdb", table))
            store.append(store_insert(Path(tmp) / f"store{i}.duckdb", table))
    n = table.num_rows
    b, s = min(bare), min(store)
    print(f"rows: {n:,}")
    print(f"bare DuckDB Arrow insert : {n / b:>12,.0f} rows/s ({b:.2f} s)")
    print(f"Store.write_results      : {n / s:>12,.0f} rows/s ({s:.2f} s)")
    print(f"ratio store/bare         : {b / s:.2f}  (goal >= 0.8)")


if __name__ == "__main__":
    main()
