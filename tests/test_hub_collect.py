"""`layerdb audit` and `layerdb collect` against the test hub over HTTP, with the real client:
weights audited before download, duplicates neither downloaded nor swept, step schedules from the
hub's refs, prefetch, eviction, and faults (dropped connections, failing downloads, a full disk).

Each command runs in a subprocess with HF_ENDPOINT=<test hub> (``client_env``): the client reads
it at import, and this test session is offline.  ``hub_pythia`` (tests/fixtures/hub_server.py):
step0, step1 and main serve one set of weights, step2 and step4 another, step8 a third.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.collect import DATA, ROWS, errors
from tests.fixtures.collect import sql_rows as sql
from tests.fixtures.disk import run_on_small_disk
from tests.fixtures.hub import corpus
from tests.fixtures.hub_server import PYTHIA_REPO, HubRepo, HubServer, client_env, run_client

PLAIN_REPO = "layerdb-test/hub-plain"  # weights kept in git itself: no LFS metadata
CACHE = "hub/models--layerdb-test--hub-pythia"


def weights(repo: HubRepo, revision: str):
    return repo.commit(revision).files["model.safetensors"]


def digest_of(repo: HubRepo, revision: str) -> str:
    """collectors.integrity's weights digest, computed here from the definition."""
    line = f"model.safetensors:{weights(repo, revision).sha256}\n"
    return hashlib.sha256(line.encode()).hexdigest()


def layerdb(server: HubServer, hf_home: Path, *args: str, **env) -> subprocess.CompletedProcess:
    """``python -m layerdb ARGS`` talking to ``server``, with its HF cache under ``hf_home``."""
    return subprocess.run([sys.executable, "-m", "layerdb", *args],
                          env={**client_env(server, hf_home), **env}, capture_output=True,
                          text=True, timeout=300)


def weight_gets(server: HubServer, repo: HubRepo, revision: str) -> list[int]:
    """Statuses of the GETs of ``revision``'s weights (each distinct file is one CDN object)."""
    return [r.status for r in server.requests.entries("GET", path=f"/lfs/{weights(repo, revision).sha256}")]


# -- fixtures: one hub and one collected store for the module -----------------------------------
@pytest.fixture(scope="module")
def hub_plain(hub_pythia) -> HubRepo:
    """step1 and step2 hold the same weights, step4 others; no file has LFS metadata."""
    repo = HubRepo(PLAIN_REPO)
    for branch, source in (("step1", "main"), ("step2", "main"), ("step4", "step2")):
        repo.add_revision(branch, hub_pythia.folders[source], lfs=False)
    return repo


@pytest.fixture(scope="module")
def hub(hub_pythia, hub_plain):
    with HubServer([hub_pythia, hub_plain]) as server:
        yield server


@pytest.fixture
def fresh(hub):
    """The module's hub with no faults and an empty request log."""
    hub.faults.clear()
    hub.requests.clear()
    yield hub
    hub.faults.clear()


@pytest.fixture(scope="module")
def corpus_txt(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(corpus()))
    return str(path)


@pytest.fixture(scope="module")
def collected(hub, corpus_txt, tmp_path_factory):
    """`collect --steps all -r main` of hub-pythia into a fresh store and HF cache."""
    root = tmp_path_factory.mktemp("collected")
    hub.faults.clear()
    hub.requests.clear()
    db = str(root / "s.duckdb")
    proc = layerdb(hub, root / "hf", "--db", db, "collect", PYTHIA_REPO, "--steps", "all",
                   "-r", "main", "--data", corpus_txt, *DATA)
    return dict(db=db, hf_home=root / "hf", proc=proc, requests=hub.requests.entries())


