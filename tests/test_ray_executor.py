"""`layerdb collect --executor ray` on a local Ray instance (2 CPUs, no dashboard, a temporary
folder, auth disabled), started once for the module: the same rows as the local executor, resuming,
a killed worker retried with nothing duplicated, a checkpoint that keeps killing its worker reported
while the others are written, Ctrl-C, and the one-line message when Ray is not installed."""
import io
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console

import collectors.collect
import collectors.ray_executor as ray_executor
from collectors.collect import collect as collect_api
from collectors.ray_executor import RayExecutor, task_resources
from layerdb import Store
from layerdb.errors import LayerdbError
from tests.fixtures.collect import DATA, ROWS, collect, sql

RESULTS = ("SELECT revision, component, layer, loss, delta, delta_ci_low, delta_ci_high, "
           "seq_losses, n_tokens FROM results ORDER BY revision, component, layer")


def stored_revisions(db):
    return sql(db, "SELECT DISTINCT revision FROM results ORDER BY 1").revision.tolist()


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray")
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        with ray_executor.ray_session(num_cpus=2) as ray:  # the executor's own local start
            yield ray
    finally:
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture
def neox(tiny_hub):
    return [tiny_hub.repo("gpt-neox"), "--data", str(tiny_hub.txt), *DATA]


@pytest.fixture
def request_for(tiny_hub):
    """collect keywords for the tiny GPT-NeoX at some revisions."""
    def make(*revisions):
        return dict(model=tiny_hub.repo("gpt-neox"), revisions=list(revisions),
                    data=str(tiny_hub.txt), tokens=192, seq_len=32, batch_size=4)
    return make


def dying_task(marker_dir: Path, deaths: dict[str, int]):
    """A stand-in for ray_executor.sweep_task that SIGKILLs its worker (as the OOM killer would)
    on the first ``deaths[revision]`` attempts of a revision, then runs the real task.  Defined
    here, in the test, so Ray ships it to the workers by value; marker files count attempts."""
    def task(plan, revision, options=None, evict=False, hints=None):
        import os
        import signal

        import collectors.ray_executor as real  # in the worker: the module as shipped

        attempt = len(list(marker_dir.glob(f"{revision}.*")))
        (marker_dir / f"{revision}.{attempt}").touch()
        if attempt < deaths.get(revision, 0):
            os.kill(os.getpid(), signal.SIGKILL)
        return real.sweep_task(plan, revision, options, evict, hints)
    return task


def attempts(marker_dir: Path, revision: str) -> int:
    return len(list(marker_dir.glob(f"{revision}.*")))


def test_same_rows_as_the_local_executor_and_resumes(tmp_path, neox, ray_cluster, monkeypatch):
    local, on_ray = str(tmp_path / "local.duckdb"), str(tmp_path / "ray.duckdb")
    assert collect(local, *neox, "-r", "step0", "-r", "step1").exit_code == 0
    first = collect(on_ray, *neox, "-r", "step0", "--executor", "ray")
    assert first.exit_code == 0, first.output + first.stderr
    again = collect(on_ray, *neox, "-r", "step0", "-r", "step1", "--executor", "ray")
    assert again.exit_code == 0, again.output + again.stderr
    assert "skipping 1 complete checkpoint(s)" in again.stderr
    assert "1 checkpoint(s) collected, 1 already complete" in again.output
    assert sql(local, RESULTS).equals(sql(on_ray, RESULTS))  # exactly the same losses
    same = "SELECT revision, weights_fingerprint FROM checkpoints ORDER BY 1"
    assert sql(local, same).equals(sql(on_ray, same))
    runs = sql(on_ray, "SELECT revision, status, device FROM runs ORDER BY 1").values.tolist()
    assert runs == [["step0", "complete", "cpu"], ["step1", "complete", "cpu"]]
    monkeypatch.setattr(ray_executor, "ray_session", None)  # all complete: Ray is not even used
    nothing = collect(on_ray, *neox, "-r", "step1", "--executor", "ray")
    assert nothing.exit_code == 0 and "0 checkpoint(s) collected, 1 already" in nothing.output


def test_a_killed_worker_is_retried_and_nothing_is_duplicated(tmp_path, request_for, ray_cluster,
                                                              monkeypatch):
    db = str(tmp_path / "s.duckdb")
    markers = tmp_path / "attempts"
    markers.mkdir()
    monkeypatch.setattr(ray_executor, "sweep_task", dying_task(markers, {"step1": 1}))
    report = collect_api(db, **request_for("step0", "step1", "step2"),
                         executor=RayExecutor(max_retries=1))
    assert attempts(markers, "step1") == 2  # killed once, then done
    assert sorted(report.written) == ["step0", "step1", "step2"] and not report.failed
    with Store.open(db, read_only=True) as store:
        assert store.table_counts() == {"models": 1, "checkpoints": 3, "eval_sets": 1, "runs": 3,
                                        "results": 3 * ROWS, "layer_metrics": 3 * 5 * 3}
    twice = "SELECT revision, component, layer FROM results GROUP BY ALL HAVING count(*) > 1"
    assert sql(db, twice).empty


