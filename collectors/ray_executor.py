"""``collect_on_ray``: the collect sweep on a Ray cluster (``layerdb collect --executor ray``).

One Ray task per (model, revision), asking for one GPU where the cluster has GPUs and
``cpus_per_task`` CPUs otherwise.  The driver (this process) prepares the plan (every input check,
the eval tokens), skips checkpoints already complete, and is the only process that opens the DuckDB
file: a task returns its checkpoint's rows (Arrow tables in ``SweepRows``) and the driver writes
each checkpoint in one transaction as it arrives.

Faults: a task whose worker dies (killed, out of memory, node lost) or that hits an error which may
pass on another try (CUDA or I/O: ``TransientTaskError``) is retried by Ray up to ``max_retries``
times; bad input (a LayerdbError: unknown revision, NaN loss ...) fails at once.  Either way the
other checkpoints go on, and a summary at the end lists what failed and why.  Ctrl-C cancels the
outstanding tasks; every checkpoint is in the store whole or not at all.

Every node needs ``pip install 'layerdb[collect,ray]'`` (workers import ``collectors``) and the
same view of the model: a hub id (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE ... are passed on to the
tasks when set here) or a local folder at the same path.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.markup import escape

from layerdb.errors import LayerdbError

from .collect import CollectReport, Plan, prepare, run_checkpoint, skip_complete
from .hub import evict_revision
from .progress import SweepProgress
from .writer import duplicate_revisions, write_rows

RAY_MISSING = "--executor ray needs Ray, which is not installed: pip install 'layerdb[ray]'"
DEFAULT_CPUS_PER_TASK = 1
DEFAULT_MAX_RETRIES = 3  # Ray's own default for tasks
MAX_RETRIES_LIMIT = 10  # a checkpoint that kills its worker this often will not recover
TASK_ENV_VARS = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")
WAIT_SECONDS = 1.0  # ray.wait timeout, so Ctrl-C is seen promptly


class TransientTaskError(Exception):
    """A task error that may pass on another try (CUDA, I/O).  Ray retries these; a LayerdbError
    (bad input) never."""


@dataclass
class KillWorkerForTests:
    """Test-only fault injection, handed to ``collect_on_ray(test_fault=...)``: the task of a
    listed revision SIGKILLs its own worker process at its first sweep pass, as the OOM killer
    would, on its first ``deaths[revision]`` attempts (marker files in ``marker_dir`` count them)."""
    marker_dir: str
    deaths: dict[str, int] = field(default_factory=dict)  # revision -> attempts that die

    def on_pass(self, revision: str):
        budget = self.deaths.get(revision, 0)
        if not budget:
            return None
        folder = Path(self.marker_dir)
        folder.mkdir(parents=True, exist_ok=True)
        attempt = self.attempts(revision)
        (folder / f"{revision}.{attempt}").touch()
        if attempt >= budget:
            return None
        return lambda n_tokens: os.kill(os.getpid(), signal.SIGKILL)

    def attempts(self, revision: str) -> int:
        return len(list(Path(self.marker_dir).glob(f"{revision}.*")))


def import_ray():
    try:
        import ray
    except ImportError:
        raise LayerdbError(RAY_MISSING) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the length of the block: the cluster at ``address``, else a private local instance
    (no dashboard, its own temp folder, quiet logs).  A session already open is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    temp = None
    if address:
        try:
            ray.init(address=address, **quiet)
        except Exception as exc:  # ConnectionError, ValueError ...
            raise LayerdbError(f"cannot connect to the Ray cluster at {address}: "
                               f"{_first_line(exc)}") from None
    else:
        temp = tempfile.mkdtemp(prefix="layerdb-ray-")  # short: Ray's socket paths must fit
        ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp, **quiet)
    try:
        yield ray
    finally:
        ray.shutdown()  # stops a local instance; only disconnects from a cluster
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


def task_resources(device: str, cluster_gpus: float, cpus_per_task: int) -> tuple[dict, str]:
    """Ray resources of one task and the device it sweeps on, for ``--device`` on this cluster."""
    if device == "auto":
        device = "cuda" if cluster_gpus else "cpu"
    if device == "cpu":
        return {"num_cpus": cpus_per_task}, "cpu"
    if device != "cuda":
        raise LayerdbError(f"--device {device}: with --executor ray use auto, cpu or cuda "
                           "(Ray gives each task one GPU)")
    if not cluster_gpus:
        raise LayerdbError("--device cuda: the Ray cluster has no GPUs")
    return {"num_cpus": cpus_per_task, "num_gpus": 1}, "cuda"


def sweep_task(plan: Plan, revision: str, evict: bool = False,
               fault: KillWorkerForTests | None = None):
    """One checkpoint, on a Ray worker: (SweepRows, bytes evicted from this node's HF cache)."""
    try:
        rows = run_checkpoint(plan, revision, on_pass=fault.on_pass(revision) if fault else None)
    except LayerdbError:
        raise  # bad weights, NaN loss, unknown revision: the same on every try
    except (OSError, RuntimeError) as exc:  # CUDA errors, I/O: may pass on another try or node
        raise TransientTaskError(f"{type(exc).__name__}: {_first_line(exc)}") from None
    # evicted from this node's cache; blobs that other revisions there still use are kept
    freed = evict_revision(plan.ref.source, revision) if evict and not plan.ref.local else 0
    return rows, freed


def collect_on_ray(db_path: str, model: str, *, address: str | None = None,
                   cpus_per_task: int = DEFAULT_CPUS_PER_TASK,
                   max_retries: int = DEFAULT_MAX_RETRIES,
                   evict: bool = False, console=None, test_fault: KillWorkerForTests | None = None,
                   **request) -> CollectReport:
    """Sweep ``model``'s planned revisions on Ray into the store at ``db_path``; the request
    keywords are ``prepare``'s.  Raises LayerdbError at the end if any checkpoint failed."""
    import_ray()  # before any work: say how to install it
    if not 0 <= max_retries <= MAX_RETRIES_LIMIT:
        raise LayerdbError(f"--max-retries must be between 0 and {MAX_RETRIES_LIMIT} "
                           f"(got {max_retries})")
    if cpus_per_task < 1:
        raise LayerdbError(f"--cpus-per-task must be at least 1 (got {cpus_per_task})")
    folder = Path(db_path).parent
    if not folder.is_dir():
        raise LayerdbError(f"cannot create store {db_path}: folder {folder} does not exist")
    device = request.pop("device", "auto")
    task_resources(device, 1, cpus_per_task)  # a bad --device fails before any work
    plan = prepare(model, device="cpu" if device == "cpu" else "auto", **request)
    say = console.print if console is not None else (lambda *a, **k: None)
    report, _, todo = skip_complete(db_path, plan, say)
    if todo:
        with ray_session(address) as ray:
            resources, task_device = task_resources(
                device, ray.cluster_resources().get("GPU", 0), cpus_per_task)
            say(f"scheduling {len(todo)} checkpoint(s) of {plan.ref.name} on Ray, one task each "
                f"({', '.join(f'{k}={v}' for k, v in resources.items())})", highlight=False)
            plan_ref = ray.put(replace(plan, device=task_device))
            options = dict(resources, max_retries=max_retries,
                           retry_exceptions=[TransientTaskError], **_task_runtime_env())
            task = ray.remote(sweep_task)
            tasks = {task.options(**options, name=f"layerdb {plan.ref.name}@{r}")
                     .remote(plan_ref, r, evict, test_fault): r for r in todo}
            with SweepProgress(console, n_checkpoints=len(todo)) as progress:
                _write_as_they_arrive(ray, tasks, db_path, report, progress, max_retries, say)
    report.duplicates = [group for group in duplicate_revisions(db_path, plan.ref.name)
                         if set(group) & set(plan.revisions)]
    for group in report.duplicates:
        say(f"[yellow]warning:[/] identical weights in revisions {', '.join(group)} of "
            f"{plan.ref.name}", highlight=False)
    _summary(report, say)
    if report.failed:
        reasons = "" if console is not None else " (" + "; ".join(  # else the summary shows them
            f"{r}: {why}" for r, why in report.failed.items()) + ")"
        raise LayerdbError(f"{len(report.failed)} checkpoint(s) failed, nothing stored for them: "
                           f"{', '.join(report.failed)}{reasons}")
    return report


def _write_as_they_arrive(ray, tasks: dict, db_path: str, report: CollectReport,
                          progress: SweepProgress, max_retries: int, say) -> None:
    """The driver loop: take each finished task's rows and write them in one transaction."""
    pending = list(tasks)
    try:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1, timeout=WAIT_SECONDS)
            for ref in finished:
                revision = tasks[ref]
                try:
                    rows, freed = ray.get(ref)
                except Exception as exc:  # the task failed for good (retries spent, or bad input)
                    report.failed[revision] = _why(ray, exc, max_retries)
                    progress.finish_checkpoint(_failed_line(revision, report), timed=False)
                    continue
                try:
                    write_rows(db_path, rows)
                except LayerdbError as exc:  # e.g. the store stayed locked: this one is lost
                    report.failed[revision] = f"computed but not written: {exc}"
                    progress.finish_checkpoint(_failed_line(revision, report), timed=False)
                    continue
                report.written.append(revision)
                run = rows.runs.to_pylist()[0]
                progress.finish_checkpoint(
                    f"[green]✓[/] {escape(revision)}: baseline loss {rows.baseline_loss:.4f}, "
                    f"{rows.results.num_rows} rows, swept in {run['wall_seconds']:.1f}s "
                    f"on {run['host']}"
                    + (f", evicted {freed / 2**20:.0f} MiB" if freed else ""), timed=False)
    except BaseException as exc:  # Ctrl-C, or a bug: stop the cluster's work on this sweep
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if isinstance(exc, KeyboardInterrupt):
            say(f"[yellow]interrupted:[/] cancelled {len(pending)} outstanding checkpoint(s); "
                f"{len(report.written)} written, each whole; run the same command again to resume",
                highlight=False)
        raise


