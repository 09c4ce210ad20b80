"""``collect``: sweep a model's checkpoints into a store, resumably.  What ``layerdb collect`` runs.

Public pieces, for the CLI, the demo and other executors:

- ``prepare(model, ...) -> Plan``: every check that can fail on bad input (model, revisions,
  families, seq-len, components, device, data), and the eval tokens.  Touches no store.  A Plan
  pickles; ``dataclasses.replace(plan, device="cuda")`` retargets it for a worker.
- ``run_checkpoint(plan, revision, on_pass=None) -> SweepRows``: download one checkpoint
  (retried, collectors.hub), load it, sweep it, free it.  Pure: needs no store, so it can run on
  another machine; hand its rows to the one writing process.  Given the fingerprints of kept
  revisions it raises ``DuplicateWeights`` after loading instead of sweeping one of them again.
- ``collect(db_path, model, executor=..., ...) -> CollectReport``: the one flow every executor
  shares: check the store's folder, prepare, skip complete revisions, audit the rest's weights
  on the hub (collectors.integrity: revisions with another's weights are marked and neither
  downloaded nor swept, unless ``sweep_duplicates``), let the executor sweep the rest while this
  process writes each checkpoint in one transaction as its rows arrive, print a summary and fail
  (one line) if any checkpoint failed.
  ``LocalExecutor`` (here) sweeps one checkpoint after another in this process, prefetching the
  next from the hub; ``collectors.ray_executor.RayExecutor`` runs one Ray task per checkpoint.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from layerdb.errors import LayerdbError, first_line, require_folder
from layerdb.revisions import parse_revision
from layerdb.schema import ABLATED_COMPONENTS

from .checkpoints import (CheckpointLoadError, ModelRef, load_checkpoint, load_config,
                          plan_revisions, resolve_model)
from .cpu_malloc import tune_glibc_malloc
from .eval_tokens import (EvalTokens, build_eval_tokens, max_context, read_documents,
                          tokenizer_fingerprint)
from .families import family_for
from .hub import DownloadFailed, Prefetcher, download_revision, evict_revision
from .integrity import keeper
from .placement import Placement, parse_max_memory
from .progress import SweepProgress
from .rows import SweepRows
from .same_weights import DuplicateWeights, SameWeights
from .settings import DEFAULT_BATCH_SIZE, DEFAULT_DATA, DEFAULT_SEQ_LEN, DEFAULT_TOKENS, DTYPES
from .sweep import NonFiniteLoss, SweepOptions, n_passes, sweep_checkpoint
from .writer import completed_kinds, write_rows

# Files a local checkpoint folder holds when its tokenizer was saved beside the model.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model",
                   "spiece.model", "vocab.txt")


@dataclass
class Plan:
    ref: ModelRef
    revisions: list[str]
    tokens: EvalTokens
    options: SweepOptions
    dtype: str  # auto | float32 | bfloat16 | float16, resolved where the sweep runs
    device: str  # auto | cpu | cuda[:i], resolved where the sweep runs
    n_layers: int
    placement: Placement = Placement()  # one device, or accelerate's device map

    def n_passes(self, options: SweepOptions) -> int:
        """Forward passes of one checkpoint swept with ``options``."""
        return n_passes(self.tokens.n_sequences, self.n_layers, options)

    def stored_kinds(self, db_path: str, duplicates_done: bool = True) -> dict[str, set[str]]:
        """Per revision in the store: its complete kinds for this eval set and method (the
        ``coverage`` query decides; with ``duplicates_done`` a revision with another's weights
        has what that one has)."""
        return completed_kinds(db_path, self.ref.name, self.tokens.eval_set, self.options.method,
                               duplicates_done)

    def lacking(self, stored: dict[str, set[str]], revisions) -> dict[str, SweepOptions]:
        """Per revision not complete in ``stored``: the options cut down to what it lacks."""
        missing = {r: self.options.only(set(self.options.kinds()) - stored.get(r, set()))
                   for r in revisions}
        return {r: options for r, options in missing.items() if options is not None}

    def todo(self, db_path: str, revisions: list[str],
             duplicates_done: bool = True) -> dict[str, SweepOptions]:
        """``lacking`` as the store at ``db_path`` holds it now."""
        return self.lacking(self.stored_kinds(db_path, duplicates_done), revisions)


@dataclass
class CollectReport:
    model: str
    eval_set: str
    planned: list[str]
    skipped: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)  # revision -> the one keeping its results


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2]
        if not torch.cuda.is_available():
            raise LayerdbError(f"--device {device}: no CUDA device is available here")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise LayerdbError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise LayerdbError(f"unknown --device {device!r}: use auto, cpu, cuda or cuda:N")


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype not in DTYPES:
        raise LayerdbError(f"unknown --dtype {dtype!r}: use {', '.join(DTYPES)}")
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def load_tokenizer(ref: ModelRef, revision: str):
    """The checkpoint's tokenizer; a one-line error when it has none (transformers would build an
    empty one for a folder without tokenizer files, and every text would tokenize to nothing)."""
    from transformers import AutoTokenizer

    if ref.local and not any((Path(ref.source) / name).is_file() for name in TOKENIZER_FILES):
        raise LayerdbError(f"the checkpoint folder {ref.source} has no tokenizer (none of "
                           f"{', '.join(TOKENIZER_FILES)}): save it beside the model with "
                           "tokenizer.save_pretrained(folder)")
    try:
        if ref.local:
            tokenizer = AutoTokenizer.from_pretrained(ref.source)
        else:
            tokenizer = AutoTokenizer.from_pretrained(ref.source, revision=revision)
    except Exception as exc:
        raise LayerdbError(f"cannot load the tokenizer of {ref.name}@{revision}: "
                           f"{first_line(exc)}") from None
    if len(tokenizer) == 0:
        raise LayerdbError(f"the tokenizer of {ref.name}@{revision} is empty (no vocabulary)")
    return tokenizer


def prepare(model: str, *, revisions=(), steps: str | None = None, data: str | None = None,
            tokens: int = DEFAULT_TOKENS, seq_len: int | None = None,
            batch_size: int = DEFAULT_BATCH_SIZE, components=ABLATED_COMPONENTS, spans=(),
            swaps: bool = False, method: str = "zero", precision: float | None = None,
            dtype: str = "auto", device: str = "auto", device_map: str | None = None,
            max_memory: str | dict | None = None, offload_folder: str | None = None) -> Plan:
    """Check everything about the request and build the eval tokens, before any sweep work."""
    _quiet_transformers()
    if isinstance(max_memory, str):
        max_memory = parse_max_memory(max_memory)
    placement = Placement(device_map, max_memory, offload_folder)
    if device_map is not None and device != "auto":
        raise LayerdbError("--device-map places the model itself: leave --device at auto")
    options = SweepOptions(components=tuple(components), spans=tuple(spans), swaps=swaps,
                           method=method, batch_size=batch_size, precision=precision)
    pick_dtype(dtype, pick_device(device))  # fail now on a bad --dtype / --device
    ref = resolve_model(model)
    planned = plan_revisions(ref, revisions, steps)
    configs = {r: load_config(ref, r) for r in planned}
    for revision, config in configs.items():
        family_for(config)  # an unknown architecture fails here, naming the supported ones
        options.check_fits(config.num_hidden_layers, f"{ref.name}@{revision}")
    first = configs[planned[0]]
    if seq_len is None:
        seq_len = min(DEFAULT_SEQ_LEN, max_context(first) or DEFAULT_SEQ_LEN)
    tokenizer = load_tokenizer(ref, planned[0])
    source = data or DEFAULT_DATA
    eval_tokens = build_eval_tokens(tokenizer, read_documents(source), tokens, seq_len,
                                    source=source,
                                    tokenizer_name=tokenizer_fingerprint(tokenizer))
    for revision, config in configs.items():
        eval_tokens.check_fits(config, f"{ref.name}@{revision}")
    return Plan(ref, planned, eval_tokens, options, dtype, device, first.num_hidden_layers,
                placement)


def run_checkpoint(plan: Plan, revision: str, on_pass=None, *,
                   options: SweepOptions | None = None, on_batch=None,
                   patterns: list[str] | None = None,
                   kept: dict[str, tuple[str, int | None]] | None = None,
                   download: bool = True) -> SweepRows:
    """Download ``plan.ref@revision``'s ``patterns`` (retried; offline: the cache; ``download``
    False: the caller did), load it, sweep it on the plan's tokens with ``options`` (default: the
    plan's), free the model.  Device and dtype are resolved here, so a plan prepared on one
    machine runs on another's accelerator.  ``kept``: fingerprint -> (revision, step) of kept
    revisions; loaded weights equal to one that keeps them raise DuplicateWeights."""
    if download and not plan.ref.local:
        download_revision(plan.ref.source, revision, patterns)
    device = pick_device(plan.device)
    if device == "cpu":
        tune_glibc_malloc()  # activations stay mapped between passes (collectors.cpu_malloc)
    checkpoint = load_checkpoint(plan.ref, revision, pick_dtype(plan.dtype, device), device,
                                 plan.placement)
    big = sum(p.numel() for p in checkpoint.model.parameters()) > 10_000_000
    try:
        other = (kept or {}).get(checkpoint.fingerprint)
        step = parse_revision(revision).step
        if other and other[0] != revision and keeper([(revision, step), other]) == other[0]:
            raise DuplicateWeights(revision, other[0], checkpoint.fingerprint,
                                   checkpoint.commit_hash)
        return sweep_checkpoint(checkpoint, plan.tokens, options or plan.options, on_pass,
                                on_batch)
    finally:
        del checkpoint
        if big:  # a full gc costs ~0.3 s: only worth it to free a real model's memory at once
            _free_memory(device)


class Collection:
    """One collect run's state, handed to the executor: the plan, the report, the progress, the
    revisions with the same weights (``weights``), and ``write`` / ``fail`` / ``duplicate``, which
    every executor calls as each checkpoint ends."""

    def __init__(self, db_path: str, plan: Plan, report: CollectReport, progress: SweepProgress,
                 evict: bool, say, weights: SameWeights | None = None,
                 todo: list[str] | None = None):
        self.db_path, self.plan, self.report, self.progress = db_path, plan, report, progress
        self.evict, self.say = evict, say
        self.weights = weights or SameWeights(db_path, plan.ref, {}, [])
        self.pending = set(todo if todo is not None else plan.revisions)  # not finished yet

    def write(self, rows: SweepRows, freed: int | None = None, where: str = "") -> None:
        """Write one checkpoint in one transaction, with the rows of the revisions that share its
        weights (a store that cannot take it stops the run), then evict it from this machine's
        HF cache, unless the executor evicted it where it ran (``freed``: the bytes it freed)."""
        rows = self.weights.complete(rows)
        write_rows(self.db_path, rows)
        self.report.written.append(rows.revision)
        self.pending.discard(rows.revision)
        if freed is None:
            freed = self.evict_here(rows.revision)
        self.progress.finish_checkpoint(
            f"[green]✓[/] {escape(rows.revision)}: baseline loss {rows.baseline_loss:.4f}, "
            f"{rows.results.num_rows} rows{where}"
            + (f", evicted {freed / 2**20:.0f} MiB" if freed else ""))

    def evict_here(self, revision: str) -> int:
        """With --evict: delete ``revision`` from this machine's HF cache, keeping the blobs that
        revisions still to come need; the bytes freed."""
        if not self.evict or self.plan.ref.local:
            return 0
        return evict_revision(self.plan.ref.source, revision, self.keep_blobs(revision))

    def keep_blobs(self, revision: str) -> frozenset[str]:
        return self.weights.blobs_needed(self.pending - {revision})

    def fail(self, revision: str, why: str) -> None:
        """A checkpoint that failed for good: reported at the end, the others go on."""
        self.report.failed[revision] = why
        self.pending.discard(revision)
        self.weights.dropped(revision)
        self.progress.finish_checkpoint(_failed_line(revision, why), timed=False)

    def duplicate(self, dup: DuplicateWeights) -> None:
        """A revision whose loaded weights are a kept revision's: its row, no results."""
        self.weights.duplicate(dup)
        self.report.duplicates[dup.revision] = dup.same_as
        self.pending.discard(dup.revision)
        freed = self.evict_here(dup.revision)
        self.progress.finish_checkpoint(
            f"[yellow]=[/] {escape(dup.revision)}: loaded the weights of {escape(dup.same_as)} "
            f"(fingerprint {dup.fingerprint[:12]}): not swept"
            + (f", evicted {freed / 2**20:.0f} MiB" if freed else ""), timed=False)

    def skip(self, revision: str, why: str) -> None:
        self.report.skipped.append(revision)
        self.pending.discard(revision)
        self.progress.finish_checkpoint(f"{escape(revision)}: {why}", timed=False)

    def still_to_do(self, revision: str) -> SweepOptions | None:
        """What ``revision`` lacks now: another collector may have done some of it meanwhile."""
        return self.plan.todo(self.db_path, [revision],
                              not self.weights.sweep_duplicates).get(revision)


