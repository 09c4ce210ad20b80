"""`layerdb collect` end to end on the tiny offline hub: rows, resumability, all-or-nothing
checkpoints, a reader during a sweep, duplicate weights, eviction, and bad input."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import collectors.collect
from layerdb import Store
from layerdb.cli import main
from tests.fixtures.collect import DATA, ROWS, collect, counts, sql
from tests.fixtures.stores import EMPTY

pytestmark = pytest.mark.usefixtures("torch_one_thread")

METRICS = 5 * 3  # per checkpoint: 5 metrics x 3 layers (span 1)


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def neox(tiny_hub):
    return [tiny_hub.repo("gpt-neox"), "--data", str(tiny_hub.txt), *DATA]


def test_collect_writes_every_table_and_resumes(tmp_path, neox):
    db = str(tmp_path / "s.duckdb")
    first = collect(db, *neox, "-r", "step0", "-r", "step1")
    assert first.exit_code == 0, first.output + first.stderr
    assert counts(db) == {"models": 1, "checkpoints": 2, "eval_sets": 1, "runs": 2,
                          "results": 2 * ROWS, "layer_metrics": 2 * METRICS}
    runs = sql(db, "SELECT revision, status, components FROM runs ORDER BY revision")
    assert runs.values.tolist() == [["step0", "complete", "block,attn,mlp"],
                                    ["step1", "complete", "block,attn,mlp"]]
    es = sql(db, "SELECT n_sequences, seq_len, n_tokens, n_bytes > 0 AS b FROM eval_sets").iloc[0]
    assert es.tolist() == [6, 32, 6 * 31, True]
    before = sql(db, "SELECT run_id, created_at FROM results ORDER BY ALL")
    again = collect(db, *neox, "-r", "step1", "-r", "step0", "-r", "step2")
    assert again.exit_code == 0, again.stderr
    assert "skipping 2 complete checkpoint(s)" in again.stderr
    assert "1 checkpoint(s) collected, 2 already complete" in again.output
    after = sql(db, "SELECT run_id, created_at FROM results WHERE revision <> 'step2' ORDER BY ALL")
    assert after.equals(before)  # skipped checkpoints were not redone
    assert counts(db)["results"] == 3 * ROWS


def test_components_subset_then_superset(tmp_path, neox):
    db = str(tmp_path / "s.duckdb")
    assert collect(db, *neox, "-r", "step0", "--components", "mlp").exit_code == 0
    assert counts(db)["results"] == 1 + 3
    result = collect(db, *neox, "-r", "step0")  # block and attn were never done: redo
    assert result.exit_code == 0 and "skipping" not in result.stderr
    assert counts(db)["results"] == ROWS


def test_more_kinds_add_only_the_missing_rows(tmp_path, neox):
    db = str(tmp_path / "s.duckdb")
    assert collect(db, *neox, "-r", "step0").exit_code == 0
    first = sql(db, "SELECT component, layer, span, method, run_id, created_at FROM results")
    for extra, added in ((["--spans", "2"], 2), (["--swaps"], 2), (["--spans", "2,3"], 1)):
        result = collect(db, *neox, "-r", "step0", *extra)
        assert result.exit_code == 0, result.stderr
        assert "adding only what 1 checkpoint(s) lack" in result.stderr
        assert counts(db)["results"] == len(first) + added
        first = sql(db, "SELECT component, layer, span, method, run_id, created_at FROM results")
    before = sql(db, "SELECT * EXCLUDE (seq_losses) FROM results ORDER BY ALL")
    again = collect(db, *neox, "-r", "step0", "--spans", "2,3", "--swaps")
    assert "skipping 1 complete checkpoint(s)" in again.stderr
    assert sql(db, "SELECT * EXCLUDE (seq_losses) FROM results ORDER BY ALL").equals(before)
    mean = collect(db, *neox, "-r", "step0", "--method", "mean", "--spans", "2")
    assert mean.exit_code == 0, mean.stderr
    by_method = sql(db, "SELECT method, count(*) AS n FROM results GROUP BY 1 ORDER BY 1")
    assert by_method.values.tolist() == [["mean", ROWS + 2], ["zero", ROWS + 2 + 1 + 2]]
    assert sql(db, "SELECT * EXCLUDE (seq_losses) FROM results WHERE method = 'zero' "
                   "ORDER BY ALL").equals(before)
    status = json.loads(CliRunner().invoke(main, ["--db", db, "status", "-f", "json"]).output)
    assert [(s["method"], s["result_rows"], s["complete"], s["missing"]) for s in status] == [
        ("mean", ROWS + 2, "block,attn,mlp,span2,metrics", ""),
        ("zero", ROWS + 5, "block,attn,mlp,span2,span3,swap,metrics", "")]


def test_adaptive_rows_pair_with_the_baseline_on_the_same_sequences(tmp_path, tiny_hub):
    db = str(tmp_path / "s.duckdb")
    result = collect(db, tiny_hub.repo("gpt-neox"), "-r", "step1", "--data", str(tiny_hub.txt),
                     "--tokens", "1280", "--seq-len", "20", "--batch-size", "8",
                     "--precision", "0.5")
    assert result.exit_code == 0, result.stderr
    view = sql(db, "SELECT a.delta, a.baseline_loss, a.loss, a.n_sequences, a.p_value, a.q_value,"
                   " r.delta AS stored FROM ablations a JOIN results r USING "
                   "(model, revision, eval_set, method, component, layer, span)")
    base = sql(db, "SELECT seq_losses FROM results WHERE component = 'none'").seq_losses[0]
    assert len(base) == view.n_sequences.max() and view.n_sequences.min() >= 32
    for row in view.itertuples():
        assert row.baseline_loss == pytest.approx(np.mean(base[:row.n_sequences]), abs=1e-12)
        assert row.delta == row.stored == pytest.approx(row.loss - row.baseline_loss, abs=1e-9)
        assert row.q_value >= row.p_value
    run = sql(db, "SELECT precision, order_seed, ablated_sequences FROM runs").iloc[0].tolist()
    assert run == [0.5, 0, int(view.n_sequences.sum())]


def test_a_checkpoint_failing_mid_sweep_leaves_no_rows_and_is_redone(tmp_path, neox, monkeypatch):
    db = str(tmp_path / "s.duckdb")
    real = collectors.collect.sweep_checkpoint

    def dies_in_step1(checkpoint, tokens, options, on_pass=None, on_batch=None):
        def passes(n, seen=[0]):
            seen[0] += 1
            if checkpoint.revision == "step1" and seen[0] == 5:
                raise RuntimeError("killed mid-checkpoint")
            on_pass(n)
        return real(checkpoint, tokens, options, passes, on_batch)

    monkeypatch.setattr(collectors.collect, "sweep_checkpoint", dies_in_step1)
    killed = collect(db, *neox, "-r", "step0", "-r", "step1", "-r", "step2")
    assert isinstance(killed.exception, RuntimeError)
    assert sql(db, "SELECT DISTINCT revision FROM results").revision.tolist() == ["step0"]
    assert counts(db)["checkpoints"] == 1
    monkeypatch.setattr(collectors.collect, "sweep_checkpoint", real)
    resumed = collect(db, *neox, "-r", "step0", "-r", "step1", "-r", "step2")
    assert resumed.exit_code == 0 and "skipping 1 complete" in resumed.stderr
    assert counts(db)["results"] == 3 * ROWS


def test_a_write_failing_inside_the_transaction_leaves_nothing(tmp_path, neox, monkeypatch):
    db = str(tmp_path / "s.duckdb")
    real = Store._upsert_results

    def half_written(self, table):
        real(self, table)  # the rows are in, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "_upsert_results", half_written)
    result = collect(db, *neox, "-r", "step0")
    assert result.exit_code == 130
    assert counts(db) == EMPTY


def test_a_reader_works_while_a_collector_writes(tmp_path, neox, monkeypatch):
    db = str(tmp_path / "s.duckdb")
    Store.open(db).close()
    real = Store.write_checkpoint
    readers, impatient, patient = [], [], []

    def read(**env):
        return subprocess.Popen(
            [sys.executable, "-m", "layerdb", "--db", db, "sql",
             "SELECT count(*) AS n FROM results", "-f", "csv"], env=dict(os.environ, **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def slow_write(self, **rows):
        real(self, **rows)
        if not impatient:  # readers start while this collector holds the store
            impatient.append(read(LAYERDB_LOCK_TIMEOUT="0"))
            patient.append(read())
            impatient[0].wait(timeout=120)  # the lock is held until the impatient one gave up

    monkeypatch.setattr(Store, "write_checkpoint", slow_write)
    done = threading.Event()

    def keep_reading():
        while not done.is_set():
            proc = read()
            proc.wait()
            readers.append(proc)

    background = threading.Thread(target=keep_reading)
    background.start()
    try:
        result = collect(db, *neox, "-r", "step0", "-r", "step1", "-r", "step2")
    finally:
        done.set()
        background.join()
    assert result.exit_code == 0, result.stderr
    gave_up = impatient[0].communicate()[1]
    assert impatient[0].returncode == 1 and "another process holds the store" in gave_up
    seen = []
    for proc in patient + readers:  # patient readers wait for the lock and read whole checkpoints
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        seen.append(int(out.split()[-1]))
    assert set(seen) <= {0, ROWS, 2 * ROWS, 3 * ROWS}
    assert seen[0] >= ROWS  # the reader that met the lock read after the commit
    assert len(seen) >= 2


def test_duplicate_weights_are_marked_not_swept_unless_asked(tmp_path, neox):
    db = str(tmp_path / "s.duckdb")
    result = collect(db, *neox, "--steps", "2,4")  # step4 holds step2's weights (the cache knows)
    assert result.exit_code == 0, result.stderr
    digest = sql(db, "SELECT weights_digest FROM checkpoints WHERE revision = 'step4'").iloc[0, 0]
    assert (f"same weights: step2 has the weights of step4 (weights digest {digest[:12]}): "
            "not downloaded, not swept") in result.stderr
    assert "1 checkpoint(s) collected, 0 already complete, 1 not swept" in result.output
    marks = ("SELECT revision, step, coalesce(same_weights_as, '') AS kept_by, "
             "weights_digest = '" + digest + "' AS same, "
             "weights_fingerprint IS NOT NULL AS loaded, weight_files FROM checkpoints ORDER BY 1")
    assert sql(db, marks).values.tolist() == [["step2", 2, "step4", True, False, 1],
                                              ["step4", 4, "", True, True, 1]]
    assert sql(db, "SELECT DISTINCT revision FROM results").revision.tolist() == ["step4"]
    again = collect(db, *neox, "--steps", "2,4")
    assert "skipping 2 complete checkpoint(s)" in again.stderr
    swept = collect(db, *neox, "-r", "step2", "--sweep-duplicates")
    assert swept.exit_code == 0, swept.stderr
    assert "step2 has the weights of step4" in swept.stderr and "swept anyway" in swept.stderr
    fps = sql(db, "SELECT count(DISTINCT weights_fingerprint) AS n, count(*) AS c, "
                  "count(same_weights_as) AS marked FROM checkpoints")
    assert fps.values.tolist() == [[1, 2, 1]]
    assert counts(db)["results"] == 2 * ROWS


def test_local_folder_and_other_sources(tmp_path, tiny_hub):
    db = str(tmp_path / "s.duckdb")
    for data in (tiny_hub.jsonl, tiny_hub.parquet):
        result = collect(db, str(tiny_hub.local_folder), "--data", str(data), *DATA)
        assert result.exit_code == 0, result.stderr
    assert "already complete" in result.output  # jsonl and parquet hold the same documents
    rows = sql(db, "SELECT model, revision, step IS NULL AS no_step, "
                   "commit_hash IS NULL AS no_commit FROM checkpoints")
    assert rows.values.tolist() == [["local-gpt2", "local", True, True]]


def test_evict_removes_finished_revisions_from_the_cache(tmp_path, tiny_hub):
    from huggingface_hub import scan_cache_dir

    def cached():
        return {ref for repo in scan_cache_dir().repos if repo.repo_id == tiny_hub.repo("evict")
                for rev in repo.revisions for ref in rev.refs}

    assert cached() == {"step0", "step1"}
    db = str(tmp_path / "s.duckdb")
    result = collect(db, tiny_hub.repo("evict"), "-r", "step0", "--evict",
                     "--data", str(tiny_hub.txt), *DATA)
    assert result.exit_code == 0, result.stderr
    assert cached() == {"step1"}
    assert collect(db, tiny_hub.repo("evict"), "-r", "step1", "--data", str(tiny_hub.txt),
                   *DATA).exit_code == 0


BAD = {
    "unknown model": (["nope/nope"], "unknown model nope/nope"),
    "unknown revision": (["{neox}", "-r", "step77"], "unknown revision step77"),
    "folder without config": (["{root}"], "holds no config.json"),
    "seq-len above context": (["{neox}", "--seq-len", "128"], "above the context"),
    "too little data": (["{neox}", "--data", "{short}"], "fewer than one sequence"),
    "unknown component": (["{neox}", "--components", "block,heads"], "unknown component(s) heads"),
    "unsupported architecture": (["{gptj}"], "unsupported architecture"),
    "nan weights": (["{neox}", "-r", "nan"], "NaN or infinite loss"),
    "step not in schedule": (["{neox}", "--steps", "3"], "not in the checkpoint schedule"),
    "unknown dtype": (["{neox}", "--dtype", "float8"], "unknown --dtype"),
    "missing data file": (["{neox}", "--data", "{root}/none.txt"], "no data file"),
    "bad device": (["{neox}", "--device", "tpu"], "unknown --device"),
    "binary data file": (["{neox}", "--data", "{binary}"], "is not UTF-8 text"),
    "span 0": (["{neox}", "--spans", "0,2"], "--spans must be lengths of at least 1 (got 0,2)"),
    "span not a number": (["{neox}", "--spans", "two"], "--spans takes a comma list of integers"),
    "span longer than the model": (["{neox}", "--spans", "4"], "--spans 4: longer than"),
    "swaps on one layer": (["{one}", "--swaps"], "--swaps needs two layers or more"),
    "unknown method": (["{neox}", "--method", "median"], "unknown --method 'median': use zero or mean"),
    "mean swaps": (["{neox}", "--swaps", "--method", "mean"], "no mean variant"),
    "precision 0": (["{neox}", "--precision", "0"], "--precision must be a positive number"),
    "negative precision": (["{neox}", "--precision", "-0.01"], "--precision must be a positive"),
    "precision as text": (["{neox}", "--precision", "fine"], "--precision takes a number of nats"),
    "folder without tokenizer": (["{notok}"], "has no tokenizer"),
}


@pytest.fixture(scope="module")
def populated_db(tmp_path_factory, tiny_hub):
    db = str(tmp_path_factory.mktemp("bad") / "s.duckdb")
    result = collect(db, tiny_hub.repo("gpt-neox"), "-r", "step0", "--data", str(tiny_hub.txt), *DATA)
    assert result.exit_code == 0
    return db


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_one_line_nonzero_exit_store_unchanged(case, populated_db, tiny_hub, tmp_path):
    args, message = BAD[case]
    short = tmp_path / "short.txt"
    short.write_text("the a of and")
    binary = tmp_path / "weights.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    notok = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_hub.local_folder, notok,
                    ignore=shutil.ignore_patterns("tokenizer*", "special_tokens_map.json"))
    values = {"neox": tiny_hub.repo("gpt-neox"), "root": str(tiny_hub.root), "short": str(short),
              "gptj": tiny_hub.repo("gptj"), "binary": str(binary), "notok": str(notok),
              "one": tiny_hub.repo("one-layer")}
    args = [a.format(**values) for a in args]
    if "--data" not in args:
        args += ["--data", str(tiny_hub.txt)]
    before = digest(populated_db)
    result = collect(populated_db, *DATA, *args)  # later options win
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output + result.stderr
    assert errors[-1].startswith("error:") and message in errors[-1], errors
    assert sum(line.startswith("error:") for line in errors) == 1
    assert "Traceback" not in result.stderr
    assert digest(populated_db) == before


def test_help_lists_defaults_components_and_families_from_their_definitions():
    from collectors.families import FAMILIES
    from collectors.settings import DEFAULT_BATCH_SIZE, DEFAULT_DATA, DEFAULT_TOKENS

    result = CliRunner().invoke(main, ["collect", "--help"], terminal_width=400)
    text = " ".join(result.output.split())
    assert DEFAULT_DATA in text and f"[default: {DEFAULT_TOKENS}]" in text
    assert f"[default: {DEFAULT_BATCH_SIZE}]" in text
    assert "block, attn, mlp." in text and "[default: block,attn,mlp]" in text
    for family in FAMILIES.values():
        assert f"{family.name} ({family.examples})" in text
    assert "Example: layerdb" in result.output


def test_the_cli_and_the_torch_free_collector_parts_import_no_torch():
    code = ("import sys, layerdb, layerdb.cli, collectors.families, collectors.settings, "
            "collectors.ablations, collectors.demo.specs; "
            "bad = [m for m in ('torch', 'transformers', 'ray') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


def test_the_api_an_executor_uses(tmp_path, tiny_hub):
    """prepare on the driver, run_checkpoint anywhere (everything pickles), one writer."""
    import dataclasses
    import pickle

    from collectors.collect import prepare, run_checkpoint
    from collectors.writer import completed, write_rows

    db = str(tmp_path / "s.duckdb")
    plan = prepare(tiny_hub.repo("gpt-neox"), revisions=["step0", "step1"], data=str(tiny_hub.txt),
                   tokens=192, seq_len=32, batch_size=4, device="cpu")
    plan = pickle.loads(pickle.dumps(dataclasses.replace(plan, device="auto")))
    key = (plan.ref.name, plan.tokens.eval_set, plan.options.method, plan.options.components)
    assert completed(db, *key) == set()
    rows = pickle.loads(pickle.dumps(run_checkpoint(plan, "step1")))
    assert rows.revision == "step1" and rows.results.num_rows == ROWS
    write_rows(db, rows)
    assert completed(db, *key) == {"step1"}
    assert completed(db, plan.ref.name, plan.tokens.eval_set, "zero", ("attn",)) == {"step1"}
    assert completed(db, plan.ref.name, plan.tokens.eval_set, "mean", ("attn",)) == set()