def test_a_checkpoint_that_keeps_dying_is_reported_and_the_others_are_written(
        tmp_path, request_for, ray_cluster, monkeypatch):
    db = str(tmp_path / "s.duckdb")
    markers = tmp_path / "attempts"
    markers.mkdir()
    monkeypatch.setattr(ray_executor, "sweep_task", dying_task(markers, {"step1": 99}))
    out = io.StringIO()
    failed = (r"^checkpoint step1 failed, nothing stored for it: its worker died "
              r"\(killed, out of memory or crashed\), 2 attempt\(s\)$")
    with pytest.raises(LayerdbError, match=failed):
        collect_api(db, **request_for("step0", "step1", "step2"),
                    executor=RayExecutor(max_retries=1), console=Console(file=out, width=200))
    assert attempts(markers, "step1") == 2  # 1 + max_retries, then given up
    assert stored_revisions(db) == ["step0", "step2"]
    summary = out.getvalue()[out.getvalue().index("summary:"):]
    assert "2 checkpoint(s) written, 0 already complete, 1 failed" in summary
    assert "step1: its worker died (killed, out of memory or crashed), 2 attempt(s)" in summary


def test_bad_input_is_not_retried(tmp_path, request_for, ray_cluster):
    db = str(tmp_path / "s.duckdb")
    with pytest.raises(LayerdbError, match=r"checkpoint nan failed.*NaN or infinite loss"):
        collect_api(db, **request_for("step0", "nan"), executor=RayExecutor())
    assert stored_revisions(db) == ["step0"]


def test_ctrl_c_cancels_the_rest_and_leaves_whole_checkpoints(tmp_path, neox, ray_cluster,
                                                              monkeypatch):
    db = str(tmp_path / "s.duckdb")
    real, calls = collectors.collect.write_rows, []

    def interrupted_on_second(path, rows):
        calls.append(rows.revision)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, rows)

    monkeypatch.setattr(collectors.collect, "write_rows", interrupted_on_second)
    result = collect(db, *neox, "-r", "step0", "-r", "step1", "-r", "step2", "--executor", "ray")
    assert result.exit_code == 130
    assert "interrupted:" in result.stderr and "run the same command again" in result.stderr
    assert stored_revisions(db) == [calls[0]]
    assert sql(db, "SELECT count(*) AS n FROM results").n[0] == ROWS


def test_without_ray_the_executor_says_how_to_install_it(tmp_path, neox, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    db = tmp_path / "s.duckdb"
    result = collect(str(db), *neox, "--executor", "ray")
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1
    assert errors == ["error: " + ray_executor.RAY_MISSING]
    assert "pip install 'layerdb[ray]'" in errors[0]
    assert not db.exists()


def test_ray_options_need_the_ray_executor(tmp_path, neox):
    db = str(tmp_path / "s.duckdb")
    result = collect(db, *neox, "--ray-address", "auto", "--max-retries", "2")
    assert result.exit_code == 1
    assert "--ray-address, --max-retries: only with --executor ray" in result.stderr
    assert collect(db, *neox, "--executor", "ray", "--max-retries", "11").exit_code == 2  # bounded


def test_task_resources():
    assert task_resources("auto", 0, 4) == ({"num_cpus": 4}, "cpu")
    assert task_resources("auto", 8, 1) == ({"num_cpus": 1, "num_gpus": 1}, "cuda")
    assert task_resources("cpu", 8, 2) == ({"num_cpus": 2}, "cpu")
    with pytest.raises(LayerdbError, match="no GPUs"):
        task_resources("cuda", 0, 1)
    with pytest.raises(LayerdbError, match="Ray gives each task one GPU"):
        task_resources("cuda:1", 8, 1)


def test_tasks_see_this_process_hf_settings(monkeypatch):
    monkeypatch.setenv("HF_HOME", "/somewhere/hf")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    env = ray_executor._task_runtime_env()["runtime_env"]["env_vars"]
    assert env["HF_HOME"] == "/somewhere/hf" and env["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_CACHE" not in env


def test_revisions_with_another_revisions_weights_are_not_swept_on_ray_either(
        tmp_path, request_for, ray_cluster):
    from collectors.collect import prepare
    from collectors.same_weights import DuplicateWeights

    db = str(tmp_path / "s.duckdb")
    report = collect_api(db, **request_for("step2", "step4"), executor=RayExecutor())
    assert report.written == ["step4"] and report.duplicates == {"step2": "step4"}
    assert stored_revisions(db) == ["step4"]
    # found after loading: the task returns the duplicate instead of sweeping it
    fingerprint = sql(db, "SELECT weights_fingerprint FROM checkpoints WHERE revision = 'step4'")
    kept = {fingerprint.iloc[0, 0]: ("step4", 4)}
    dup, freed = ray_executor.sweep_task(prepare(**request_for("step2")), "step2",
                                         hints={"kept": kept})
    assert isinstance(dup, DuplicateWeights) and (dup.revision, dup.same_as, freed) == (
        "step2", "step4", 0)