class LocalExecutor:
    """Checkpoint after checkpoint in this process: once a revision's files are in, the next
    revision downloads while it is loaded and swept (``prefetch=False``: each one downloads when
    its turn comes)."""

    def __init__(self, prefetch: bool = True):
        self.prefetch = prefetch

    def check(self, request: dict) -> dict:
        return request

    def run(self, run: Collection, todo: dict[str, SweepOptions]) -> None:
        plan = run.plan
        prefetcher = Prefetcher(plan.ref.source) if self.prefetch and not plan.ref.local else None
        revisions = list(todo)
        try:
            for i, revision in enumerate(revisions):
                options = todo[revision] if i == 0 else run.still_to_do(revision)
                if options is None:
                    run.skip(revision, "completed meanwhile by another collector")
                    continue
                run.progress.start_checkpoint(revision, plan.n_passes(options))
                patterns = run.weights.patterns(revision)
                try:
                    if prefetcher:
                        prefetcher.wait()  # this revision's prefetch, if it was the next
                        download_revision(plan.ref.source, revision, patterns)
                        if i + 1 < len(revisions):
                            following = revisions[i + 1]
                            prefetcher.start(following, run.weights.patterns(following))
                    rows = run_checkpoint(plan, revision, on_pass=run.progress.advance,
                                          options=options, on_batch=run.progress.adaptive,
                                          patterns=patterns, kept=run.weights.kept_fingerprints(),
                                          download=prefetcher is None)
                except DuplicateWeights as dup:
                    run.duplicate(dup)
                    continue
                except (NonFiniteLoss, CheckpointLoadError, DownloadFailed) as exc:  # go on
                    run.fail(revision, str(exc))
                    continue
                run.write(rows)
        finally:
            if prefetcher:
                prefetcher.wait()


