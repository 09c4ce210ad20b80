"""A store on a disk that fills: one-line errors, every earlier checkpoint intact, and a re-run
after space is freed completes.

The disk is a small tmpfs of each test's own (tests/fixtures/disk.py), filled to the byte by a
filler file (another program filling the disk) and freed by deleting it.  Mounting needs root:
where this process cannot mount, the test re-runs itself in a user and mount namespace where it is
root, and fails (never skips) if that is refused too.
"""
import functools
import resource

import pandas as pd
import pytest
from click.testing import CliRunner

import collectors.collect
from layerdb import Store
from layerdb.cli import main
from layerdb.errors import StoreWriteError
from layerdb.migrate import head_revision
from tests.fixtures.collect import DATA, ROWS, errors
from tests.fixtures.disk import run_on_small_disk
from tests.fixtures.results import small_store_rows

pytestmark = pytest.mark.usefixtures("torch_one_thread")

MODEL = "layerdb-test/tiny-gpt-neox"


# -- helpers ------------------------------------------------------------------------------------
def collect(db, hub, *revisions):
    revs = [arg for r in revisions for arg in ("-r", r)]
    return CliRunner().invoke(main, ["--db", db, "collect", hub.repo("gpt-neox"),
                                     "--data", str(hub.txt), *DATA, *revs])


def assert_one_line_error(result, message: str) -> None:
    # CliRunner catches what the command lets escape (which the terminal would show as a
    # traceback) and reports it as result.exception; the CLI's own error path is sys.exit(1).
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert errors(result) == [f"error: {message}"], result.stderr
    assert "Traceback" not in result.output + result.stderr


def results(db) -> pd.DataFrame:
    """Every result row, read through a read-only open (what `layerdb query` does)."""
    with Store.open(db, read_only=True) as store:
        return store.sql("SELECT revision, component, layer, loss, run_id, created_at "
                         "FROM results ORDER BY ALL")


def revisions(db) -> list[str]:
    with Store.open(db, read_only=True) as store:
        return store.sql("SELECT revision FROM runs ORDER BY revision")["revision"].tolist()


def store_checkpoint(model: str, revision: str) -> dict:
    """``Store.write_checkpoint`` keywords for one checkpoint of the results fixture."""
    rows = small_store_rows()

    def pick(table):
        return pd.DataFrame([r for r in rows[table]
                             if r["model"] == model and r["revision"] == revision])

    run = pick("runs")
    eval_sets = pd.DataFrame([e for e in rows["eval_sets"]
                              if e["eval_set"] in set(run["eval_set"])])
    models = pd.DataFrame([m for m in rows["models"] if m["model"] == model])
    return dict(model=models, checkpoint=pick("checkpoints"), eval_set=eval_sets, run=run,
                results=pick("results"))


# -- through `layerdb collect` ------------------------------------------------------------------
def test_collect_stops_in_one_line_when_the_disk_fills_and_a_rerun_resumes(request):
    run_on_small_disk(request, _disk_fills_during_a_sweep)


def _disk_fills_during_a_sweep(disk, request):
    hub = request.getfixturevalue("tiny_hub")
    monkeypatch = request.getfixturevalue("monkeypatch")
    db = str(disk.root / "s.duckdb")
    written_before = {}
    real_write_rows = collectors.collect.write_rows

    def write_then_fill(db_path, rows):  # e.g. the HF cache's next download fills the disk
        real_write_rows(db_path, rows)
        if rows.revision == "step1" and not written_before:
            written_before["results"] = results(db_path)
            disk.fill()

    monkeypatch.setattr(collectors.collect, "write_rows", write_then_fill)
    sweep = ("step0", "step1", "step4")  # three distinct weights (step2 would be step4's)

    full = collect(db, hub, *sweep)
    assert_one_line_error(full, f"the disk holding {db} is full: checkpoint step4 of {MODEL} was "
                                "not written; everything stored before it is intact; free space "
                                "and re-run to resume")
    assert "step0: baseline loss" in full.stderr and "step1: baseline loss" in full.stderr
    assert disk.free() == 0  # still full: the store is read from a full disk
    assert revisions(db) == ["step0", "step1"]
    assert results(db).equals(written_before["results"])
    assert len(written_before["results"]) == 2 * ROWS

    disk.free_space()
    again = collect(db, hub, *sweep)
    assert again.exit_code == 0, again.stderr
    assert "skipping 2 complete checkpoint(s)" in again.stderr
    assert "1 checkpoint(s) collected, 2 already complete" in again.output
    assert revisions(db) == list(sweep)
    after = results(db)
    assert len(after) == 3 * ROWS
    assert after[after.revision.isin(["step0", "step1"])].reset_index(drop=True).equals(
        written_before["results"])  # the complete checkpoints were not redone


