"""Ingest rate: result rows through Store.write_results vs bare DuckDB doing the same work, in one run.

Run: python benchmarks/ingest.py [--rows N] [--repeat K]      (N = 1,000,000 by default)

Three cases, each timed for the store and for a bare DuckDB connection on byte-identical files
(migration 0001's schema, results keyed by its primary key):
- empty:   N rows into an empty file.  Bare: INSERT ... SELECT from the registered Arrow table.
- new:     N rows with new keys into a file that already holds N rows.  Bare: the same plain INSERT
           (DuckDB still checks the primary key); the store's extra price is its newer-wins checks.
- replace: N rows with the keys of the N stored rows and a newer created_at.  Bare: DELETE ... USING
           on the key, then a plain INSERT: the least work that reaches the store's final table.
           INSERT OR REPLACE and INSERT ... ON CONFLICT DO UPDATE ... WHERE newer (the exact one-
           statement form of newer-wins) reach it too, but ran 3.8x and 2.7x slower than
           DELETE + INSERT at 300,000 rows (DuckDB 2.0.1, 2-core CPU): too easy a baseline.
The pre-filled file is built once (untimed) and copied for every measurement.  Times are the best
of --repeat runs, the store and bare alternating which goes first.  Every run checks the final row
count and that the newest created_at won, so both sides did the whole job.  The ratio store/bare
(rows/s over rows/s) is the figure of merit (goal >= 0.8).
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from layerdb import Store
from layerdb.schema import RESULT_KEY

OLD, NEW = dt.datetime(2026, 11, 29), dt.datetime(2026, 12, 1)
PER_CHECKPOINT = 32 * 3 + 1  # result rows of one checkpoint: 32 layers x 3 components + baseline
KEY_MATCH = " AND ".join(f"r.{k} = i.{k}" for k in RESULT_KEY)
BARE_SQL = {
    "empty": ["INSERT INTO results BY NAME SELECT * FROM incoming"],
    "new": ["INSERT INTO results BY NAME SELECT * FROM incoming"],
    "replace": [f"DELETE FROM results r USING incoming i WHERE {KEY_MATCH}",
                "INSERT INTO results BY NAME SELECT * FROM incoming"],
}


def make_rows(n: int, first_checkpoint: int = 0, created_at: dt.datetime = OLD,
              n_seq: int = 8) -> pa.Table:
    """n result rows: 32 layers x 3 components + a baseline per (model, revision); checkpoints
    numbered from ``first_checkpoint``, so two tables with different starts share no key."""
    rng = np.random.default_rng(first_checkpoint + created_at.toordinal())
    idx = np.arange(n)
    ckpt, within = first_checkpoint + idx // PER_CHECKPOINT, idx % PER_CHECKPOINT
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
        "created_at": pa.array([created_at] * n, pa.timestamp("us")),
    })


def empty_file(path: Path) -> Path:
    Store.open(path).close()  # the schema, through the migrations
    return path


def prefilled_file(path: Path, table: pa.Table) -> Path:
    con = duckdb.connect(str(empty_file(path)))
    con.register("stored", table)
    con.execute("INSERT INTO results BY NAME SELECT * FROM stored")
    con.close()
    return path


def bare_write(path: Path, table: pa.Table, statements: list[str]) -> float:
    con = duckdb.connect(str(path))
    con.register("incoming", table)
    start = time.perf_counter()
    con.execute("BEGIN")
    for statement in statements:
        con.execute(statement)
    con.execute("COMMIT")
    elapsed = time.perf_counter() - start
    check(con, table)
    con.close()
    return elapsed


def store_write(path: Path, table: pa.Table) -> float:
    with Store.open(path) as store:
        start = time.perf_counter()
        store.write_results(table)
        elapsed = time.perf_counter() - start
    con = duckdb.connect(str(path), read_only=True)  # checked as the bare insert is
    check(con, table)
    con.close()
    return elapsed


def check(con: duckdb.DuckDBPyConnection, incoming: pa.Table) -> None:
    """Every incoming row is stored as given (the newer created_at won); nothing else was lost."""
    con.register("_check", incoming)
    found = con.execute(f"SELECT count(*) FROM results r JOIN _check i ON {KEY_MATCH} "
                        "WHERE r.created_at = i.created_at AND r.loss = i.loss").fetchall()[0][0]
    con.unregister("_check")
    assert found == incoming.num_rows, f"{found} of {incoming.num_rows} incoming rows stored"


def measure(case: str, template: Path, table: pa.Table, expected_rows: int, repeat: int,
            tmp: Path) -> tuple[float, float]:
    """Best seconds of (bare, store) over ``repeat`` runs, each on a fresh copy of ``template``."""
    bare, store = [], []
    for i in range(repeat):
        order = ("bare", "store") if i % 2 == 0 else ("store", "bare")
        for who in order:
            path = tmp / f"{case}-{who}-{i}.duckdb"
            shutil.copy(template, path)
            if who == "bare":
                bare.append(bare_write(path, table, BARE_SQL[case]))
            else:
                store.append(store_write(path, table))
            con = duckdb.connect(str(path), read_only=True)
            assert con.execute("SELECT count(*) FROM results").fetchall()[0][0] == expected_rows
            con.close()
            path.unlink()
    return min(bare), min(store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows written in each case, and rows already in the pre-filled file")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each")
    args = parser.parse_args()
    n = args.rows
    stored = make_rows(n)
    cases = {  # case: (incoming rows, the file they go into, rows in it afterwards)
        "empty": (stored, "empty", n),
        "new": (make_rows(n, first_checkpoint=-(-n // PER_CHECKPOINT)), "prefilled", 2 * n),
        "replace": (make_rows(n, created_at=NEW), "prefilled", n),
    }
    labels = {"empty": "into an empty file",
              "new": f"new keys, {n:,} rows stored",
              "replace": f"newer rows replace {n:,} stored"}
    print(f"rows written per case: {n:,}; best of {args.repeat}")
    print(f"{'case':34} {'bare rows/s':>12} {'store rows/s':>13} {'bare s':>7} {'store s':>8} "
          f"{'store/bare':>10}")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        templates = {"empty": empty_file(tmp / "empty.duckdb"),
                     "prefilled": prefilled_file(tmp / "prefilled.duckdb", stored)}
        for case, (table, template, expected) in cases.items():
            b, s = measure(case, templates[template], table, expected, args.repeat, tmp)
            print(f"{labels[case]:34} {n / b:>12,.0f} {n / s:>13,.0f} {b:>7.2f} {s:>8.2f} "
                  f"{b / s:>10.2f}", flush=True)
    print("goal: store/bare >= 0.8")


if __name__ == "__main__":
    main()