def _why(ray, exc: Exception, max_retries: int) -> str:
    """One line on why a task failed for good."""
    attempts = f"{max_retries + 1} attempt(s)"
    errors = ray.exceptions
    if isinstance(exc, getattr(errors, "OutOfMemoryError", ())):
        return f"killed by Ray's memory monitor (out of memory), {attempts}"
    if isinstance(exc, errors.WorkerCrashedError):
        return f"its worker died (killed, out of memory or crashed), {attempts}"
    if isinstance(exc, getattr(errors, "NodeDiedError", ())):
        return f"its node died, {attempts}"
    if isinstance(exc, errors.TaskCancelledError):
        return "cancelled"
    cause = getattr(exc, "cause", None)
    if isinstance(cause, LayerdbError):
        return str(cause)
    if isinstance(cause, TransientTaskError):
        return f"{cause}, {attempts}"
    if cause is not None:
        return f"{type(cause).__name__}: {_first_line(cause)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _summary(report: CollectReport, say) -> None:
    say(f"summary: {len(report.written)} checkpoint(s) written, {len(report.skipped)} already "
        f"complete, {len(report.failed)} failed", highlight=False)
    for revision in report.failed:
        say("  " + _failed_line(revision, report), highlight=False)


def _failed_line(revision: str, report: CollectReport) -> str:
    return f"[red]✗[/] {escape(revision)}: {escape(report.failed[revision])}"


def _task_runtime_env() -> dict:
    """Task options handing this process's Hugging Face settings (cache, offline) to the tasks."""
    env = {name: os.environ[name] for name in TASK_ENV_VARS if name in os.environ}
    return {"runtime_env": {"env_vars": env}} if env else {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