def test_collect_on_a_full_disk_leaves_no_broken_store_behind(request):
    run_on_small_disk(request, _disk_full_before_the_store_exists)


def _disk_full_before_the_store_exists(disk, request):
    hub = request.getfixturevalue("tiny_hub")
    db = str(disk.root / "s.duckdb")
    disk.fill()
    full = collect(db, hub, "step0")
    assert_one_line_error(full, f"the disk holding {db} is full: the store could not be created; "
                                "free space and re-run")
    assert sorted(p.name for p in disk.root.iterdir()) == ["filler"]  # no 0-byte store left

    disk.free_space()
    again = collect(db, hub, "step0")
    assert again.exit_code == 0, again.stderr
    assert revisions(db) == ["step0"]
    assert len(results(db)) == ROWS


def test_other_write_errors_are_one_line_too(tmp_path, tiny_hub, monkeypatch):
    """A file-size limit (EFBIG, "File too large") stands for any I/O error but a full disk."""
    db = str(tmp_path / "s.duckdb")
    assert collect(db, tiny_hub, "step0").exit_code == 0
    real_write_rows = collectors.collect.write_rows

    def write_under_a_file_size_limit(db_path, rows):  # the log of one checkpoint is ~4 KiB
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))
        try:
            real_write_rows(db_path, rows)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    monkeypatch.setattr(collectors.collect, "write_rows", write_under_a_file_size_limit)
    limited = collect(db, tiny_hub, "step0", "step1")
    assert_one_line_error(
        limited, f'writing to {db} failed (TransactionContext Error: Failed to commit: Could not '
                 f'write file "{db}.wal": File too large): checkpoint step1 of {MODEL} was not '
                 "written; everything stored before it is intact; re-run to resume once that is "
                 "fixed")
    assert revisions(db) == ["step0"]

    monkeypatch.undo()
    again = collect(db, tiny_hub, "step0", "step1")
    assert again.exit_code == 0, again.stderr
    assert revisions(db) == ["step0", "step1"]


# -- through Store ------------------------------------------------------------------------------
# 0: no room for the new file's header (connect fails); 12 KiB: room for that, not for the schema.
@pytest.mark.parametrize("leave_kib", [0, 12])
def test_creating_a_store_on_a_full_disk_leaves_nothing_behind(request, leave_kib):
    run_on_small_disk(request, functools.partial(_create_on_full_disk, leave_kib=leave_kib))


def _create_on_full_disk(disk, request, leave_kib):
    db = str(disk.root / "s.duckdb")
    disk.fill(leave=leave_kib * 1024)
    with pytest.raises(StoreWriteError) as failed:
        Store.open(db)
    assert str(failed.value) == (f"the disk holding {db} is full: the store could not be created; "
                                 "free space and re-run")
    assert sorted(p.name for p in disk.root.iterdir()) == ["filler"]
    disk.free_space()
    with Store.open(db) as store:
        assert store.schema_revision() == head_revision()


