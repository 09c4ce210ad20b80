"""``collect``: sweep a model's checkpoints into a store, resumably.  What ``layerdb collect`` runs.

Public pieces, for the CLI, the demo and other executors (e.g. one Ray task per checkpoint):

- ``prepare(model, ...) -> Plan``: every check that can fail on bad input (model, revisions,
  families, seq-len, components, device, data), and the eval tokens.  Touches no store.  A Plan
  pickles; ``dataclasses.replace(plan, device="cuda")`` retargets it for a worker.
- ``run_checkpoint(plan, revision, on_pass=None) -> SweepRows``: load one checkpoint, sweep it,
  free it.  Pure: needs no store, so it can run on another machine; hand its rows to
  ``collectors.writer.write_rows(db_path, rows)`` in the one writing process.
- ``collect(db_path, model, ...) -> CollectReport``: prepare, skip complete revisions, run the rest
  one by one (prefetching the next from the hub, evicting finished ones with ``evict``), write each
  checkpoint's rows in one transaction, report revisions with duplicate weights.
"""
from __future__ import annotations

import gc
from pathlib import Path
from dataclasses import dataclass, field

from layerdb.errors import LayerdbError
from layerdb.schema import ABLATED_COMPONENTS

from .checkpoints import CheckpointLoadError, ModelRef, load_checkpoint, load_config, plan_revisions, resolve_model
from .cpu_malloc import tune_glibc_malloc
from .eval_tokens import DEFAULT_DATA, EvalTokens, build_eval_tokens, read_documents
from .families import family_for
from .hub import Prefetcher, evict_revision
from .progress import SweepProgress
from .rows import SweepRows, max_context
from .sweep import NonFiniteLoss, SweepOptions, ablations, sweep_checkpoint
from .writer import completed, duplicate_revisions, write_rows

DEFAULT_TOKENS = 131_072  # evaluation tokens per checkpoint (before cutting into sequences)
DEFAULT_SEQ_LEN = 1024  # capped at the model's context
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class Plan:
    ref: ModelRef
    revisions: list[str]
    tokens: EvalTokens
    options: SweepOptions
    dtype: str  # auto | float32 | bfloat16 | float16, resolved where the sweep runs
    device: str  # auto | cpu | cuda[:i], resolved where the sweep runs
    n_layers: int


@dataclass
class CollectReport:
    model: str
    eval_set: str
    planned: list[str]
    skipped: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    duplicates: list[list[str]] = field(default_factory=list)


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
    from transformers import AutoTokenizer

    try:
        if ref.local:
            return AutoTokenizer.from_pretrained(ref.source)
        return AutoTokenizer.from_pretrained(ref.source, revision=revision)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LayerdbError(f"cannot load the tokenizer of {ref.name}@{revision}: {first}") from None


def prepare(model: str, *, revisions=(), steps: str | None = None, data: str | None = None,
            tokens: int = DEFAULT_TOKENS, seq_len: int | None = None, batch_size: int = 8,
            components=ABLATED_COMPONENTS, dtype: str = "auto", device: str = "auto") -> Plan:
    """Check everything about the request and build the eval tokens, before any sweep work."""
    _quiet_transformers()
    options = SweepOptions(components=tuple(components), batch_size=batch_size)
    pick_dtype(dtype, pick_device(device))  # fail now on a bad --dtype / --device
    ref = resolve_model(model)
    planned = plan_revisions(ref, revisions, steps)
    configs = {r: load_config(ref, r) for r in planned}
    for config in configs.values():
        family_for(config)  # an unknown architecture fails here, naming the supported ones
    first = configs[planned[0]]
    context = max_context(first)
    if seq_len is None:
        seq_len = min(DEFAULT_SEQ_LEN, context or DEFAULT_SEQ_LEN)
    if context is not None and seq_len > context:
        raise LayerdbError(f"--seq-len {seq_len} is above the context of {ref.name} ({context} tokens)")
    tokenizer = load_tokenizer(ref, planned[0])
    source = data or DEFAULT_DATA
    eval_tokens = build_eval_tokens(tokenizer, read_documents(source), tokens, seq_len,
                                    source=source, tokenizer_name=ref.name)
    vocab = getattr(first, "vocab_size", None)
    if vocab is not None and int(eval_tokens.ids.max()) >= vocab:
        raise LayerdbError(f"the tokenizer of {ref.name} yields id {int(eval_tokens.ids.max())}, "
                           f"outside the model's vocabulary ({vocab})")
    n_layers = first.num_hidden_layers
    return Plan(ref, planned, eval_tokens, options, dtype, device, n_layers)