# -- audit ----------------------------------------------------------------------------------------
def test_audit_lists_weights_and_duplicates_without_downloading_them(fresh, hub_pythia, tmp_path):
    proc = layerdb(fresh, tmp_path / "hf", "--db", str(tmp_path / "none.duckdb"), "audit",
                   PYTHIA_REPO, "--steps", "all", "-r", "main", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    size = weights(hub_pythia, "main").size
    final, early, late = (digest_of(hub_pythia, r) for r in ("main", "step2", "step8"))
    assert [list(row.values()) for row in json.loads(proc.stdout)] == [
        ["main", None, 1, size, final, "step1", "hub", ""],
        ["step0", 0, 1, size, final, "step1", "hub", ""],
        ["step1", 1, 1, size, final, None, "hub", ""],
        ["step2", 2, 1, size, early, "step4", "hub", ""],
        ["step4", 4, 1, size, early, None, "hub", ""],
        ["step8", 8, 1, size, late, None, "hub", ""],
    ]
    assert proc.stderr.strip() == ("6 revision(s): 3 with another's weights (370.1 kB that collect "
                                   "would not download), 0 with a digest unknown until loaded")
    assert fresh.requests.count(file="model.safetensors") == 0  # listings only
    assert not (tmp_path / "hf" / CACHE / "blobs").exists()


def test_audit_of_weights_without_lfs_metadata_leaves_the_digest_to_loading(fresh, tmp_path):
    proc = layerdb(fresh, tmp_path / "hf", "--db", str(tmp_path / "none.duckdb"), "audit",
                   PLAIN_REPO, "-r", "step1", "-r", "step2", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        "step1,1,1,123352,,,hub,weight files without LFS metadata",
        "step2,2,1,123352,,,hub,weight files without LFS metadata"]


def test_an_unknown_revision_or_step_names_the_nearest_known_ones(fresh, tmp_path):
    revision = layerdb(fresh, tmp_path / "hf", "audit", PYTHIA_REPO, "-r", "step3")
    assert revision.returncode == 1
    assert errors(revision) == [f"error: unknown revision step3 of {PYTHIA_REPO} (nearest known: "
                                "step2, step4; 6 known)"]
    step = layerdb(fresh, tmp_path / "hf", "audit", PYTHIA_REPO, "--steps", "3,16")
    assert errors(step) == ["error: step(s) [3, 16] are not in the checkpoint schedule (nearest: "
                            "2, 4, 8)"]


# -- schedules -----------------------------------------------------------------------------------
SCHEDULE = f"""
import json
from collectors.checkpoints import resolve_model, step_schedule
print(json.dumps(sorted(step_schedule(resolve_model("{PYTHIA_REPO}")).items())))
"""


def test_steps_are_the_hub_refs_and_pythias_schedule_serves_only_when_none_can_be_read(
        fresh, tmp_path, collected):
    from layerdb.revisions import PYTHIA_STEPS

    from_hub = [[0, "step0"], [1, "step1"], [2, "step2"], [4, "step4"], [8, "step8"]]
    assert run_client(fresh, tmp_path / "empty", SCHEDULE) == from_hub
    fresh.faults.error_burst(99, 500, path="/api/models/*/refs")  # the hub lists no refs
    from_cache = run_client(fresh, collected["hf_home"], SCHEDULE)
    assert from_cache == from_hub  # the collect left every planned revision's ref in its cache
    pythia = run_client(fresh, tmp_path / "empty", SCHEDULE)
    assert [step for step, _ in pythia] == PYTHIA_STEPS


# -- collect ---------------------------------------------------------------------------------------
def test_collect_downloads_and_sweeps_each_distinct_weights_once(collected, hub, hub_pythia):
    proc, db = collected["proc"], collected["db"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{PYTHIA_REPO}: 3 checkpoint(s) collected, 0 already complete, "
                                  "3 not swept (another revision's weights), eval set ")
    final, early = digest_of(hub_pythia, "main")[:12], digest_of(hub_pythia, "step2")[:12]
    assert (f"same weights: main, step0 have the weights of step1 (weights digest {final}): not "
            "downloaded, not swept") in proc.stderr
    assert (f"same weights: step2 has the weights of step4 (weights digest {early}): not "
            "downloaded, not swept") in proc.stderr
    gets = [(r.host, r.path) for r in collected["requests"] if r.method == "GET" and r.file
            and r.file.endswith(".safetensors")]
    assert sorted(gets) == sorted(("cdn", f"/lfs/{weights(hub_pythia, r).sha256}")
                                  for r in ("step1", "step4", "step8"))
    size = weights(hub_pythia, "main").size
    assert sql(db, "SELECT revision, step, same_weights_as, weights_digest, weight_files, "
                   "weight_bytes, weights_fingerprint IS NOT NULL, commit_hash FROM checkpoints "
                   "ORDER BY step NULLS LAST") == [
        ("step0", 0, "step1", digest_of(hub_pythia, "step0"), 1, size, False, hub_pythia.branches["step0"]),
        ("step1", 1, None, digest_of(hub_pythia, "step1"), 1, size, True, hub_pythia.branches["step1"]),
        ("step2", 2, "step4", digest_of(hub_pythia, "step2"), 1, size, False, hub_pythia.branches["step2"]),
        ("step4", 4, None, digest_of(hub_pythia, "step4"), 1, size, True, hub_pythia.branches["step4"]),
        ("step8", 8, None, digest_of(hub_pythia, "step8"), 1, size, True, hub_pythia.branches["step8"]),
        ("main", None, "step1", digest_of(hub_pythia, "main"), 1, size, False, hub_pythia.branches["main"]),
    ]
    assert sql(db, "SELECT revision, count(*) FROM results GROUP BY 1 ORDER BY 1") == [
        ("step1", ROWS), ("step4", ROWS), ("step8", ROWS)]
    snapshots = collected["hf_home"] / CACHE / "snapshots"
    with_weights = {p.parent.name for p in snapshots.glob("*/model.safetensors")}
    assert with_weights == {hub_pythia.branches[r] for r in ("step1", "step4", "step8")}


def test_status_shows_the_duplicates(collected, hub):
    proc = layerdb(hub, collected["hf_home"], "--db", collected["db"], "status", "--format", "json")
    assert [(r["revision"], r["missing"], r["same_weights_as"]) for r in json.loads(proc.stdout)] == [
        ("step0", "duplicate of step1 (not swept)", "step1"), ("step1", "", None),
        ("step2", "duplicate of step4 (not swept)", "step4"), ("step4", "", None), ("step8", "", None),
        ("main", "duplicate of step1 (not swept)", "step1")]


def test_the_next_revision_downloads_while_one_is_swept(collected, hub_pythia):
    finished = dict(sql(collected["db"], "SELECT revision, finished_at FROM runs"))

    def fetched(revision: str) -> dt.datetime:
        (get,) = [r for r in collected["requests"]
                  if r.method == "GET" and r.path == f"/lfs/{weights(hub_pythia, revision).sha256}"]
        return dt.datetime.fromtimestamp(get.at, dt.timezone.utc).replace(tzinfo=None)

    assert fetched("step4") < finished["step1"]  # the sweep order: step1, step4, step8
    assert fetched("step8") < finished["step4"]


def test_a_rerun_resumes_without_downloading_weights(collected, fresh, corpus_txt):
    before = sql(collected["db"], "SELECT * FROM checkpoints ORDER BY revision")
    proc = layerdb(fresh, collected["hf_home"], "--db", collected["db"], "collect", PYTHIA_REPO,
                   "--steps", "0,2", "-r", "main", "-r", "step8", "--data", corpus_txt, *DATA)
    assert proc.returncode == 0, proc.stderr
    assert "skipping 4 complete checkpoint(s)" in proc.stderr
    assert proc.stdout.startswith(f"{PYTHIA_REPO}: 0 checkpoint(s) collected, 4 already complete")
    assert fresh.requests.count(file="*.safetensors") == 0
    assert sql(collected["db"], "SELECT * FROM checkpoints ORDER BY revision") == before


def test_a_rerun_planning_only_a_duplicate_marks_it_with_the_stored_keeper_and_sweeps_nothing(
        fresh, corpus_txt, tmp_path):
    db, hf_home = str(tmp_path / "s.duckdb"), tmp_path / "hf"
    first = layerdb(fresh, hf_home, "--db", db, "collect", PYTHIA_REPO, "-r", "step1",
                    "--data", corpus_txt, *DATA)
    assert first.returncode == 0, first.stderr
    results = sql(db, "SELECT * FROM results ORDER BY ALL")
    fresh.requests.clear()
    proc = layerdb(fresh, hf_home, "--db", db, "collect", PYTHIA_REPO, "-r", "step0",
                   "--data", corpus_txt, *DATA)  # step0 has step1's weights, stored complete
    assert proc.returncode == 0, proc.stderr
    assert "step0 has the weights of step1" in proc.stderr and "sweeping" not in proc.stderr
    assert fresh.requests.count(file="*.safetensors") == 0
    assert sql(db, "SELECT * FROM results ORDER BY ALL") == results
    assert sql(db, "SELECT revision, same_weights_as FROM checkpoints ORDER BY 1") == [
        ("step0", "step1"), ("step1", None)]


def test_sweep_duplicates_and_evict_keep_the_blobs_pending_revisions_need(fresh, hub_pythia,
                                                                          corpus_txt, tmp_path):
    db, hf_home = str(tmp_path / "s.duckdb"), tmp_path / "hf"
    proc = layerdb(fresh, hf_home, "--db", db, "collect", PYTHIA_REPO, "-r", "step2", "-r", "step8",
                   "-r", "step4", "--sweep-duplicates", "--evict", "--data", corpus_txt, *DATA)
    assert proc.returncode == 0, proc.stderr
    assert "step2 has the weights of step4" in proc.stderr and "swept anyway" in proc.stderr
    # step2's weights are step4's blob: evicting step2 kept it for step4, so it came once
    assert weight_gets(fresh, hub_pythia, "step2") == [200]
    assert fresh.requests.count("GET", file="tokenizer.json") == 1
    assert sql(db, "SELECT revision, same_weights_as, count(r.layer) FROM checkpoints c "
                   "LEFT JOIN results r USING (model, revision) GROUP BY ALL ORDER BY 1") == [
        ("step2", "step4", ROWS), ("step4", None, ROWS), ("step8", None, ROWS)]
    cache = hf_home / CACHE
    # every file of step2 is step4's too (step4 was still to come): evicting step2 freed nothing
    assert [line.count("evicted") for line in proc.stderr.splitlines() if "✓" in line] == [0, 1, 1]
    assert list((cache / "snapshots").iterdir()) == [] and list((cache / "blobs").iterdir()) == []
    assert not any(p.is_file() for p in (cache / "refs").rglob("*"))


def test_duplicates_found_after_loading_are_not_swept(fresh, hub_plain, corpus_txt, tmp_path):
    db = str(tmp_path / "s.duckdb")
    proc = layerdb(fresh, tmp_path / "hf", "--db", db, "collect", PLAIN_REPO, "-r", "step2",
                   "-r", "step1", "-r", "step4", "--data", corpus_txt, *DATA)
    assert proc.returncode == 0, proc.stderr
    assert "step1: loaded the weights of step2 (fingerprint " in proc.stderr
    assert sql(db, "SELECT c.revision, same_weights_as, weights_digest, weights_fingerprint IS NOT "
                   "NULL, count(r.layer) FROM checkpoints c LEFT JOIN results r "
                   "USING (model, revision) GROUP BY ALL ORDER BY 1") == [
        ("step1", "step2", None, True, 0), ("step2", None, None, True, ROWS),
        ("step4", None, None, True, ROWS)]
    fingerprints = sql(db, "SELECT count(DISTINCT weights_fingerprint) FROM checkpoints "
                           "WHERE revision IN ('step1', 'step2')")
    assert fingerprints == [(1,)]


# -- faults ------------------------------------------------------------------------------------------
def test_a_connection_dropped_mid_file_restarts_and_the_weights_are_right(
        fresh, hub_pythia, collected, corpus_txt, tmp_path):
    fresh.faults.drop_connection("model.safetensors", after_bytes=50_000)
    db = str(tmp_path / "s.duckdb")
    proc = layerdb(fresh, tmp_path / "hf", "--db", db, "collect", PYTHIA_REPO, "-r", "step8",
                   "--data", corpus_txt, *DATA)
    assert proc.returncode == 0, proc.stderr
    assert weight_gets(fresh, hub_pythia, "step8") == [200, 200]
    same = "SELECT weights_fingerprint FROM checkpoints WHERE revision = 'step8'"
    assert sql(db, same) == sql(collected["db"], same)
    losses = "SELECT component, layer, loss FROM results WHERE revision = 'step8' ORDER BY 1, 2"
    assert sql(db, losses) == sql(collected["db"], losses)


def test_a_revision_whose_downloads_keep_failing_is_reported_and_the_others_collected(
        fresh, hub_pythia, corpus_txt, tmp_path):
    fresh.faults.error_burst(2, 503, method="GET", path=f"/lfs/{weights(hub_pythia, 'step4').sha256}")
    fresh.faults.error_burst(99, 500, method="GET", path=f"/lfs/{weights(hub_pythia, 'step8').sha256}")
    db = str(tmp_path / "s.duckdb")
    proc = layerdb(fresh, tmp_path / "hf", "--db", db, "collect", PYTHIA_REPO, "-r", "step4",
                   "-r", "step8", "--data", corpus_txt, *DATA, LAYERDB_DOWNLOAD_BACKOFF_S="0.01")
    assert proc.returncode == 1
    assert weight_gets(fresh, hub_pythia, "step4") == [503, 503, 200]  # retried, then fine
    assert weight_gets(fresh, hub_pythia, "step8") == [500] * 5  # the prefetch, then 4 tries
    why = "download failed 4 times, the last with HfHubHTTPError: HTTP 500 Internal Server Error"
    lines = proc.stderr.splitlines()
    assert "summary: 1 checkpoint(s) written, 0 already complete, 1 failed" in lines
    assert any(line.startswith(f"  ✗ step8: {why}") for line in lines), proc.stderr
    assert len(errors(proc)) == 1 and errors(proc)[0].startswith(
        f"error: checkpoint step8 failed, nothing stored for it: {why}")
    assert sql(db, "SELECT revision, count(*) FROM results GROUP BY 1") == [("step4", ROWS)]


def test_a_disk_that_fills_during_a_download_gives_one_line_and_the_store_is_unchanged(request):
    # 96 KiB: room for a config and a tokenizer, not for the 120 kB weights
    run_on_small_disk(request, _download_fills_the_disk, size="96k")


def _download_fills_the_disk(disk, request):
    fresh, collected, corpus_txt, tmp_path = (
        request.getfixturevalue(name) for name in ("fresh", "collected", "corpus_txt", "tmp_path"))
    db = str(tmp_path / "s.duckdb")
    shutil.copyfile(collected["db"], db)
    before = Path(db).read_bytes()
    proc = layerdb(fresh, disk.root, "--db", db, "collect", PYTHIA_REPO, "-r", "step8",
                   "--data", corpus_txt, "--tokens", "128", "--seq-len", "32")  # a new eval set
    assert proc.returncode == 1
    assert errors(proc) == [
        f"error: the disk of the HF cache ({disk.root}/hub) is full: downloading "
        f"{PYTHIA_REPO}@step8 stopped, nothing of it was stored; free space (or collect with "
        "--evict) and run again"]
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert Path(db).read_bytes() == before
    assert not list(disk.root.rglob("*.incomplete"))