# DuckDB merges its log into the file at a COMMIT that takes the log past wal_autocheckpoint
# (16 MiB: a big import). A transaction estimated above auto_checkpoint_skip_wal_threshold skips
# the log and is only in that merge; a smaller one is in the log first. The settings here make
# one small checkpoint do what a big write does.
AUTOCHECKPOINT_CASES = {
    "logged first": ({"wal_autocheckpoint": "1KB", "auto_checkpoint_skip_wal_threshold": 10**9},
                     "was written, but DuckDB could not merge its log ({db}.wal) into the store; "
                     "the next open replays it", ["step0", "step2"]),
    "merge only": ({"wal_autocheckpoint": "1KB"}, "may not have been written", ["step0"]),
}


@pytest.mark.parametrize("case", AUTOCHECKPOINT_CASES)
def test_a_failed_merge_at_commit_is_one_line_and_the_store_reopens(request, case):
    run_on_small_disk(request, functools.partial(_merge_fails_at_commit, case=case))


def _merge_fails_at_commit(disk, request, case):
    settings, outcome, stored = AUTOCHECKPOINT_CASES[case]
    db = str(disk.root / "s.duckdb")
    with Store.open(db) as store:
        store.write_checkpoint(**store_checkpoint("acme/large", "step0"))
    disk.fill(leave=64 * 1024)  # room for the log of one checkpoint, not for the merge
    with Store.open(db) as store:
        for name, value in settings.items():
            store.con.execute(f"SET {name} = '{value}'")
        with pytest.raises(StoreWriteError) as failed:
            store.write_checkpoint(**store_checkpoint("acme/large", "step2"),
                                   label="checkpoint step2 of acme/large")
    assert str(failed.value) == (f"the disk holding {db} is full: checkpoint step2 of acme/large "
                                 f"{outcome.format(db=db)}; free space and re-run to resume")
    assert revisions(db) == stored  # read on the full disk
    disk.free_space()
    with Store.open(db) as store:
        store.write_checkpoint(**store_checkpoint("acme/large", "step4"))
    assert revisions(db) == [*stored, "step4"]


def test_a_merge_that_fails_at_close_is_silent_and_the_log_is_replayed(request):
    run_on_small_disk(request, _merge_fails_at_close)


def _merge_fails_at_close(disk, request):
    db = str(disk.root / "s.duckdb")
    with Store.open(db) as store:
        store.write_checkpoint(**store_checkpoint("acme/large", "step0"))
    disk.fill(leave=64 * 1024)
    with Store.open(db) as store:  # the log fits; merging it into the file at close does not
        store.write_checkpoint(**store_checkpoint("acme/large", "step2"))
    assert (disk.root / "s.duckdb.wal").stat().st_size > 0
    assert revisions(db) == ["step0", "step2"]  # the next open replays the log
    disk.free_space()
    with Store.open(db):
        pass
    assert sorted(p.name for p in disk.root.iterdir()) == ["s.duckdb"]  # merged at last
    assert revisions(db) == ["step0", "step2"]


def test_an_insert_that_fills_the_disk_is_rolled_back_in_one_line(request):
    run_on_small_disk(request, _insert_fills_the_disk)


def _insert_fills_the_disk(disk, request):
    """A big INSERT writes row groups into the file as it goes, so the disk fills before COMMIT."""
    db = str(disk.root / "s.duckdb")
    with Store.open(db) as store:
        store.con.execute("CREATE TABLE scratch (text VARCHAR)")
    disk.fill(leave=64 * 1024)
    with Store.open(db) as store:
        with pytest.raises(StoreWriteError) as failed:
            with store.transaction("the big insert"):
                store.con.execute(
                    "INSERT INTO scratch SELECT md5(range::VARCHAR) FROM range(2000000)")
        assert str(failed.value) == (f"the disk holding {db} is full: the big insert was not "
                                     "written; everything stored before it is intact; free space "
                                     "and re-run to resume")
        assert store.con.execute("SELECT count(*) FROM scratch").fetchall() == [(0,)]  # rolled back
    disk.free_space()
    with Store.open(db) as store:
        store.con.execute("INSERT INTO scratch VALUES ('after')")
        assert store.con.execute("SELECT text FROM scratch").fetchall() == [("after",)]
