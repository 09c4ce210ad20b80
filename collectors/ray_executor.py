"""``RayExecutor``: the collect sweep on a Ray cluster (``layerdb collect --executor ray``).

One Ray task per (model, revision), asking for one GPU where the cluster has GPUs and
``cpus_per_task`` CPUs otherwise.  Everything else is ``collectors.collect.collect``'s one flow:
this process prepares the plan (every input check, the eval tokens), skips checkpoints already
complete, and is the only process that opens the DuckDB file: a task returns its checkpoint's rows
(Arrow tables in ``SweepRows``) and they are written in one transaction each as they arrive.

Faults: a task whose worker dies (killed, out of memory, node lost) or that hits an error which may
pass on another try (CUDA or I/O: ``TransientTaskError``) is retried by Ray up to ``max_retries``
times; bad input (a LayerdbError: unknown revision, NaN loss ...) fails at once.  Either way the
other checkpoints go on, and the summary at the end lists what failed and why.  Ctrl-C cancels the
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
import tempfile
from dataclasses import replace

from layerdb.errors import LayerdbError, first_line

from .collect import Collection, Plan, run_checkpoint
from .hub import evict_revision
from .same_weights import DuplicateWeights
from .settings import DEFAULT_CPUS_PER_TASK, DEFAULT_MAX_RETRIES, MAX_RETRIES_LIMIT

RAY_MISSING = "--executor ray needs Ray, which is not installed: pip install 'layerdb[ray]'"
TASK_ENV_VARS = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")
WAIT_SECONDS = 1.0  # ray.wait timeout, so Ctrl-C is seen promptly


class TransientTaskError(Exception):
    """A task error that may pass on another try (CUDA, I/O).  Ray retries these; a LayerdbError
    (bad input) never."""


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
                               f"{first_line(exc)}") from None
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


def sweep_task(plan: Plan, revision: str, options=None, evict: bool = False,
               hints: dict | None = None):
    """One checkpoint, on a Ray worker, swept with ``options`` (default: the plan's): (SweepRows,
    or DuplicateWeights when its loaded weights are a kept revision's; bytes evicted from this
    node's HF cache).  ``hints``: run_checkpoint's ``patterns`` and ``kept``, and ``keep``, the
    blobs the run's other revisions need."""
    hints = hints or {}
    try:
        rows = run_checkpoint(plan, revision, options=options, patterns=hints.get("patterns"),
                              kept=hints.get("kept"))
    except DuplicateWeights as dup:
        rows = dup
    except LayerdbError:
        raise  # bad weights, NaN loss, unknown revision, downloads retried: the same on every try
    except (OSError, RuntimeError) as exc:  # CUDA errors, I/O: may pass on another try or node
        raise TransientTaskError(f"{type(exc).__name__}: {first_line(exc)}") from None
    # evicted from this node's cache; blobs that other revisions there still use are kept, and
    # so are those the run's other revisions need
    freed = (evict_revision(plan.ref.source, revision, hints.get("keep", frozenset()))
             if evict and not plan.ref.local else 0)
    return rows, freed


class RayExecutor:
    """One Ray task per checkpoint; see the module docstring."""

    def __init__(self, address: str | None = None, cpus_per_task: int = DEFAULT_CPUS_PER_TASK,
                 max_retries: int = DEFAULT_MAX_RETRIES):
        self.address, self.cpus_per_task, self.max_retries = address, cpus_per_task, max_retries
        self.device = "auto"

    def check(self, request: dict) -> dict:
        """Fail before any work on a missing Ray or bad Ray options; the request for ``prepare``."""
        import_ray()
        if not 0 <= self.max_retries <= MAX_RETRIES_LIMIT:
            raise LayerdbError(f"--max-retries must be between 0 and {MAX_RETRIES_LIMIT} "
                               f"(got {self.max_retries})")
        if self.cpus_per_task < 1:
            raise LayerdbError(f"--cpus-per-task must be at least 1 (got {self.cpus_per_task})")
        if request.get("device_map"):
            raise LayerdbError("--device-map: a Ray task holds one GPU; spread a model over "
                               "several devices with the local executor")
        self.device = request.get("device", "auto")
        task_resources(self.device, 1, self.cpus_per_task)  # a bad --device fails now
        # the driver may have no GPU: the tasks resolve the device where they run
        return dict(request, device="cpu" if self.device == "cpu" else "auto")

    def run(self, run: Collection, todo: dict) -> None:
        with ray_session(self.address) as ray:
            resources, task_device = task_resources(
                self.device, ray.cluster_resources().get("GPU", 0), self.cpus_per_task)
            run.say(f"scheduling {len(todo)} checkpoint(s) of {run.plan.ref.name} on Ray, one "
                    f"task each ({', '.join(f'{k}={v}' for k, v in resources.items())})",
                    highlight=False)
            plan_ref = ray.put(replace(run.plan, device=task_device))
            task_options = dict(resources, max_retries=self.max_retries,
                                retry_exceptions=[TransientTaskError], **_task_runtime_env())
            task = ray.remote(sweep_task)
            kept = run.weights.kept_fingerprints()
            tasks = {task.options(**task_options, name=f"layerdb {run.plan.ref.name}@{r}")
                     .remote(plan_ref, r, options, run.evict,
                             dict(patterns=run.weights.patterns(r), kept=kept,
                                  keep=run.weights.blobs_needed(set(todo) - {r}))): r
                     for r, options in todo.items()}
            self._write_as_they_arrive(ray, tasks, run)

    def _write_as_they_arrive(self, ray, tasks: dict, run: Collection) -> None:
        """Take each finished task's rows and write them in one transaction."""
        pending = list(tasks)
        try:
            while pending:
                finished, pending = ray.wait(pending, num_returns=1, timeout=WAIT_SECONDS)
                for ref in finished:
                    try:
                        rows, freed = ray.get(ref)
                    except Exception as exc:  # the task failed for good (retries spent, bad input)
                        run.fail(tasks[ref], _why(ray, exc, self.max_retries))
                        continue
                    if isinstance(rows, DuplicateWeights):
                        run.duplicate(rows)
                        continue
                    stats = rows.runs.to_pylist()[0]
                    run.write(rows, freed=freed, where=f", swept in {stats['wall_seconds']:.1f}s "
                                                       f"on {stats['host']}")
        except BaseException as exc:  # Ctrl-C, a full disk, a bug: stop this sweep's work
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if isinstance(exc, KeyboardInterrupt):
                run.say(f"[yellow]interrupted:[/] cancelled {len(pending)} outstanding "
                        f"checkpoint(s); {len(run.report.written)} written, each whole; run the "
                        "same command again to resume", highlight=False)
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
        return f"{type(cause).__name__}: {first_line(cause)}"
    return f"{type(exc).__name__}: {first_line(exc)}"


def _task_runtime_env() -> dict:
    """Task options handing this process's Hugging Face settings (cache, offline) to the tasks."""
    env = {name: os.environ[name] for name in TASK_ENV_VARS if name in os.environ}
    return {"runtime_env": {"env_vars": env}} if env else {}