def collect(db_path: str, model: str, *, executor=None, evict: bool = False,
            sweep_duplicates: bool = False, console=None, **request) -> CollectReport:
    """Sweep ``model``'s planned revisions into the store at ``db_path`` with ``executor``
    (default: ``LocalExecutor()``); see ``prepare`` for the request keywords.  Revisions serving
    the weights of another are marked, not swept (``sweep_duplicates``: swept anyway).  Raises
    LayerdbError at the end if any checkpoint failed."""
    executor = executor or LocalExecutor()
    require_folder(db_path, "create store")
    say = console.print if console is not None else (lambda *a, **k: None)
    plan = prepare(model, **executor.check(request))
    stored = plan.stored_kinds(db_path, duplicates_done=not sweep_duplicates)
    lacking = plan.lacking(stored, plan.revisions)
    report = skip_complete(plan, lacking, say)
    weights = SameWeights.read(db_path, plan.ref, list(lacking), sweep_duplicates)
    done = set(stored) - set(plan.lacking(stored, stored))  # stored keepers, planned or not
    sweep = weights.plan(list(lacking), done, say)
    todo = plan.lacking(stored, sweep)  # a keeper added by ``weights`` lacks what it lacks
    report.duplicates = dict(weights.duplicates)
    if todo:
        with SweepProgress(console, n_checkpoints=len(todo)) as progress:
            executor.run(Collection(db_path, plan, report, progress, evict, say, weights,
                                    list(todo)), todo)
    _summary(report, say)
    if report.failed:
        raise LayerdbError(_failures(report.failed))
    return report