def run_checkpoint(plan: Plan, revision: str, on_pass=None) -> SweepRows:
    """Load ``plan.ref@revision``, sweep it on the plan's tokens, free the model.  Device and dtype
    are resolved here, so a plan prepared on one machine runs on another's accelerator."""
    device = pick_device(plan.device)
    if device == "cpu":
        tune_glibc_malloc()  # activations stay mapped between passes (collectors.cpu_malloc)
    checkpoint = load_checkpoint(plan.ref, revision, pick_dtype(plan.dtype, device), device)
    big = sum(p.numel() for p in checkpoint.model.parameters()) > 10_000_000
    try:
        return sweep_checkpoint(checkpoint, plan.tokens, plan.options, on_pass)
    finally:
        del checkpoint
        if big:  # a full gc costs ~0.3 s: only worth it to free a real model's memory at once
            _free_memory(device)


def collect(db_path: str, model: str, *, evict: bool = False, console=None,
            **request) -> CollectReport:
    """Sweep ``model``'s planned revisions into the store at ``db_path``; see ``prepare`` for the
    request keywords.  Raises LayerdbError at the end if any checkpoint failed."""
    folder = Path(db_path).parent
    if not folder.is_dir():
        raise LayerdbError(f"cannot create store {db_path}: folder {folder} does not exist")
    plan = prepare(model, **request)
    say = console.print if console is not None else (lambda *a, **k: None)
    report, key, todo = skip_complete(db_path, plan, say)
    n_passes = _passes(plan)
    prefetcher = Prefetcher(plan.ref.source) if not plan.ref.local else None
    with SweepProgress(console, n_checkpoints=len(todo)) as progress:
        for i, revision in enumerate(todo):
            if prefetcher and i + 1 < len(todo):
                prefetcher.start(todo[i + 1])
            if i > 0 and revision in completed(db_path, *key):  # done by another collector
                report.skipped.append(revision)
                progress.finish_checkpoint(f"{revision}: completed meanwhile by another collector",
                                           timed=False)
                continue
            progress.start_checkpoint(revision, n_passes)
            try:
                rows = run_checkpoint(plan, revision, on_pass=progress.advance)
            except (NonFiniteLoss, CheckpointLoadError) as exc:  # this one fails; go on
                report.failed[revision] = str(exc)
                progress.finish_checkpoint(f"[red]✗[/] {revision}: failed, nothing stored")
                continue
            write_rows(db_path, rows)
            report.written.append(revision)
            freed = evict_revision(plan.ref.source, revision) if evict and not plan.ref.local else 0
            progress.finish_checkpoint(
                f"[green]✓[/] {revision}: baseline loss {rows.baseline_loss:.4f}, "
                f"{rows.results.num_rows} rows" + (f", evicted {freed / 2**20:.0f} MiB" if freed else ""))
    if prefetcher:
        prefetcher.wait()
    report.duplicates = [group for group in duplicate_revisions(db_path, plan.ref.name)
                         if set(group) & set(plan.revisions)]
    for group in report.duplicates:
        say(f"[yellow]warning:[/] identical weights in revisions {', '.join(group)} of "
            f"{plan.ref.name}", highlight=False)
    if report.failed:
        if len(report.failed) == 1:
            raise LayerdbError(next(iter(report.failed.values())))
        raise LayerdbError(f"{len(report.failed)} checkpoints failed (nothing stored for them): "
                           + "; ".join(report.failed.values()))
    return report


def skip_complete(db_path: str, plan: Plan, say) -> tuple[CollectReport, tuple, list[str]]:
    """A report with the revisions already complete in the store marked skipped (and said);
    also the completion key and the revisions left to do."""
    key = (plan.ref.name, plan.tokens.eval_set, plan.options.method, plan.options.components)
    report = CollectReport(plan.ref.name, plan.tokens.eval_set, plan.revisions)
    done = completed(db_path, *key)
    report.skipped = [r for r in plan.revisions if r in done]
    if report.skipped:
        say(f"skipping {len(report.skipped)} complete checkpoint(s) of {plan.ref.name} on eval set "
            f"{plan.tokens.eval_set}: {_short_list(report.skipped)}", highlight=False)
    return report, key, [r for r in plan.revisions if r not in done]


def _passes(plan: Plan) -> int:
    n_batches = -(-plan.tokens.n_sequences // plan.options.batch_size)
    return n_batches * (1 + len(ablations(plan.n_layers, plan.options.components)))


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