def skip_complete(plan: Plan, lacking: dict[str, SweepOptions], say) -> CollectReport:
    """A report with the revisions already complete (not in ``lacking``) marked skipped; says
    which, and which checkpoints only lack some kinds."""
    report = CollectReport(plan.ref.name, plan.tokens.eval_set, plan.revisions)
    report.skipped = [r for r in plan.revisions if r not in lacking]
    if report.skipped:
        say(f"skipping {len(report.skipped)} complete checkpoint(s) of {plan.ref.name} on eval set "
            f"{plan.tokens.eval_set}: {_short_list(report.skipped)}", highlight=False)
    everything = set(plan.options.kinds())
    partial = {r: o.kinds() for r, o in lacking.items() if set(o.kinds()) != everything}
    if partial:
        say(f"adding only what {len(partial)} checkpoint(s) lack: "
            + _short_list([f"{r} ({', '.join(kinds)})" for r, kinds in partial.items()]),
            highlight=False)
    return report


def _summary(report: CollectReport, say) -> None:
    if not report.failed:
        return
    not_swept = sum(r not in report.written for r in report.duplicates)
    say(f"summary: {len(report.written)} checkpoint(s) written, {len(report.skipped)} already "
        f"complete, " + (f"{not_swept} with another's weights, " if not_swept else "")
        + f"{len(report.failed)} failed", highlight=False)
    for revision, why in report.failed.items():
        say("  " + _failed_line(revision, why), highlight=False)


def _failures(failed: dict[str, str]) -> str:
    """The one line a failed run ends with."""
    if len(failed) == 1:
        revision, why = next(iter(failed.items()))
        return f"checkpoint {revision} failed, nothing stored for it: {why}"
    return (f"{len(failed)} checkpoints failed, nothing stored for them: "
            + "; ".join(f"{r}: {why}" for r, why in failed.items()))


def _failed_line(revision: str, why: str) -> str:
    return f"[red]✗[/] {escape(revision)}: {escape(why)}"


def _short_list(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def _free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
